"""Scale-out benchmark: 1M Japanese passages through StaticEmbedding + IVF-PQ, one process vs a local Ray.

Data: ``--n`` synthetic but realistic passages, written as ``--shards`` JSONL files: each passage is a run of
sentences drawn (seeded) from the sentence pool of the shared corpora (``$JP_RERANK_DATA``: jaquad-train and
jsquad-valid ``corpus.jsonl``) and the bundled demo corpus, with as many sentences as a real passage of those
corpora has (sampled from their distribution), and the title of its first sentence's article as metadata.

Model: a sentence-transformers ``StaticEmbedding`` (the architecture of hotchpotch/static-embedding-japanese) over
the real multilingual-e5 tokenizer (250k vocabulary, from ``$JP_RERANK_OFFLINE_MODELS``), ``--dim`` dimensions,
random weights: the speed and the vectors' shape are real, their meaning is not (no retrieval quality is claimed).

Runs, each in its own child process whose process tree (Ray's GCS, raylet and workers included) is sampled for
memory every second:

* ``single``: ``jp-rerank index SHARDS --embedder MODEL --backend faiss-ivfpq --bm25 none`` (the existing
  single-process command; torch on all cores);
* ``ray``: :func:`jp_rerank.distributed.build_index` on a local Ray with ``--workers`` actors of 1 CPU and 1
  thread each, the same defaults (nlist, pq_m, training sample).

Both write the same folder; the script checks that the passages and the faiss index are byte-identical.
Peak memory: the highest sum of PSS (proportional set size: shared pages, such as Ray's object store in
/dev/shm, counted once) over the process tree, and the highest RSS of the main process.

Usage:
    python benchmarks/ray_scale.py [--n 1000000] [--dim 256] [--workers 2] [--shards 8]
        [--json benchmarks/results/ray_scale.json] [--markdown benchmarks/results/ray_scale.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.text import split_sentences

SEED = 0


# ------------------------------------------------------------------------------------------------------ data


def _corpus_files(data: Path) -> list[Path]:
    files = [p for name in ("jaquad-train", "jsquad-valid") if (p := data / name / "corpus.jsonl").is_file()]
    from importlib import resources

    demo = Path(str(resources.files("jp_rerank.data").joinpath("demo_corpus.jsonl")))
    return [*files, demo]


def make_corpus(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Write ``args.n`` recombined passages into ``args.shards`` JSONL files; return data statistics."""
    pool: list[str] = []
    pool_title: list[str] = []
    counts: list[int] = []
    sources = _corpus_files(Path(args.data))
    for path in sources:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                doc = json.loads(line)
                sentences = [s for s in split_sentences(str(doc.get("text", ""))) if s.strip()]
                if not sentences:
                    continue
                counts.append(len(sentences))
                pool.extend(sentences)
                pool_title.extend([str(doc.get("title", ""))] * len(sentences))
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    per_shard = -(-args.n // args.shards)
    lengths = np.empty(args.n, dtype=np.int32)
    count_choices = np.asarray(counts)
    i = 0
    for shard in range(args.shards):
        with (out / f"part-{shard:03d}.jsonl").open("w", encoding="utf-8") as fh:
            for _ in range(min(per_shard, args.n - i)):
                k = int(count_choices[rng.integers(len(count_choices))])
                picks = rng.integers(len(pool), size=k)
                text = "".join(pool[p] for p in picks)
                lengths[i] = len(text)
                rec = {"id": f"syn{i:07d}", "text": text, "title": pool_title[picks[0]]}
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                i += 1
    size = sum(p.stat().st_size for p in out.iterdir())
    return {
        "passages": int(args.n),
        "shards": args.shards,
        "jsonl_mb": round(size / 2**20, 1),
        "chars_mean": round(float(lengths.mean()), 1),
        "chars_p50": int(np.percentile(lengths, 50)),
        "chars_p95": int(np.percentile(lengths, 95)),
        "sentence_pool": len(pool),
        "source_passages": len(counts),
        "sources": [f"{p.parent.name}/{p.name}" for p in sources],
    }


def make_model(args: argparse.Namespace, out: Path) -> Path:
    """A StaticEmbedding with the real mE5 tokenizer and random weights (seeded)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(args.models) / "multilingual-e5-small-q4dq" / "tokenizer.json"))
    torch.manual_seed(SEED)
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=args.dim)], device="cpu")
    model.save(str(out))
    return out


# ---------------------------------------------------------------------------------------------- measurement


class TreeSampler:
    """Samples the summed PSS / RSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self.peak_pss = 0
        self.peak_rss_sum = 0
        self.peak_main_rss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
                self.peak_main_rss = max(self.peak_main_rss, self._root.memory_info().rss)
            except psutil.Error:
                break
            pss = rss = 0
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                except psutil.Error:
                    continue
                pss += info.pss
                rss += info.rss
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_rss_sum = max(self.peak_rss_sum, rss)
            self.peak_processes = max(self.peak_processes, len(procs))
            self._stop.wait(self._interval)


def run_measured(cmd: list[str], log: Path) -> dict[str, Any]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true", HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        with TreeSampler(proc.pid) as sampler:
            code = proc.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{cmd[:4]} failed with exit code {code}; see {log}")
    report = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("REPORT "):
            report = json.loads(line[len("REPORT ") :])
    return {
        "wall_s": round(wall, 1),
        "peak_pss_mb": round(sampler.peak_pss / 2**20),
        "peak_rss_sum_mb": round(sampler.peak_rss_sum / 2**20),
        "peak_main_rss_mb": round(sampler.peak_main_rss / 2**20),
        "processes": sampler.peak_processes,
        "report": report,
    }


def child_ray(args: argparse.Namespace) -> None:
    """Runs in the child process of the ``ray`` run."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from jp_rerank.distributed import RayConfig, build_index

    started = time.perf_counter()
    config = RayConfig(workers=args.workers, num_cpus=args.workers, progress=False)
    report = build_index(
        sorted(Path(args.corpus).glob("*.jsonl")),
        args.out,
        embedder=args.model,
        embedder_options={"device": "cpu"},
        backend="faiss-ivfpq",
        bm25=None,
        train_size=args.train_size,
        config=config,
    )
    total = time.perf_counter() - started
    payload = {
        "count": report.count,
        "head_passages": report.head_passages,
        "trained_on": report.trained_on,
        "chunks": report.chunks,
        "job_s": report.seconds,
        "total_s": total,
        "timings": report.timings,
    }
    print("REPORT " + json.dumps(payload), flush=True)


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _faiss_index(index_dir: Path) -> Any:
    import faiss

    from jp_rerank.snapshots import read_snapshot

    snapshot, _ = read_snapshot(index_dir, verify=False)
    vectors, _ = read_snapshot(snapshot / "vectors", verify=False)
    return faiss.read_index(str(vectors / "index.faiss"))


def compare(single_dir: Path, ray_dir: Path) -> dict[str, Any]:
    """Passages, document store, training and per-vector IVF-PQ placement of the two builds."""
    import faiss

    from jp_rerank.snapshots import read_snapshot

    (s1, _), (s2, _) = read_snapshot(single_dir, verify=False), read_snapshot(ray_dir, verify=False)
    (v1, _), (v2, _) = read_snapshot(s1 / "vectors", verify=False), read_snapshot(s2 / "vectors", verify=False)
    a, b = _faiss_index(single_dir), _faiss_index(ray_dir)
    moved: set[int] = set()
    other_codes = 0
    for lst in range(a.nlist):
        na, nb = a.invlists.list_size(lst), b.invlists.list_size(lst)
        ida = faiss.rev_swig_ptr(a.invlists.get_ids(lst), na).copy() if na else np.zeros(0, dtype=np.int64)
        idb = faiss.rev_swig_ptr(b.invlists.get_ids(lst), nb).copy() if nb else np.zeros(0, dtype=np.int64)
        if np.array_equal(ida, idb):
            if na:
                ca = faiss.rev_swig_ptr(a.invlists.get_codes(lst), na * a.code_size).reshape(na, -1)
                cb = faiss.rev_swig_ptr(b.invlists.get_codes(lst), nb * b.code_size).reshape(nb, -1)
                other_codes += int((ca != cb).any(axis=1).sum())
        else:
            moved |= set(ida.tolist()) ^ set(idb.tolist())
    return {
        "passages_identical": _sha(s1 / "passages.jsonl") == _sha(s2 / "passages.jsonl"),
        "document_store_identical": _sha(v1 / "docs.jsonl") == _sha(v2 / "docs.jsonl"),
        "index_file_identical": _sha(v1 / "index.faiss") == _sha(v2 / "index.faiss"),
        "coarse_centroids_identical": bool(
            np.array_equal(a.quantizer.reconstruct_n(0, a.nlist), b.quantizer.reconstruct_n(0, b.nlist))
        ),
        "pq_codebooks_identical": bool(
            np.array_equal(faiss.vector_to_array(a.pq.centroids), faiss.vector_to_array(b.pq.centroids))
        ),
        "vectors": int(a.ntotal),
        "vectors_in_another_list": len(moved) // 1,
        "vectors_with_another_code": other_codes,
    }


# ----------------------------------------------------------------------------------------------- the model


def _nlist(n_train: int) -> int:
    from jp_rerank.index.faiss_kinds import default_nlist

    return int(default_nlist(n_train))


def scaling_model(n: int, single: dict[str, Any], ray: dict[str, Any], workers: int) -> dict[str, Any]:
    """Per-stage costs measured in the Ray run, and the wall time they predict for W workers and 100x the data.

    T(W, n) = fixed + head / W + train + max(parallel(n) / W, merge(n)) + save(n): the driver merges while the
    workers embed and encode, so the slower of the two sets the pace of the streaming pass; start-up, IVF training
    and the snapshot write are serial. For 100M passages the training grows too (see ``train_100x_s``).
    """
    t = ray["report"]["timings"]
    head, train, rest = t.get("head", 0.0), t.get("train", 0.0), t.get("rest", 0.0)
    merge, save = t.get("merge", 0.0), t.get("save", 0.0) + t.get("bm25", 0.0)
    fixed = max(ray["wall_s"] - head - train - rest - save, 0.0)  # Ray start, planning (line scan), pool start, exit
    n_head = int(ray["report"].get("head_passages", 0))
    n_train = int(ray["report"].get("trained_on", 0)) or 1
    worker_s = rest * workers / max(n - n_head, 1)  # seconds of one worker per passage (parallel pass)
    head_worker_s = head * workers / max(n_head, 1)  # the same in the head pass (pool start-up included)
    merge_s = merge / n  # driver seconds per passage decoded and appended (codes, document store, passages.jsonl)
    save_s = save / n
    single_s = single["wall_s"] / n
    # 100x: nlist = 4 sqrt(N) lists as faiss advises for N vectors, trained on 39 points per list; k-means cost
    # grows with (training points x lists).
    big = 100 * n
    nlist_big = int(4 * big**0.5)
    n_train_big = 39 * nlist_big
    train_big = train * (n_train_big * nlist_big) / (n_train * _nlist(n_train))
    rows = []
    for size, train_t in ((n, train), (big, train_big)):
        for w in (1, 2, 4, 8, 16, 32, 64, 128):
            parallel = (size - n_head) * worker_s / w
            driver = size * merge_s
            pred = fixed + n_head * head_worker_s / w + train_t + max(parallel, driver) + size * save_s
            rows.append(
                {
                    "workers": w,
                    "passages": size,
                    "predicted_s": round(pred),
                    "speedup_vs_single": round(size * single_s / pred, 1),
                    "bound_by": "driver merge" if driver >= parallel else "workers",
                }
            )
    serial = fixed + train + save
    return {
        "fixed_s": round(fixed, 1),
        "head_s": round(head, 1),
        "head_passages": n_head,
        "train_s": round(train, 1),
        "rest_s": round(rest, 1),
        "merge_s": round(merge, 1),
        "save_s": round(save, 1),
        "serial_s": round(serial, 1),
        "amdahl_bound": round(single["wall_s"] / serial, 1),
        "worker_rate": round(1 / worker_s) if worker_s else 0,
        "merge_rate": round(1 / merge_s) if merge_s else 0,
        "single_rate": round(1 / single_s),
        "merge_saturates_at_workers": round(worker_s / merge_s, 1) if merge_s else None,
        "nlist_100x": nlist_big,
        "train_points_100x": n_train_big,
        "train_100x_s": round(train_big),
        "driver_rss_100x_gb": round(ray["peak_main_rss_mb"] * 100 / 1024),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    d, s, r, m = result["data"], result["single"], result["ray"], result["model"]
    hw = result["hardware"]
    lines = [
        "# Scale-out: 1M Japanese passages, StaticEmbedding + IVF-PQ, one process vs a local Ray",
        "",
        "Produced by `benchmarks/ray_scale.py` (raw numbers: [`ray_scale.json`](ray_scale.json)):",
        "",
        "```",
        f"python benchmarks/ray_scale.py --n {d['passages']} --dim {result['dim']} --workers {result['workers']} "
        "--json benchmarks/results/ray_scale.json --markdown benchmarks/results/ray_scale.md",
        "```",
        "",
        f"- **Hardware:** {hw['cpu']}, {hw['cores']} cores, {hw['ram_gb']} GB RAM, no GPU; Python {hw['python']}, "
        f"ray {hw['ray']}, torch {hw['torch']}, faiss-cpu {hw['faiss']}. Load average before / after the runs: "
        f"{hw['load_before']} / {hw['load_after']}" + _load_note(hw),
        f"- **Data:** {d['passages']:,} passages in {d['shards']} JSONL shards ({d['jsonl_mb']} MB), recombined from "
        f"{d['sentence_pool']:,} sentences of {d['source_passages']:,} real passages (jaquad-train, jsquad-valid, the "
        f"bundled demo corpus), sentence counts drawn from theirs: {d['chars_mean']} characters on average "
        f"(median {d['chars_p50']}, p95 {d['chars_p95']}).",
        f"- **Model:** StaticEmbedding, {result['dim']} dimensions, real mE5 tokenizer (250k vocabulary), random "
        "weights. **Index:** `faiss-ivfpq` with the defaults of `jp-rerank index` (nlist = 4 sqrt(sample), "
        f"pq_m = dim/8, trained on the first {result['train_size']:,} passages in batches of 256), no BM25.",
        _same_line(result.get("same")),
        "",
        "| run | wall s | passages/s | peak PSS MB (tree) | peak RSS MB (main process) | processes | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in (("single process (`jp-rerank index`)", s), (f"local Ray, {result['workers']} workers", r)):
        lines.append(
            f"| {name} | {run['wall_s']} | {d['passages'] / run['wall_s']:,.0f} | {run['peak_pss_mb']:,} | "
            f"{run['peak_main_rss_mb']:,} | {run['processes']} | {s['wall_s'] / run['wall_s']:.2f}x |"
        )
    lines += [
        "",
        "Ray run, by stage (driver clock): "
        f"start-up/planning/exit {m['fixed_s']} s, training-sample embedding {m['head_s']} s, IVF training "
        f"{m['train_s']} s, parallel embed + encode {m['rest_s']} s (of which the driver spent {m['merge_s']} s "
        f"merging), snapshot write {m['save_s']} s. Rates: {m['worker_rate']:,} passages/s per worker, "
        f"{m['merge_rate']:,} passages/s of driver merge.",
        "",
        "## What bounds the speed-up (measured rates, the rest a model)",
        "",
        f"Serial parts measured above: start-up {m['fixed_s']} s + IVF training {m['train_s']} s + snapshot write "
        f"{m['save_s']} s = **{m['serial_s']} s**, so no number of workers can build this 1M index faster than that "
        f"(at most {m['amdahl_bound']}x the single process here). The driver's merge runs *during* the parallel "
        f"pass and costs 1/{m['merge_rate']:,} s per passage: it becomes the limit when the workers together embed "
        f"faster than that, i.e. from about {m['merge_saturates_at_workers']} workers at this run's per-worker rate "
        f"({m['worker_rate']:,}/s). Model: T(W) = start-up + head/W + training + max(embed and encode / W, driver "
        "merge) + snapshot write, every cost per passage taken from this run (W = workers of 1 CPU, the driver on "
        "its own core, the network not counted):",
        "",
        "| passages | W | predicted wall | speed-up vs one process | bound by |",
        "|---:|---:|---:|---:|---|",
    ]
    for row in m["rows"]:
        lines.append(
            f"| {row['passages']:,} | {row['workers']} | {_hms(row['predicted_s'])} | {row['speedup_vs_single']}x | "
            f"{row['bound_by']} |"
        )
    lines += [
        "",
        f"**100M passages.** The 100M rows assume an index sized for them: nlist = 4 sqrt(N) = {m['nlist_100x']:,} "
        f"lists trained on 39 points each ({m['train_points_100x']:,} vectors), k-means cost growing with points x "
        f"lists: about {_hms(m['train_100x_s'])} of serial training on this driver, which dominates every row above "
        "16 workers; train it on a GPU (faiss-gpu trains such a quantizer in minutes) or on a smaller sample with "
        "fewer lists, and the rest of the table is bound by the workers up to ~100 of them, then by the driver "
        "merge. Beyond time, one driver must hold what the single index holds: at the peak driver RSS measured here "
        f"that is ~{m['driver_rss_100x_gb']} GB (the document store keeps every text in memory; the codes are only "
        f"{result['dim'] // 8 + 8} B per vector, 4 GB), and the folder is ~110 GB of passages plus 4 GB of codes, "
        "checksummed at save. A 100M run therefore needs a head node with ~256 GB RAM and fast local disk, or (the "
        "better design) 10-100 index shards of 1-10M passages built by the same job and searched side by side: "
        "each shard is one `build-index` over a slice of the corpus, and the serial parts then run in parallel too.",
        "",
    ]
    return "\n".join(lines) + "\n"


def _load_note(hw: dict[str, Any]) -> str:
    if max(hw["load_before"], hw["load_after"]) <= hw["cores"]:
        return "."
    return (
        ". **The machine was shared with other CPU-heavy jobs during both runs** (load average well above the "
        f"{hw['cores']} cores): wall times are several times those of an idle machine, and since the OS shares CPU "
        "time between runnable threads, a job of several processes gets a larger share under contention. The "
        "speed-up below includes that effect; the per-stage costs and the serial fractions are what carries over."
    )


def _same_line(same: dict[str, Any] | None) -> str:
    if not same:
        return "- **Same result:** not compared."
    if same["index_file_identical"] and same["passages_identical"]:
        return "- **Same result:** the Ray build's passages, document store and faiss index are byte-identical."
    yes = {True: "identical", False: "DIFFERENT"}
    return (
        f"- **Same result:** passages {yes[same['passages_identical']]}, document store "
        f"{yes[same['document_store_identical']]}, IVF training {yes[same['coarse_centroids_identical']]} (coarse "
        f"centroids) and {yes[same['pq_codebooks_identical']]} (PQ codebooks); of {same['vectors']:,} vectors, "
        f"{same['vectors_in_another_list']} sit in another inverted list and {same['vectors_with_another_code']} "
        "have another code. The vectors themselves are bit-identical (StaticEmbedding); the moved ones are at a "
        "tie between two coarse centroids (their inner products differ by 1-2 float32 ulps, ~2e-7), which BLAS "
        "rounds either way depending on the batch size and thread count of the assignment (the single process "
        "adds 256 vectors at a time on 2 threads, a worker a chunk of ~8,000 on 1 thread). The same build at the "
        "tests' scale is byte-identical."
    )


def _hms(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-size", type=int, default=100_000)
    p.add_argument("--data", default=os.environ.get("JP_RERANK_DATA", str(here.parent.parent / "shared" / "data")))
    p.add_argument(
        "--models",
        default=os.environ.get("JP_RERANK_OFFLINE_MODELS", str(Path.home() / ".cache" / "jp-rerank-offline")),
    )
    p.add_argument("--modes", default="single,ray")
    p.add_argument("--work-dir", help="keep the corpus, model and indexes here (default: a temporary folder)")
    p.add_argument("--json")
    p.add_argument("--markdown")
    p.add_argument("--from-json", help="only re-render the Markdown (and the model) from a saved --json file")
    p.add_argument("--child", choices=["ray"], help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def hardware() -> dict[str, Any]:
    import faiss
    import ray
    import torch

    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "faiss": faiss.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child == "ray":
        child_ray(args)
        return
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        saved["model"] = scaling_model(saved["data"]["passages"], saved["single"], saved["ray"], saved["workers"])
        if args.work_dir and (Path(args.work_dir) / "single").is_dir() and (Path(args.work_dir) / "ray").is_dir():
            saved["same"] = compare(Path(args.work_dir) / "single", Path(args.work_dir) / "ray")
        saved.pop("identical", None)
        if args.json:
            Path(args.json).write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        text = markdown(saved)
        if args.markdown:
            Path(args.markdown).write_text(text, encoding="utf-8")
        print(text)
        return
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="jp-rerank-ray-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    hw = hardware()
    hw["load_before"] = round(os.getloadavg()[0], 1)
    corpus, model = work / "corpus", work / "model"
    stats_file = work / "corpus-stats.json"
    if not stats_file.is_file():
        print(f"writing {args.n:,} passages to {corpus} ...", flush=True)
        stats_file.write_text(json.dumps(make_corpus(args, corpus)), encoding="utf-8")
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    if not model.is_dir():
        make_model(args, model)
    shards = sorted(str(p) for p in corpus.glob("*.jsonl"))
    runs: dict[str, Any] = {}
    if "single" in args.modes:
        shutil.rmtree(work / "single", ignore_errors=True)
        cmd = [sys.executable, "-m", "jp_rerank", "index", *shards, "-o", str(work / "single")]
        cmd += ["--embedder", str(model), "--backend", "faiss-ivfpq", "--bm25", "none", "--device", "cpu"]
        print("single process ...", flush=True)
        runs["single"] = run_measured(cmd, work / "single.log")
        print(runs["single"], flush=True)
    if "ray" in args.modes:
        shutil.rmtree(work / "ray", ignore_errors=True)
        cmd = [sys.executable, __file__, "--child", "ray", "--corpus", str(corpus), "--model", str(model)]
        cmd += ["--out", str(work / "ray"), "--workers", str(args.workers), "--train-size", str(args.train_size)]
        print("local Ray ...", flush=True)
        runs["ray"] = run_measured(cmd, work / "ray.log")
        print(runs["ray"], flush=True)
    hw["load_after"] = round(os.getloadavg()[0], 1)
    result: dict[str, Any] = {
        "data": stats,
        "dim": args.dim,
        "workers": args.workers,
        "train_size": args.train_size,
        "hardware": hw,
        **runs,
    }
    if "single" in runs and "ray" in runs:
        result["same"] = compare(work / "single", work / "ray")
        result["model"] = scaling_model(args.n, runs["single"], runs["ray"], args.workers)
        print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.markdown and "model" in result:
        Path(args.markdown).write_text(markdown(result), encoding="utf-8")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
