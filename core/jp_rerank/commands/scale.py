"""``jp-rerank embed-corpus`` and ``jp-rerank build-index`` (Ray jobs), and the ``--ray`` options of ``rerank``.

Each runs on a local Ray started for the command (``ray.init()`` on this machine) or, with ``--ray-address``, on
an existing cluster (``auto`` for the one ``ray start`` joined on this machine, ``ray://head:10001`` for Ray
Client). See :mod:`jp_rerank.distributed`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jp_rerank.errors import CliInputError
from jp_rerank.snapshot_ledger import TMP_PREFIX

__all__ = [
    "add_build_index_command",
    "add_embed_corpus_command",
    "add_ray_arguments",
    "ray_config_from_args",
    "register",
    "run_rerank_on_ray",
    "wants_ray",
]

_Sub = argparse._SubParsersAction


def add_ray_arguments(p: argparse.ArgumentParser, *, flag: bool = False) -> None:
    """Add the cluster options (``--ray-address``, ``--workers``...) to a subcommand's parser.

    Args:
        p: The subcommand's parser.
        flag: Also add ``--ray`` (for commands that run in this process unless asked, like ``rerank``).
    """
    group = p.add_argument_group("Ray cluster")
    if flag:
        group.add_argument("--ray", action="store_true", help="run on Ray (a local one unless --ray-address)")
    group.add_argument(
        "--ray-address",
        help="cluster to join: 'auto' (started with `ray start` here), 'ray://head:10001'; default: a local Ray"
        + (" (implies --ray)" if flag else ""),
    )
    group.add_argument("--workers", type=int, default=2, help="actors, one model each (default 2)")
    group.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs reserved per actor (default 1)")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor (default 0)")
    group.add_argument("--threads-per-worker", type=int, help="torch/faiss threads per actor (default: its CPUs)")
    group.add_argument("--max-retries", type=int, default=3, help="retries of a work item whose actor died")
    group.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    group.add_argument("--chunk-mb", type=float, help="input MiB per work item")
    group.add_argument("--no-progress", action="store_true", help="no Ray Data progress bars")


def ray_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~jp_rerank.distributed.RayConfig` the cluster options ask for."""
    from jp_rerank.distributed import RayConfig

    try:
        return RayConfig(
            address=args.ray_address,
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            gpus_per_worker=args.gpus_per_worker,
            threads_per_worker=args.threads_per_worker,
            max_retries=args.max_retries,
            num_cpus=args.num_cpus,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        raise CliInputError(str(exc)) from exc


def _chunk_bytes(args: argparse.Namespace, default: int) -> int:
    if args.chunk_mb is None:
        return default
    if args.chunk_mb <= 0:
        raise CliInputError(f"--chunk-mb must be positive, got {args.chunk_mb}")
    return max(1, int(args.chunk_mb * (1 << 20)))


def _embedder_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.device:
        options["device"] = args.device
    if getattr(args, "embed_batch_size", None):
        options["batch_size"] = args.embed_batch_size
    return options


def _has_output(out: str) -> bool:
    """Whether ``out`` holds something (an index or embeddings folder written before)."""
    path = Path(out).expanduser()
    return path.is_file() or (path.is_dir() and any(not p.name.startswith(TMP_PREFIX) for p in path.iterdir()))


def _interrupted(command: str, out: str, previous: str | None) -> int:
    """Say in one line that ``command`` was interrupted and what became of ``out``; returns exit code 130.

    Args:
        command: The subcommand.
        out: Its output folder.
        previous: What ``out`` held before (``None``: nothing).
    """
    kept = f"the previous {previous} in {out} is kept" if previous else f"nothing was written to {out}"
    sys.stderr.write(f"jp-rerank {command}: interrupted; {kept}\n")
    return 130  # jp_rerank.cli.EXIT_INTERRUPTED, with the line that says the output was left as it was


def _run_embed_corpus(args: argparse.Namespace) -> int:
    from jp_rerank.distributed import DEFAULT_CHUNK_BYTES, embed_corpus

    previous = "embeddings" if _has_output(args.out) else None
    try:
        report = embed_corpus(
            args.inputs,
            args.out,
            embedder=args.embedder,
            embedder_options=_embedder_options(args),
            text_field=args.text_field,
            id_field=args.id_field,
            with_text=not args.no_text,
            chunk_bytes=_chunk_bytes(args, DEFAULT_CHUNK_BYTES),
            overwrite=args.overwrite,
            config=ray_config_from_args(args),
        )
    except KeyboardInterrupt:  # Ray is shut down by now (ray_session), the output written atomically or not at all
        return _interrupted("embed-corpus", args.out, previous)
    except FileExistsError as exc:
        raise CliInputError(str(exc)) from exc
    sys.stdout.write(
        f"embedded {report.count} passages ({report.dim} dimensions, {report.parts} parts) into {report.path} "
        f"in {report.seconds:.1f} s\n"
    )
    return 0


def add_embed_corpus_command(sub: _Sub) -> None:
    """Register ``jp-rerank embed-corpus``."""
    p = sub.add_parser(
        "embed-corpus",
        help="embed a corpus (JSONL / Parquet / BEIR, sharded) on Ray; writes Parquet vectors with ids",
        description="One embedder per Ray actor, each work item (a chunk of a file) written to its own Parquet part "
        "(columns id, vector, text, metadata) with a manifest. Inputs: files, globs ('shards/*.jsonl') or folders "
        "(a BEIR folder: its corpus.jsonl with ids from _id).",
    )
    p.add_argument("inputs", nargs="+", help="corpus files, globs or folders")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--embedder", required=True, help="dense embedder (alias, hub id or path)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", help="id field (default: _id for BEIR folders, else id)")
    p.add_argument("--embed-batch-size", type=int, help="texts per forward pass (default: the embedder's)")
    p.add_argument("--no-text", action="store_true", help="store ids and vectors only")
    p.add_argument("--overwrite", action="store_true", help="replace an existing embeddings folder")
    p.add_argument("--device", help="cpu, cuda, ... (default: auto, in each worker)")
    add_ray_arguments(p)
    p.set_defaults(func=_run_embed_corpus)


def _run_build_index(args: argparse.Namespace) -> int:
    from jp_rerank.distributed import DEFAULT_CHUNK_BYTES, build_index

    options: dict[str, Any] = {}
    for name in ("nlist", "pq_m", "nprobe", "refine"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    previous = "index" if _has_output(args.out) else None
    try:
        report = build_index(
            args.inputs,
            args.out,
            embedder=args.embedder,
            embedder_options=_embedder_options(args) if args.embedder else None,
            backend=args.backend,
            index_options=options,
            bm25=args.bm25,
            text_field=args.text_field,
            id_field=args.id_field,
            train_size=args.train_size,
            batch_size=args.batch_size,
            chunk_bytes=_chunk_bytes(args, DEFAULT_CHUNK_BYTES),
            overwrite=args.overwrite,
            config=ray_config_from_args(args),
        )
    except KeyboardInterrupt:  # Ray is shut down by now (ray_session), the index switched in whole or not at all
        return _interrupted("build-index", args.out, previous)
    except FileExistsError as exc:
        raise CliInputError(str(exc)) from exc
    stages = ", ".join(s for s in (report.bm25 and "bm25", report.vector_backend) if s)
    sys.stdout.write(f"indexed {report.count} passages into {report.path} ({stages}) in {report.seconds:.1f} s\n")
    return 0


def add_build_index_command(sub: _Sub) -> None:
    """Register ``jp-rerank build-index``."""
    from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER

    p = sub.add_parser(
        "build-index",
        help="build a `jp-rerank search` index (IVF-PQ + BM25) from millions of passages on Ray",
        description="Embeds, tokenises and (IVF-PQ) encodes on Ray actors; the driver trains the index on the leading "
        "passages and merges. The folder is the one `jp-rerank index` writes, switched in atomically.",
    )
    p.add_argument("inputs", nargs="+", help="corpus files, globs or folders")
    p.add_argument("-o", "--out", required=True, help="index folder to create")
    p.add_argument("--embedder", help="dense embedder (alias, hub id or path); default: BM25 only")
    p.add_argument("--bm25", default=DEFAULT_BM25_TOKENIZER, help="BM25 tokenizer (mecab, char2, ...) or 'none'")
    p.add_argument("--backend", default="faiss-ivfpq", help="faiss-ivfpq (default), faiss-flat, faiss-hnsw, exact")
    p.add_argument("--nlist", type=int, help="IVF lists (default ~4*sqrt(training sample))")
    p.add_argument("--pq-m", type=int, help="PQ bytes per vector (must divide the dimension)")
    p.add_argument("--nprobe", type=int, help="IVF lists probed per query (default 16)")
    p.add_argument("--refine", choices=["none", "sq8", "flat"], help="IVF-PQ re-scoring copy of the vectors")
    p.add_argument("--train-size", type=int, default=100_000, help="IVF-PQ training sample (leading passages)")
    p.add_argument("--batch-size", type=int, default=256, help="batches of the training sample (as `index`)")
    p.add_argument("--embed-batch-size", type=int, help="texts per forward pass (default: the embedder's)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", help="id field (default: _id for BEIR folders, else id)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    p.add_argument("--device", help="cpu, cuda, ... (default: auto, in each worker)")
    add_ray_arguments(p)
    p.set_defaults(func=_run_build_index)


def run_rerank_on_ray(args: argparse.Namespace) -> int:
    """Run ``jp-rerank rerank`` with the arguments of its parser (plus :func:`add_ray_arguments`) on Ray."""
    from jp_rerank.distributed import rerank_jsonl
    from jp_rerank.distributed.rerank import DEFAULT_RERANK_CHUNK_BYTES

    options: dict[str, Any] = {"overflow": args.overflow, "batch_size": args.batch_size}
    if args.device:
        options["device"] = args.device
    report = rerank_jsonl(
        args.input,
        args.output,
        reranker=args.model,
        reranker_options=options,
        top_n=args.top_n,
        threshold=args.threshold,
        chunk_bytes=_chunk_bytes(args, DEFAULT_RERANK_CHUNK_BYTES),
        config=ray_config_from_args(args),
    )
    if args.output not in (None, "-"):
        sys.stderr.write(f"reranked {report.queries} queries ({report.pairs} pairs) in {report.seconds:.1f} s\n")
    return 0


def wants_ray(args: argparse.Namespace) -> bool:
    """Whether a command with ``add_ray_arguments(p, flag=True)`` was asked to run on Ray."""
    return bool(getattr(args, "ray", False) or getattr(args, "ray_address", None))


def register(sub: _Sub) -> None:
    """Register ``jp-rerank embed-corpus`` and ``jp-rerank build-index``."""
    add_embed_corpus_command(sub)
    add_build_index_command(sub)
