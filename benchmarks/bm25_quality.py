"""Japanese BM25 quality and speed on a BEIR-format dataset (JSQuAD by default), one row per configuration.

Each configuration indexes the whole corpus (``title + " " + text`` unless marked "text only") with
:class:`jp_rerank.lexical.BM25Index`, searches every query with ``search_many`` and reports nDCG@10,
MRR@10 and Recall@100, the index build time (tokenising included) and queries per second (tokenising
included). The first rows reproduce the reference set-up (bm25s defaults k1=1.5, b=0.75).

Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.

Usage:
    python benchmarks/bm25_quality.py [--data ../shared/data/jsquad-valid] [--only mecab,char2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _paths import data_dir

from jp_rerank.evaluation.datasets import BeirDataset, load_beir
from jp_rerank.evaluation.metrics import evaluate
from jp_rerank.lexical import DEFAULT_B, DEFAULT_K1, DEFAULT_TOKENIZER, BM25Index, BM25Method

METRICS = ("ndcg@10", "mrr@10", "recall@100")
ATTRIBUTION = "JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0"


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    tokenizer: str
    k1: float = DEFAULT_K1
    b: float = DEFAULT_B
    method: BM25Method = "lucene"
    with_title: bool = True

    @property
    def label(self) -> str:
        """Row label of the table."""
        method = "" if self.method == "lucene" else f" {self.method}"
        return f"{self.tokenizer} k1={self.k1} b={self.b}{method}" + ("" if self.with_title else " (text only)")


CONFIGS = (
    # Reference set-up: bm25s defaults.
    Config("mecab-surface+func", k1=1.5, b=0.75),
    Config("char2", k1=1.5, b=0.75),
    Config("mecab", k1=1.5, b=0.75),
    # Our defaults (k1=0.9, b=0.4) across tokenizers.
    Config("mecab-surface+func"),
    Config("mecab-surface"),
    Config("mecab-base"),
    Config("mecab-lemma+func"),
    Config("mecab"),
    Config("mecab", method="robertson"),
    Config("mecab", method="atire"),
    Config("mecab", with_title=False),
    Config("sudachi-a"),
    Config("sudachi-c"),
    Config("sudachi-c-surface"),
    Config("char2"),
    Config("char1-2"),
    Config("char1-2", with_title=False),
    Config("char3"),
)


def run_config(config: Config, ds: BeirDataset) -> dict[str, float]:
    qids = list(ds.queries)
    texts = ds.passages(with_title=config.with_title)
    index = BM25Index(config.tokenizer, k1=config.k1, b=config.b, method=config.method)
    start = time.perf_counter()
    index.index(texts, ids=ds.doc_ids)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    results = index.search_many([ds.queries[q] for q in qids], k=100)
    search_s = time.perf_counter() - start
    run = {qid: {hit.id: hit.score for hit in hits} for qid, hits in zip(qids, results, strict=True) if hits}
    scores = evaluate(run, ds.qrels, METRICS)
    scores.update(build_s=build_s, qps=len(qids) / search_s, vocab=float(index.vocabulary_size))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=data_dir("jsquad-valid"),
        help="BEIR folder (default: $JP_RERANK_DATA/jsquad-valid or ../shared/data/jsquad-valid)",
    )
    parser.add_argument("--only", default="", help="comma-separated tokenizer specs to keep (default: all)")
    args = parser.parse_args(argv)
    if args.data is None or not Path(args.data).is_dir():
        parser.error("dataset folder not found: pass --data or set JP_RERANK_DATA")
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    configs = [c for c in CONFIGS if not wanted or c.tokenizer in wanted]

    ds = load_beir(args.data)
    print(f"data: {args.data} — {ATTRIBUTION}")
    print(f"      {len(ds.corpus)} passages, {len(ds.queries)} queries; full-corpus retrieval, k=100")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"default BM25Index(): tokenizer={DEFAULT_TOKENIZER!r}, k1={DEFAULT_K1}, b={DEFAULT_B}, method='lucene'")
    print("reference (shared README): mecab surface nDCG@10 0.936, R@100 0.991; char bigrams nDCG@10 0.941\n")
    header = f"{'config':42s} {'nDCG@10':>8s} {'MRR@10':>8s} {'R@100':>8s} {'build s':>8s} {'q/s':>8s} {'vocab':>8s}"
    print(header)
    print("-" * len(header))
    for config in configs:
        m = run_config(config, ds)
        print(
            f"{config.label:42s} {m['ndcg@10']:8.4f} {m['mrr@10']:8.4f} {m['recall@100']:8.4f} "
            f"{m['build_s']:8.2f} {m['qps']:8.0f} {m['vocab']:8.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
