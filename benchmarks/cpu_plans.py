"""Which scoring plan should ``auto`` pick on this CPU? Speed and ranking agreement of every plan, one run.

For a trained cross-encoder (default: ja-ce-mini, the CPU-trained offline stand-in) and a seeded sample of JSQuAD
questions with their BM25 top-``--candidates``, every plan this machine offers (torch fp32 / bf16, ONNX fp32 / int8,
OpenVINO fp32 / int8; the int8 files quantised for this CPU's int8 kernel) scores the same pairs. Reported per plan:

* speed: pairs/s, median of ``--repeats`` passes in which the plans take turns (so load changes hit them alike),
  and the ratio to torch fp32 measured in the same passes;
* agreement with torch fp32, ``auto``'s criterion: Spearman per question (mean and min), the share of questions
  whose top-3 set is unchanged, nDCG@10 (and its difference to fp32's).

A plan qualifies for ``auto`` when Spearman >= 0.99 for every question, nDCG@10 within 0.005 of fp32 and the top-3
set unchanged for >= 95 % of questions; the fastest qualifying plan (never slower than torch fp32) is what
:data:`jp_rerank.rerank.plans.AUTO_ON_CPU` should hold for this CPU class. Results:
``benchmarks/results/cpu_plans-<cpu class>.md`` (+ ``.json``), with the CPU's flags and the load average.

Usage:
    python benchmarks/cpu_plans.py [--model PATH] [--data BEIR] [--questions 20] [--candidates 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _paths import JA_CE_MINI, RESULTS, data_dir, offline_model

QUALIFY = {"spearman_min": 0.99, "ndcg_drop": 0.005, "top3_same": 0.95}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="trained cross-encoder folder (default: the offline ja-ce-mini)")
    parser.add_argument("--data", help="BEIR folder (default: jsquad-valid from $JP_RERANK_DATA or ../shared/data)")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    from jp_rerank import Reranker
    from jp_rerank.evaluation.bench_pairs import candidate_pairs
    from jp_rerank.evaluation.datasets import load_beir
    from jp_rerank.evaluation.timing import load_average, ndcg10, spearman
    from jp_rerank.hardware import machine_info
    from jp_rerank.rerank.exports import read_export
    from jp_rerank.rerank.plans import cpu_class, cpu_supports_bf16, int8_kernel

    model = Path(args.model) if args.model else offline_model(JA_CE_MINI)
    data = Path(args.data) if args.data else data_dir()
    if model is None or data is None:
        sys.stderr.write("needs --model (or the offline ja-ce-mini) and --data (or jsquad-valid)\n")
        return 2
    dataset = load_beir(data)
    pairs = candidate_pairs(dataset, args.questions, args.candidates)
    plans = [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
    if cpu_supports_bf16():
        plans.insert(1, ("torch", "bf16"))
    rerankers: dict[str, Any] = {}
    for backend, precision in plans:
        label = f"{backend}-{precision}"
        started = time.perf_counter()
        reranker = Reranker(model, device="cpu", backend=backend, precision=precision, activation="none")  # type: ignore[arg-type]
        reranker.score(pairs.queries[0], pairs.docs[0][:4])  # load, export if needed, warm up
        rerankers[label] = reranker
        print(f"{label}: ready in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    seconds: dict[str, list[float]] = {label: [] for label in rerankers}
    scores: dict[str, list[np.ndarray]] = {}
    for rep in range(args.repeats):
        order = list(rerankers)[rep % len(rerankers) :] + list(rerankers)[: rep % len(rerankers)]
        for label in order:
            started = time.perf_counter()
            out = [rerankers[label].score(q, d) for q, d in zip(pairs.queries, pairs.docs, strict=True)]
            seconds[label].append(time.perf_counter() - started)
            scores.setdefault(label, [np.asarray(s, np.float64) for s in out])
        print(f"pass {rep + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    ref = scores["torch-fp32"]
    ref_ndcg = ndcg10(pairs, ref, dataset.qrels)
    rows = []
    for label, got in scores.items():
        rhos = [spearman(a, b) for a, b in zip(ref, got, strict=True)]
        top3 = [_top3(a) == _top3(b) for a, b in zip(ref, got, strict=True)]
        ndcg = ndcg10(pairs, got, dataset.qrels)
        ratios = [f / s for f, s in zip(seconds["torch-fp32"], seconds[label], strict=True)]
        export = None
        backend = label.split("-")[0]
        if backend != "torch":
            export = read_export(model / backend, backend)
        row = {
            "plan": label,
            "pairs_per_s": round(pairs.n_pairs / statistics.median(seconds[label]), 1),
            "x_torch_fp32": round(statistics.median(ratios), 2),
            "spearman_mean": round(float(np.mean(rhos)), 4),
            "spearman_min": round(float(np.min(rhos)), 4),
            "top3_same": round(float(np.mean(top3)), 3),
            "ndcg10": round(ndcg, 4),
            "ndcg10_drop": round(ref_ndcg - ndcg, 4),
            "int8": (export.meta.get("int8") if export is not None and "int8" in label else None),
        }
        row["qualifies"] = (
            row["spearman_min"] >= QUALIFY["spearman_min"]
            and row["ndcg10_drop"] <= QUALIFY["ndcg_drop"]
            and row["top3_same"] >= QUALIFY["top3_same"]
        )
        rows.append(row)
    info = machine_info(include_torch=True)
    report = {
        "model": str(model),
        "cpu": info.cpu_model,
        "cpu_class": cpu_class(),
        "int8_kernel": int8_kernel(),
        "flags": sorted(k for k, v in info.cpu_features.items() if v),
        "torch_threads": info.torch_threads,
        "load_average": load_average(),
        "questions": len(pairs.queries),
        "pairs": pairs.n_pairs,
        "repeats": args.repeats,
        "rows": rows,
    }
    _write(report, Path(args.out) / f"cpu_plans-{report['cpu_class']}")
    return 0


def _top3(scores: np.ndarray) -> frozenset[int]:
    return frozenset(int(i) for i in np.argsort(-scores, kind="stable")[:3])


def _write(report: dict[str, Any], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    lines = [
        f"# Scoring plans on a {report['cpu_class']} CPU (int8 kernel: {report['int8_kernel']})",
        "",
        f"`python benchmarks/cpu_plans.py` on {report['cpu']} ({', '.join(report['flags'])}; torch threads "
        f"{report['torch_threads']}; load average {report['load_average']}). Model: "
        f"`{Path(report['model']).name}`; {report['questions']} seeded JSQuAD questions x BM25 top candidates = "
        f"{report['pairs']} pairs; {report['repeats']} passes, plans taking turns (ratios are within a pass).",
        "",
        "| plan | pairs/s | x torch fp32 | Spearman mean | Spearman min | top-3 set same | nDCG@10 | drop vs fp32 "
        "| qualifies for auto |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['plan']} | {r['pairs_per_s']} | {r['x_torch_fp32']:.2f} | {r['spearman_mean']:.4f} | "
            f"{r['spearman_min']:.4f} | {r['top3_same']:.2f} | {r['ndcg10']:.4f} | {r['ndcg10_drop']:+.4f} | "
            f"{'yes' if r['qualifies'] else 'no'} |"
        )
    lines += [
        "",
        f"auto's criterion: Spearman >= {QUALIFY['spearman_min']} for every question, nDCG@10 within "
        f"{QUALIFY['ndcg_drop']} of torch fp32, the top-3 set unchanged for >= {QUALIFY['top3_same']:.0%} of "
        "questions; the fastest plan that qualifies and is not slower than torch fp32 is the one to pick.",
        "",
        "Evaluation data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
