"""Does combining the reranker's score with the first stage's help? A sweep on a BEIR set (JSQuAD by default).

For every question: the first stage's top ``--depth`` (BM25 with MeCab lemmas, and hybrid = dense mE5-small + BM25
fused by z-score, as the demo does), the reranker's score of each candidate (ja-ce-mini by default, a real
CPU-trained Japanese cross-encoder), then the final ranking under each setting of
:class:`jp_rerank.fusion.RerankFusion`: first stage alone, rerank only, and z-score / min-max / RRF fusion with the
reranker's weight swept from 0.1 to 0.9. Depth 20 reuses the depth-100 scores (the top 20 of the same first-stage
ranking; a pair's reranker score does not depend on the other candidates). Reported: nDCG@10 and MRR@10
(:func:`jp_rerank.evaluation.metrics.evaluate`). Reranker scores are cached in ``--cache`` so a rerun (or an
interrupted run) does not score pairs twice.

Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0. Models: ja-ce-mini (CPU-trained offline stand-in) and
mE5-small (4-bit dequantized), see ``../shared/models/README.md``.

Usage:
    python benchmarks/rerank_fusion.py [--limit N] [--depth 100] [--budget-minutes M]
        [--out benchmarks/results/rerank_fusion.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path

from _paths import E5_SMALL, JA_CE_MINI, RESULTS, data_dir, offline_model

from jp_rerank import BM25Index, Embedder, Reranker, TwoStageRetriever
from jp_rerank.evaluation import sample_queries
from jp_rerank.evaluation.datasets import load_beir
from jp_rerank.evaluation.metrics import evaluate
from jp_rerank.fusion import RerankFusion
from jp_rerank.pipeline import DenseRetriever

METRICS = ("ndcg@10", "mrr@10")
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def first_stage_runs(
    args: argparse.Namespace, ds, queries: dict[str, str]
) -> dict[str, dict[str, list[tuple[str, float]]]]:  # type: ignore[no-untyped-def]
    """First stage name → query id → top ``depth`` (passage id, score), best first (cached on disk)."""
    cache_path = Path(args.cache) / f"first-stage-{ds.name}-{len(queries)}-{args.depth}.json"
    if cache_path.is_file():
        cached = json.loads(cache_path.read_text())
        if all(set(queries) <= set(run) for run in cached.values()):
            logging.warning("first-stage runs from %s", cache_path)
            return {name: {q: [(d, s) for d, s in run[q]] for q in queries} for name, run in cached.items()}
    texts = ds.passages(with_title=True)
    ids = list(ds.doc_ids)
    bm25 = BM25Index("mecab").index(texts, ids)
    stages = {"bm25": TwoStageRetriever(first_stages=[bm25], first_k=args.depth, top_n=args.depth)}
    e5 = offline_model(E5_SMALL) if args.embedder is None else Path(args.embedder)
    if e5 is not None:
        embedder = Embedder(e5, max_length=256, batch_size=16).load()
        logging.warning("embedding %d passages with %s (once)", len(texts), e5)
        dense = DenseRetriever.from_texts(texts, ids=ids, embedder=embedder, backend="exact")
        stages["hybrid"] = TwoStageRetriever(
            first_stages=[dense, bm25],
            fusion="weighted",
            normalization="zscore",
            first_k=args.depth,
            top_n=args.depth,
        )
    runs: dict[str, dict[str, list[tuple[str, float]]]] = {}
    qids, texts_q = list(queries), list(queries.values())
    for name, retriever in stages.items():
        started = time.perf_counter()
        hits = retriever.retrieve_many(texts_q)
        runs[name] = {q: [(h.id, h.score) for h in hs] for q, hs in zip(qids, hits, strict=True)}
        logging.warning("first stage %s: %d queries in %.0f s", name, len(qids), time.perf_counter() - started)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(runs))
    return runs


def rerank_scores(args: argparse.Namespace, ds, queries, runs) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """Query id → passage id → reranker score, for every candidate of every first stage (cached on disk)."""
    cache_path = Path(args.cache) / f"{Path(args.reranker).name}-{ds.name}.json"
    cache: dict[str, dict[str, float]] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    reranker = Reranker(args.reranker, max_length=256).load()
    logging.warning("reranker %s scores with %s", args.reranker, reranker.scoring_plan)
    args.plan = str(reranker.scoring_plan)
    todo = [q for q in queries if any(d not in cache.get(q, {}) for run in runs.values() for d, _ in run[q])]
    random.Random(1).shuffle(todo)  # any prefix is a random sample: a run stopped by --budget-minutes stays fair
    started = time.perf_counter()
    for n, qid in enumerate(todo, 1):
        if args.budget_minutes and time.perf_counter() - started > 60 * args.budget_minutes:
            logging.warning(
                "budget of %s min spent: %d of %d questions left unscored",
                args.budget_minutes,
                len(todo) - n + 1,
                len(todo),
            )
            cache_path.write_text(json.dumps(cache))
            break
        wanted = dict.fromkeys(d for run in runs.values() for d, _ in run[qid] if d not in cache.get(qid, {}))
        docs = list(wanted)
        scores = reranker.score(queries[qid], [ds.passage(d, with_title=True) for d in docs])
        cache.setdefault(qid, {}).update({d: float(s) for d, s in zip(docs, scores, strict=True)})
        if n % 10 == 0 or n == len(todo):
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache))
            rate = n / (time.perf_counter() - started)
            logging.warning("reranked %d/%d questions (%.1f questions/s)", n, len(todo), rate)
    return cache


def table(args: argparse.Namespace, ds, queries, runs, scores) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    qrels = {q: ds.qrels[q] for q in queries}
    rows: list[dict[str, object]] = []
    settings = [("first stage alone", None), ("rerank only", RerankFusion("none"))]
    for method in ("zscore", "minmax", "rrf"):
        settings += [(f"{method} w={w}", RerankFusion(method, w)) for w in WEIGHTS]  # type: ignore[arg-type]
    for stage, run in runs.items():
        for depth in sorted({20, args.depth}):
            for label, fusion in settings:
                result: dict[str, dict[str, float]] = {}
                for qid in queries:
                    cands = run[qid][:depth]
                    if fusion is None:
                        final = [s for _, s in cands]
                    else:
                        final = fusion.fuse([scores[qid][d] for d, _ in cands], [s for _, s in cands])
                    result[qid] = {d: f for (d, _), f in zip(cands, final, strict=True)}
                metrics = evaluate(result, qrels, list(METRICS))
                rows.append({"first_stage": stage, "depth": depth, "setting": label, **metrics})
    return rows


def markdown(
    args: argparse.Namespace, rows: list[dict[str, object]], n_queries: int, seconds: float, sampled: int
) -> str:
    lines = ["# Fusing the reranker's score with the first stage's", ""]
    of = "" if n_queries == sampled else f" (a random {n_queries} of a seeded sample of {sampled}: the time budget)"
    lines.append(
        f"- Data: {Path(args.data).name}, {n_queries} questions{of}; JSQuAD (JGLUE, Kurihara et al., 2022), "
        "CC BY-SA 4.0"
    )
    lines.append(f"- Reranker: {Path(args.reranker).name} (ja-ce-mini: CPU-trained offline stand-in); max_length 256")
    lines.append(f"- Scoring plan: {getattr(args, 'plan', 'n/a')}")
    lines.append("- Dense: mE5-small (4-bit dequantized), hybrid = z-score fusion of dense and BM25 (MeCab lemmas)")
    lines.append(f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {seconds:.0f} s")
    for stage in dict.fromkeys(str(r["first_stage"]) for r in rows):
        for depth in sorted({int(r["depth"]) for r in rows if r["first_stage"] == stage}):  # type: ignore[call-overload]
            chosen = [r for r in rows if r["first_stage"] == stage and r["depth"] == depth]
            best = max(chosen, key=lambda r: float(r["ndcg@10"]))  # type: ignore[arg-type]
            lines += ["", f"## {stage}, depth {depth}", "", "| setting | nDCG@10 | MRR@10 |", "| --- | ---: | ---: |"]
            for r in chosen:
                mark = " **(best)**" if r is best else ""
                lines.append(f"| {r['setting']}{mark} | {float(r['ndcg@10']):.4f} | {float(r['mrr@10']):.4f} |")  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir("jsquad-valid"))
    parser.add_argument("--reranker", default=str(offline_model(JA_CE_MINI) or ""))
    parser.add_argument("--embedder", default=None, help="dense model folder (default: the offline mE5-small)")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--limit", type=int, help="only this many questions (seeded sample)")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "jp-rerank" / "fusion-bench"))
    parser.add_argument("--out", type=Path, default=RESULTS / "rerank_fusion.md")
    parser.add_argument(
        "--budget-minutes", type=float, help="stop reranking after this long; the table covers the questions scored"
    )
    args = parser.parse_args(argv)
    if args.data is None or not args.reranker:
        parser.error("needs --data (or JP_RERANK_DATA) and a reranker (build ja-ce-mini, see _paths.py)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    ds = load_beir(args.data)
    queries = sample_queries(ds.queries, args.limit, seed=0) if args.limit else dict(ds.queries)
    runs = first_stage_runs(args, ds, queries)
    scores = rerank_scores(args, ds, queries, runs)
    sampled = len(queries)
    queries = {q: t for q, t in queries.items() if all(d in scores.get(q, {}) for r in runs.values() for d, _ in r[q])}
    if len(queries) < sampled:
        logging.warning(
            "table over the %d of %d sampled questions whose candidates are all scored", len(queries), sampled
        )
    rows = table(args, ds, queries, runs, scores)
    text = markdown(args, rows, len(queries), time.perf_counter() - started, sampled)
    sys.stdout.write(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
