"""Vector-index scale: IVF-PQ (with and without exact re-ranking) against the exact flat index, at millions.

Data: ``--n`` unit vectors in ``--dim`` dimensions from a Gaussian mixture (:class:`jp_rerank.testing.synthetic.
GaussianMixture`, ``--clusters`` components, noise/centre length ``--spread``), generated in chunks from a fixed
seed, plus queries from the same mixture with another seed. Uniform random vectors would have no neighbours worth
finding; a mixture is a simple stand-in for the topical clusters of sentence embeddings.

Ground truth: exact top-``k`` of every query by float32 brute force over the whole corpus (numpy, streamed chunk by
chunk, never holding the corpus).

Each index is built in its own child process through :class:`jp_rerank.index.FaissIndex` (string ids and the
document store included, texts empty), so its peak RSS is its own. Reported per index / query setting:

* build: wall time to train (IVF-PQ, on the first ``--train-size`` vectors) and add everything, in batches;
* peak RSS of the child process, its resident RSS after the build, and the index's code bytes per vector;
* single-query latency p50 / p95 (``index.search(q, k)``, hits built with ids and texts), over the query sample;
* batched throughput (``index.search_many`` on ``--batch-queries`` queries at once), in queries per second;
* recall@k against the exact ground truth;

with ratios against the flat index measured in the same run. IVF-PQ variants are given by ``--pq-m`` as ``M`` (PQ
codes of ``M`` bytes) or ``M+sq8`` / ``M+flat`` (the same, plus a refine copy that re-scores the best
``k * refine_factor`` PQ candidates, see :class:`jp_rerank.index.FaissIndex`); refined variants are measured at
every ``--nprobe`` x ``--refine-factor``.

Usage:
    python benchmarks/index_scale.py [--n 1000000] [--dim 384] [--nprobe 2,8,32] [--kinds flat,ivfpq]
        [--pq-m 48,96,48+sq8,48+flat] [--refine-factor 2,4,8] [--threads 1] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.index import FaissIndex
from jp_rerank.testing import GaussianMixture

CORPUS_SEED = 1
QUERY_SEED = 2


def mixture(args: argparse.Namespace) -> GaussianMixture:
    return GaussianMixture(args.dim, n_clusters=args.clusters, spread=args.spread, seed=0, rank=args.rank or None)


def queries(args: argparse.Namespace) -> np.ndarray:
    return mixture(args).sample(max(args.queries, args.batch_queries), seed=QUERY_SEED)


def ground_truth(args: argparse.Namespace, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k row numbers and scores per query, merging per-chunk top-k (memory: one chunk of scores)."""
    k = args.k
    best_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
    best_i = np.zeros((q.shape[0], k), dtype=np.int64)
    offset = 0
    for chunk in mixture(args).iter_samples(args.n, seed=CORPUS_SEED, chunk=args.chunk):
        s = q @ chunk.T
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate([best_i, np.arange(offset, offset + chunk.shape[0])[None, :].repeat(q.shape[0], 0)], 1)
        top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
        offset += chunk.shape[0]
    return best_i, -np.sort(-best_s, axis=1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_phase(args: argparse.Namespace) -> dict[str, Any]:
    """Build one index and measure it (runs in a child process)."""
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    work = Path(args.workdir)
    q = np.load(work / "queries.npy")
    truth = np.load(work / "truth.npy")
    kind, _, variant = args.phase.partition(":")
    m, _, refine = variant.partition("+")
    pq_m = int(m) if m else None
    refine = refine or "none"
    index = FaissIndex(args.dim, kind=kind, nlist=args.nlist, pq_m=pq_m, hnsw_m=32, ef_construction=100, refine=refine)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    train_s = 0.0
    row = 0
    for chunk in mixture(args).iter_samples(args.n, seed=CORPUS_SEED, chunk=args.chunk):
        if index.needs_training:
            t0 = time.perf_counter()
            index.train(chunk[: args.train_size])
            train_s = time.perf_counter() - t0
        ids = [f"p{i}" for i in range(row, row + chunk.shape[0])]
        index.add(ids, chunk, [""] * chunk.shape[0])
        row += chunk.shape[0]
    build_s = time.perf_counter() - start
    del chunk
    rss_build = peak_rss_mb()
    rss_now = current_rss_mb()
    settings: list[dict[str, int]] = [{}]
    if kind == "ivfpq" and refine != "none":
        settings = [{"nprobe": p, "refine_factor": f} for p in args.nprobe for f in args.refine_factor]
    elif kind == "ivfpq":
        settings = [{"nprobe": p} for p in args.nprobe]
    elif kind == "hnsw":
        settings = [{"ef_search": e} for e in args.ef_search]
    rows = []
    for params in settings:
        index.search(q[0], k=args.k, **params)  # warm-up
        lat = []
        found = []
        for vec in q[: args.queries]:
            t0 = time.perf_counter()
            hits = index.search(vec, k=args.k, **params)
            lat.append(time.perf_counter() - t0)
            found.append([int(h.id[1:]) for h in hits])
        t0 = time.perf_counter()
        index.search_many(q[: args.batch_queries], k=args.k, **params)
        batch_s = time.perf_counter() - t0
        recall = float(np.mean([len(set(f) & set(t.tolist())) / args.k for f, t in zip(found, truth, strict=False)]))
        rows.append(
            {
                "params": params,
                "p50_ms": 1000 * float(np.percentile(lat, 50)),
                "p95_ms": 1000 * float(np.percentile(lat, 95)),
                "qps": args.batch_queries / batch_s,
                "recall": recall,
            }
        )
    code_bytes = int(index._index.sa_code_size())
    if index._refine_index is not None:
        code_bytes += int(index._refine_index.sa_code_size())
    return {
        "kind": kind,
        "nlist": index.nlist,
        "pq_m": pq_m,
        "refine": refine,
        "train_s": train_s,
        "build_s": build_s,
        "rss_mb": rss_build,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_now,
        "code_bytes": code_bytes,
        "rows": rows,
    }


def hardware() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import faiss

    return (
        f"{model}; {os.cpu_count()} cores; Python {platform.python_version()}; numpy {np.__version__}; "
        f"faiss {faiss.__version__}"
    )


_SHORT = {"nprobe": "nprobe", "refine_factor": "rf", "ef_search": "ef"}


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row of formatted cells per index and query setting, with ratios against the flat index."""
    flat = next((r for r in results if r["kind"] == "flat"), None)
    base = flat["rows"][0] if flat else None
    out = []
    for res in results:
        label = res["kind"]
        if res["kind"] == "ivfpq":
            label = f"ivfpq nlist={res['nlist']} m={res['pq_m']}"
            if res.get("refine", "none") != "none":
                label += f" +{res['refine']}"
        for row in res["rows"]:
            name = label + "".join(f" {_SHORT.get(k, k)}={v}" for k, v in row["params"].items())
            ratios = ["", "", "", ""]
            if flat and base:
                ratios = [
                    f"{res['build_s'] / flat['build_s']:.2f}",
                    f"{res['rss_after_mb'] / flat['rss_after_mb']:.2f}",
                    f"{base['p50_ms'] / row['p50_ms']:.1f}x",
                    f"{row['qps'] / base['qps']:.1f}x",
                ]
            out.append(
                [
                    name,
                    f"{res['build_s']:.1f}",
                    f"{res['rss_mb']:.0f}",
                    f"{res['rss_after_mb']:.0f}",
                    str(res["code_bytes"]),
                    f"{row['p50_ms']:.2f}",
                    f"{row['p95_ms']:.2f}",
                    f"{row['qps']:.0f}",
                    f"{row['recall']:.3f}",
                    *ratios,
                ]
            )
    return out


def headers(args: argparse.Namespace) -> list[str]:
    return [
        "index",
        "build s",
        "peak MB",
        "RSS MB",
        "B/vec",
        "p50 ms",
        "p95 ms",
        "QPS",
        f"recall@{args.k}",
        "build x flat",
        "RSS x flat",
        "p50 speed-up",
        "QPS speed-up",
    ]


def describe(args: argparse.Namespace, gt_s: float) -> list[str]:
    shape = f"rank-{args.rank} subspaces + noise 0.1" if args.rank else "isotropic"
    return [
        f"hardware: {hardware()}; faiss threads: {args.threads or 'default'}",
        f"data: {args.n:,} x {args.dim}-d unit vectors, {args.clusters} Gaussian clusters ({shape}, spread "
        f"{args.spread}); exact cosine of the 1st / {args.k}th neighbour: {args.cos_first:.3f} / {args.cos_last:.3f}",
        f"{args.queries} queries for latency and recall, {args.batch_queries} for throughput; k={args.k}; "
        f"IVF-PQ trained on {args.train_size:,} vectors; exact ground truth (numpy brute force) in {gt_s:.1f} s",
    ]


LEGEND = (
    "peak MB: peak RSS of the build process (faiss grows its arrays by doubling, so a flat build peaks near 2x); "
    "RSS MB: resident after the build (document store included). B/vec: faiss code bytes per vector (PQ code + "
    "refine copy). rf: refine_factor. x flat: build time and resident RSS as ratios; p50 and QPS as speed-ups"
)


def print_table(args: argparse.Namespace, results: list[dict[str, Any]], gt_s: float) -> None:
    print()
    for line in describe(args, gt_s):
        print(line)
    head = headers(args)
    rows = table_rows(results)
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print(LEGEND)


def markdown_table(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    """The results as a GitHub-flavoured Markdown table."""
    head = headers(args)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="corpus size")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--clusters", type=int, default=None, help="mixture components (default n / 1000, >= 10)")
    p.add_argument("--spread", type=float, default=1.0)
    p.add_argument("--rank", type=int, default=16, help="dimension of each cluster's subspace (0: isotropic)")
    p.add_argument("--queries", type=int, default=200, help="queries for latency and recall")
    p.add_argument("--batch-queries", type=int, default=1000, help="queries for batched throughput")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--kinds", default="flat,ivfpq", help="comma list of flat, ivfpq, hnsw")
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default: power of two near 2*sqrt(n))")
    p.add_argument(
        "--pq-m",
        default="48,96,48+sq8,48+flat",
        help="comma list of IVF-PQ variants: M (PQ bytes per vector) or M+sq8 / M+flat (with a refine copy)",
    )
    p.add_argument("--refine-factor", default="2,4,8", help="comma list of refine factors for refined variants")
    p.add_argument("--nprobe", default="2,8,32", help="comma list of nprobe values to measure")
    p.add_argument("--ef-search", default="64,256", help="comma list of HNSW efSearch values")
    p.add_argument("--train-size", type=int, default=None, help="IVF-PQ training sample (default max(100k, 50*nlist))")
    p.add_argument("--chunk", type=int, default=100_000, help="vectors generated and added per batch")
    p.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0: faiss default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here as Markdown")
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.clusters = args.clusters or max(10, args.n // 1000)
    args.nlist = args.nlist or 2 ** round(math.log2(2 * math.sqrt(args.n)))
    args.train_size = min(args.n, args.train_size or max(100_000, 50 * args.nlist))
    args.chunk = max(args.chunk, args.train_size)
    args.nprobe = [int(x) for x in str(args.nprobe).split(",")]
    args.pq_m = [x.strip() for x in str(args.pq_m).split(",")]
    for spec in args.pq_m:
        m, _, refine = spec.partition("+")
        if not m.isdigit() or refine not in ("", "sq8", "flat"):
            p.error(f"--pq-m entries are M, M+sq8 or M+flat, got {spec!r}")
    args.refine_factor = [int(x) for x in str(args.refine_factor).split(",")]
    args.ef_search = [int(x) for x in str(args.ef_search).split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.phase:
        out = run_phase(args)
        Path(args.workdir, f"{args.phase.replace(':', '-')}.json").write_text(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as work:
        q = queries(args)
        np.save(Path(work) / "queries.npy", q)
        t0 = time.perf_counter()
        truth, scores = ground_truth(args, q[: args.queries])
        gt_s = time.perf_counter() - t0
        args.cos_first, args.cos_last = float(scores[:, 0].mean()), float(scores[:, -1].mean())
        np.save(Path(work) / "truth.npy", truth)
        print(f"ground truth: {gt_s:.1f} s", flush=True)
        results = []
        forwarded = list(argv if argv is not None else sys.argv[1:])  # a child ignores --json / --markdown
        phases = []
        for kind in args.kinds.split(","):
            phases += [f"ivfpq:{m}" for m in args.pq_m] if kind == "ivfpq" else [kind]
        for phase in phases:
            t0 = time.perf_counter()
            cmd = [sys.executable, __file__, *forwarded, "--phase", phase, "--workdir", work]
            subprocess.run(cmd, check=True)
            results.append(json.loads(Path(work, f"{phase.replace(':', '-')}.json").read_text()))
            print(f"{phase}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    print_table(args, results, gt_s)
    if args.json is not None:
        skip = ("json", "markdown", "phase", "workdir")
        payload = {
            "args": {k: v for k, v in vars(args).items() if k not in skip},
            "hardware": hardware(),
            "ground_truth_s": gt_s,
            "results": results,
        }
        args.json.write_text(json.dumps(payload, default=str, indent=2))
    if args.markdown is not None:
        args.markdown.write_text(
            "\n".join(describe(args, gt_s)) + "\n\n" + markdown_table(args, results) + "\n" + LEGEND + "\n"
        )


if __name__ == "__main__":
    main()
