"""First-stage retrieval quality of the two-stage pipeline on a BEIR-format dataset (JSQuAD by default).

Every configuration is a :class:`jp_rerank.pipeline.TwoStageRetriever` without a reranker, retrieving the top 100
of the whole corpus for every question: BM25 (MeCab lemmas, character bigrams), dense (a real embedder when one is
available: the offline mE5-small, 4-bit dequantized) and hybrids fused by reciprocal rank fusion or weighted
score fusion. Each first stage indexes the corpus and answers all questions once; the configurations then run the
retriever over those cached answers, so fusion is exercised by the pipeline itself. Reported: nDCG@10, MRR@10,
Recall@100 (:func:`jp_rerank.evaluation.metrics.evaluate`), and per first stage the index build time and query
throughput.

Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.

Usage:
    python benchmarks/retrieval_quality.py [--data ../shared/data/jsquad-valid]
        [--embedder ~/.cache/jp-rerank-offline/multilingual-e5-small-q4dq] [--sparse SPLADE_DIR] [--max-queries N]

The embedder path defaults to the real offline mE5-small (see ``benchmarks/_paths.py``); build it with
``HF_HUB_OFFLINE=1 python ../shared/tools/build_offline_models.py --only dense``. Without it, only the BM25 rows are
measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _paths import E5_SMALL, data_dir, offline_model

from jp_rerank.embed import Embedder
from jp_rerank.evaluation.datasets import load_beir
from jp_rerank.evaluation.metrics import evaluate
from jp_rerank.hits import FirstStage, SearchHit
from jp_rerank.lexical import BM25Index
from jp_rerank.pipeline import DenseRetriever, TwoStageRetriever

METRICS = ("ndcg@10", "mrr@10", "recall@100")
ATTRIBUTION = "JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0"
E5_LABEL = "mE5-small (4-bit dequantized)"
DEPTH = 100


class CachedStage:
    """A first stage that answers the benchmark's questions once and replays the answers (same ``name``)."""

    def __init__(self, stage: FirstStage, queries: Sequence[str], k: int) -> None:
        self.stage = stage
        start = time.perf_counter()
        results = stage.search_many(list(queries), k)
        self.search_s = time.perf_counter() - start
        self._answers = dict(zip(queries, results, strict=True))

    @property
    def name(self) -> str:
        """The wrapped stage's name."""
        return self.stage.name

    def search_many(self, queries: Sequence[str], k: int) -> list[Sequence[SearchHit]]:
        """Replay cached hits (the first ``k``)."""
        return [list(self._answers[q])[:k] for q in queries]


@dataclass(frozen=True)
class Config:
    """One measured row: which first stages, fused how."""

    label: str
    stages: tuple[str, ...]
    fusion: str = "rrf"
    normalization: str = "minmax"
    weights: dict[str, float] = field(default_factory=dict)
    rrf_k: int = 60


def configs(available: set[str], dense_label: str) -> list[Config]:
    rows = [
        Config("BM25 MeCab (lemmas, k1=0.9 b=0.4)", ("bm25-mecab",)),
        Config("BM25 char bigrams (k1=0.9 b=0.4)", ("bm25-char2",)),
        Config("BM25 MeCab + char bigrams, RRF", ("bm25-mecab", "bm25-char2")),
        Config(f"dense {dense_label}", ("dense",)),
        Config("sparse SPLADE", ("sparse",)),
        Config("hybrid dense + BM25 MeCab, RRF k=60", ("dense", "bm25-mecab")),
        Config("hybrid dense + BM25 MeCab, RRF k=60 w=1:2", ("dense", "bm25-mecab"), weights={"bm25-mecab": 2.0}),
        Config("hybrid dense + BM25 MeCab, RRF k=10", ("dense", "bm25-mecab"), rrf_k=10),
        Config("hybrid dense + BM25 char2, RRF k=60", ("dense", "bm25-char2")),
        Config("hybrid dense + MeCab + char2, RRF k=60", ("dense", "bm25-mecab", "bm25-char2")),
        Config("hybrid dense + BM25 MeCab, min-max", ("dense", "bm25-mecab"), fusion="weighted"),
        Config(
            "hybrid dense + BM25 MeCab, z-score", ("dense", "bm25-mecab"), fusion="weighted", normalization="zscore"
        ),
        Config(
            "hybrid dense + MeCab + char2, z-score",
            ("dense", "bm25-mecab", "bm25-char2"),
            fusion="weighted",
            normalization="zscore",
        ),
        Config("hybrid sparse + BM25 MeCab, RRF k=60", ("sparse", "bm25-mecab")),
        Config("hybrid dense + sparse + BM25 MeCab, RRF", ("dense", "sparse", "bm25-mecab")),
    ]
    return [c for c in rows if set(c.stages) <= available]


