"""CPU cost of the ModernBERT rerankers (tiny/xsmall/small-v2) against the v1 default (xsmall), shapes interleaved.

``jp-rerank bench --shapes ...`` times methods against each other within one shape, one shape after another; on a
shared machine the load changes between shapes, so its pairs/s cannot be compared across shapes. This script
answers "what does each v2 model cost per pair, relative to xsmall-v1" by interleaving the shapes: in every
repetition each method scores the same pairs with every shape, in a rotated order, and the reported ratio is the
median over repetitions of (shape's seconds / xsmall's seconds) measured within that repetition.

Models: same-shape random-weight models (:func:`jp_rerank.evaluation.bench.same_shape_cross_encoder`; speed does not
depend on the weights' values), all with the same real tokenizer (``--tokenizer-json``, e.g. multilingual-e5's XLM-R
``tokenizer.json``) so that every shape sees exactly the same token counts: the ratios are the architectures' cost.
(The real v2 models use ModernBERT-Ja's own Japanese tokenizer, which is not available offline here; a Japanese
vocabulary usually cuts Japanese text into fewer tokens than XLM-R's, which would favour the v2 models further.)
Pairs: BM25 candidates of JSQuAD questions (:func:`jp_rerank.evaluation.bench.candidate_pairs`).

Methods: our ``Reranker`` in torch fp32 (exact; the architecture's cost), our default precision on this CPU, and
sentence-transformers ``CrossEncoder.predict``.

Usage:
    python benchmarks/v2_shapes_cpu.py --tokenizer-json PATH [--shapes xsmall,tiny-v2,xsmall-v2,small-v2]
        [--questions 1] [--candidates 50] [--repeats 5] [--threads 1] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _paths import E5_SMALL, RESULTS, data_dir, offline_model

# Published quality: average nDCG@10 over JQaRA / JaCWIR / MIRACL / JSQuAD (hotchpotch model cards).
NDCG_AVG = {"tiny-v2": 0.8138, "xsmall-v2": 0.8699, "small-v2": 0.8856, "base-v2": 0.8930, "xsmall": 0.8131}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="BEIR folder (default: jsquad-valid from $JP_RERANK_DATA or ../shared/data)")
    parser.add_argument("--shapes", default="xsmall,tiny-v2,xsmall-v2,small-v2", help="first one is the baseline")
    parser.add_argument("--tokenizer-json", help="one real tokenizer.json for every shape (default: offline mE5's)")
    parser.add_argument("--questions", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    parser.add_argument("--models-dir", default=str(Path.home() / ".cache" / "jp-rerank" / "bench-models"))
    parser.add_argument("--out", default=str(RESULTS), help="folder for v2_shapes_cpu.json / .md")
    args = parser.parse_args()

    import torch

    from jp_rerank.evaluation.bench_methods import ours, st_predict
    from jp_rerank.evaluation.bench_models import same_shape_cross_encoder
    from jp_rerank.evaluation.bench_pairs import candidate_pairs
    from jp_rerank.evaluation.datasets import load_beir
    from jp_rerank.evaluation.timing import load_average
    from jp_rerank.hardware import machine_info

    torch.set_num_threads(args.threads)
    folder = Path(args.data) if args.data else data_dir()
    if folder is None:
        sys.stderr.write("no JSQuAD folder: pass --data\n")
        return 2
    tokenizer_json = args.tokenizer_json
    if tokenizer_json is None:
        e5 = offline_model(E5_SMALL)
        tokenizer_json = str(e5 / "tokenizer.json") if e5 is not None else None
    load_start = load_average()
    started = time.perf_counter()
    dataset = load_beir(folder)
    pairs = candidate_pairs(dataset, args.questions, args.candidates, seed=0)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    models_dir = Path(args.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    paths = {s: same_shape_cross_encoder(s, models_dir, tokenizer_json=tokenizer_json)[0] for s in shapes}
    builders = {
        "ours torch-fp32": lambda p: ours(p, precision="fp32", backend="torch"),
        "ours default": lambda p: ours(p),
        "st-predict": st_predict,
    }
    scorers: dict[tuple[str, str], Any] = {}
    for method, build in builders.items():
        for shape in shapes:
            scorer = build(paths[shape])
            scorer(pairs.queries[0], pairs.docs[0][:8])  # warm up
            scorers[(method, shape)] = scorer
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in scorers}
    for rep in range(args.repeats):
        for method in builders:
            order = shapes[rep % len(shapes) :] + shapes[: rep % len(shapes)]
            for shape in order:
                score = scorers[(method, shape)]
                t0 = time.perf_counter()
                for query, docs in zip(pairs.queries, pairs.docs, strict=True):
                    score(query, docs)
                seconds[(method, shape)].append(time.perf_counter() - t0)
    base = shapes[0]
    rows = []
    for method in builders:
        for shape in shapes:
            times = seconds[(method, shape)]
            ratios = [t / b for t, b in zip(times, seconds[(method, base)], strict=True)]
            rows.append(
                {
                    "method": method,
                    "shape": shape,
                    "pairs_per_s": round(pairs.n_pairs / statistics.median(times), 2),
                    "cost_vs_base": round(statistics.median(ratios), 3),
                    "ndcg_avg": NDCG_AVG.get(shape),
                }
            )
    m = machine_info().to_dict()
    report = {
        "machine": m,
        "threads": args.threads,
        "load_average": {"start": load_start, "end": load_average()},
        "pairs": pairs.n_pairs,
        "tokenizer_json": tokenizer_json,
        "repeats": args.repeats,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    feats = " ".join(k for k, v in (m.get("cpu_features") or {}).items() if v)
    lines = [
        "# ModernBERT v2 rerankers vs xsmall-v1 on CPU (shapes interleaved)",
        "",
        f"- Machine: {m.get('cpu_model')}, {m.get('usable_cores')} usable cores, torch {m.get('torch')}, "
        f"{args.threads} thread(s); CPU features: {feats}",
        f"- Load average (1/5/15 min) at start {load_start}, end {report['load_average']['end']}; "
        f"elapsed {report['elapsed_s']} s",
        f"- {pairs.n_pairs} JSQuAD (question, BM25 candidate) pairs per repetition, {args.repeats} repetitions; every "
        f"shape uses the same tokenizer ({Path(tokenizer_json).name if tokenizer_json else 'demo'}): same token counts",
        f"- cost vs {base}: median over repetitions of (seconds / {base}'s seconds in the same repetition); "
        "nDCG avg: the model cards' average over JQaRA / JaCWIR / MIRACL / JSQuAD",
        "",
        f"| method | shape | pairs/s | cost vs {base} | nDCG avg |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['shape']} | {r['pairs_per_s']} | {r['cost_vs_base']:.2f}x | {r['ndcg_avg'] or '-'} |"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "v2_shapes_cpu.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (out / "v2_shapes_cpu.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