def build_dense(
    texts: list[str],
    ids: list[str],
    metas: list[dict[str, str]],
    embedder: Embedder,
    args: argparse.Namespace,
    dataset: str,
) -> DenseRetriever:
    """Embed the corpus into an exact index, or load it from ``--cache`` when a matching one was saved."""
    from jp_rerank.index import ExactIndex

    mode = "text" if args.text_only else "title-text"
    folder = args.cache / f"{dataset}-{Path(embedder.model_id).name}-{args.max_length}-{mode}" if args.cache else None
    if folder is not None and (folder / "CURRENT").is_file():
        index = ExactIndex.load(folder, embedder_id=embedder.model_id)
        if len(index) == len(ids):
            print(f"(dense index loaded from {folder})")
            return DenseRetriever(index, embedder)
    stage = DenseRetriever.from_texts(texts, ids=ids, metadatas=metas, embedder=embedder, backend="exact")
    if folder is not None:
        stage.index.save(folder)
    return stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=data_dir("jsquad-valid"),
        help="BEIR folder (default: $JP_RERANK_DATA/jsquad-valid or ../shared/data/jsquad-valid)",
    )
    parser.add_argument(
        "--embedder",
        default=None,
        help="dense model folder (default: the offline mE5-small, see _paths.py); 'none' skips the dense rows",
    )
    parser.add_argument("--sparse", default=None, help="SPLADE model folder (no offline one exists yet)")
    parser.add_argument("--max-length", type=int, default=512, help="token limit of the dense embedder")
    parser.add_argument("--max-queries", type=int, default=0, help="evaluate only the first N questions (0: all)")
    parser.add_argument("--text-only", action="store_true", help="index passage text without the title")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder to save the dense index in and reuse it on the next run (same model, length and text mode)",
    )
    args = parser.parse_args(argv)
    if args.data is None or not Path(args.data).is_dir():
        parser.error("dataset folder not found: pass --data or set JP_RERANK_DATA")
    embedder_path = offline_model(E5_SMALL) if args.embedder is None else args.embedder
    if embedder_path is not None and str(embedder_path).lower() == "none":
        embedder_path = None

    ds = load_beir(args.data)
    qids = list(ds.queries)[: args.max_queries or None]
    queries = [ds.queries[q] for q in qids]
    texts = ds.passages(with_title=not args.text_only)
    metas = [{"title": ds.corpus[d]["title"]} for d in ds.doc_ids]
    dense_label = E5_LABEL if embedder_path and Path(embedder_path).name == E5_SMALL else str(embedder_path)
    print(f"data: {args.data} — {ATTRIBUTION}")
    print(
        f"      {len(ds.corpus)} passages ({'text only' if args.text_only else 'title + text'}), "
        f"{len(queries)} questions; full-corpus retrieval, depth {DEPTH}, no reranker"
    )
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        f"dense: {dense_label if embedder_path else 'none (no embedder found)'}"
        + (f", max_length {args.max_length}" if embedder_path else "")
    )
    print(f"sparse: {args.sparse or 'none'}\n")

    stages: dict[str, CachedStage] = {}
    build_s: dict[str, float] = {}
    for name, spec in (("bm25-mecab", "mecab"), ("bm25-char2", "char2")):
        start = time.perf_counter()
        index = BM25Index(spec, name=name).index(texts, ds.doc_ids, metas)
        build_s[name] = time.perf_counter() - start
        stages[name] = CachedStage(index, queries, DEPTH)
    if embedder_path:
        embedder = Embedder(embedder_path, max_length=args.max_length, batch_size=16).load()
        start = time.perf_counter()
        dense = build_dense(texts, ds.doc_ids, metas, embedder, args, ds.name)
        build_s["dense"] = time.perf_counter() - start
        stages["dense"] = CachedStage(dense, queries, DEPTH)
    if args.sparse:
        from jp_rerank.embed import SparseEmbedder
        from jp_rerank.index import SparseIndex

        start = time.perf_counter()
        sparse_index = SparseIndex(SparseEmbedder(args.sparse).load())
        sparse_index.add(texts, ids=ds.doc_ids, metadatas=metas)
        build_s["sparse"] = time.perf_counter() - start
        stages["sparse"] = CachedStage(sparse_index, queries, DEPTH)

    print(f"{'first stage':12s} {'index s':>9s} {'queries/s':>10s}")
    for name, stage in stages.items():
        print(f"{name:12s} {build_s[name]:9.1f} {len(queries) / stage.search_s:10.1f}")
    print()

    header = f"{'configuration':44s} {'nDCG@10':>8s} {'MRR@10':>8s} {'R@100':>8s} {'pipeline ms/q':>14s}"
    print(header)
    print("-" * len(header))
    for config in configs(set(stages), dense_label):
        retriever = TwoStageRetriever(
            first_stages=[stages[s] for s in config.stages],
            first_k=DEPTH,
            top_n=DEPTH,
            fusion=config.fusion,  # type: ignore[arg-type]
            normalization=config.normalization,  # type: ignore[arg-type]
            weights=config.weights or None,
            rrf_k=config.rrf_k,
        )
        start = time.perf_counter()
        results = retriever.retrieve_many(queries)
        elapsed = time.perf_counter() - start
        run = {qid: {p.id: p.score for p in passages} for qid, passages in zip(qids, results, strict=True) if passages}
        m = evaluate(run, {q: ds.qrels[q] for q in qids}, METRICS)
        print(
            f"{config.label:44s} {m['ndcg@10']:8.4f} {m['mrr@10']:8.4f} {m['recall@100']:8.4f} "
            f"{1000 * elapsed / len(queries):14.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
