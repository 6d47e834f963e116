"""``jp-rerank eval``: score a pipeline or a reranker on a dataset (BEIR folder, JQaRA, JaCWIR)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER, DEFAULT_FIRST_K
from jp_rerank.errors import CliInputError
from jp_rerank.fusion import RerankFusion
from jp_rerank.presets import DEFAULT_RERANKER

__all__ = ["register"]


def _load_dataset(spec: str) -> object:
    from jp_rerank.evaluation import datasets

    if spec == "jqara":
        return datasets.load_jqara()
    if spec == "jacwir":
        return datasets.load_jacwir()
    if not Path(spec).is_dir():
        raise CliInputError(f"dataset folder not found: {spec} (give a BEIR folder, 'jqara' or 'jacwir')")
    return datasets.load_beir(spec)


def _run_eval(args: argparse.Namespace) -> int:
    from jp_rerank.evaluation import (
        build_candidates,
        evaluate_rerank,
        evaluate_retrieval,
        format_table,
        sample_queries,
        save_result,
    )
    from jp_rerank.evaluation.datasets import BeirDataset
    from jp_rerank.pipeline import TwoStageRetriever
    from jp_rerank.rerank import Reranker

    dataset = _load_dataset(args.data)
    assert isinstance(dataset, BeirDataset)
    queries = sample_queries(dataset.queries, args.limit, seed=args.seed) if args.limit else dataset.queries
    reranker = None if args.reranker.lower() == "none" else Reranker(args.reranker, device=args.device)
    embedder = None if args.embedder in (None, "none") else args.embedder
    models = {"reranker": reranker.model_id if reranker else "none", "embedder": embedder or "none"}
    fusion = RerankFusion.of(args.rerank_fusion, weight=args.fusion_weight)
    settings = {"first_k": args.first_k, "bm25": args.bm25, "setting": args.setting, "limit": args.limit}
    if fusion.active:
        settings.update(rerank_fusion=fusion.method, fusion_weight=fusion.weight)
    name = args.name or f"{args.setting}:{Path(str(args.data)).name}:{models['reranker']}"
    if args.setting == "rerank" and dataset.candidates:
        if reranker is None:
            raise CliInputError("the rerank setting needs a --reranker")
        result = evaluate_rerank(
            queries, dataset.candidates, dataset, reranker.score, models=models, name=name, settings=settings
        )
    else:
        texts = dataset.passages(with_title=True)
        first = TwoStageRetriever.from_texts(
            texts, ids=dataset.doc_ids, embedder=embedder, bm25=args.bm25, first_k=args.first_k, top_n=args.first_k
        )
        if args.setting == "rerank":  # no given candidates: rerank the first stage's top-k
            run = {
                qid: {p.id: p.score for p in hits}
                for qid, hits in zip(queries, first.retrieve_many(list(queries.values())), strict=True)
            }
            if reranker is None:
                raise CliInputError("the rerank setting needs a --reranker")
            result = evaluate_rerank(
                queries,
                build_candidates(run, depth=args.first_k),
                dataset,
                reranker.score,
                models=models,
                name=name,
                settings=settings,
                first_stage=run,
                rerank_fusion=fusion,
            )
        else:
            retriever = (
                TwoStageRetriever(
                    first_stages=first.first_stages,
                    reranker=reranker,
                    first_k=args.first_k,
                    top_n=10,
                    rerank_fusion=fusion,
                )
                if reranker
                else first
            )

            def search(batch: list[str], k: int) -> list[list[tuple[str, float]]]:
                return [[(p.id, p.score) for p in hits] for hits in retriever.retrieve_many(batch, top_n=k)]

            result = evaluate_retrieval(
                dataset, search, k=args.first_k, queries=queries, models=models, name=name, settings=settings
            )
    sys.stdout.write(format_table([result]) + "\n")
    sys.stdout.write("Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0\n" if "jsquad" in name else "")
    if args.output:
        path = save_result(result, args.output)
        sys.stdout.write(f"saved {path}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate retrieval or reranking on a dataset (nDCG, MRR, MAP, Recall, Hit @10/@100)",
        description="Full retrieval (first stage [+ rerank]) or reranking of given candidates (the JQaRA setting; "
        "without given candidates the first stage's top-k are reranked). Results as a table and JSON.",
    )
    p.add_argument("data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv), or 'jqara' / 'jacwir'")
    p.add_argument("--setting", choices=["retrieval", "rerank"], default="retrieval")
    p.add_argument("-m", "--reranker", default=DEFAULT_RERANKER, help="cross-encoder, or 'none'")
    p.add_argument("--embedder", help="dense embedder for a hybrid first stage (default: BM25 only)")
    p.add_argument("--bm25", default=DEFAULT_BM25_TOKENIZER, help="BM25 tokenizer (mecab, char2, char1-2, sudachi)")
    p.add_argument(
        "--first-k", type=int, default=DEFAULT_FIRST_K, help=f"first-stage depth (default {DEFAULT_FIRST_K})"
    )
    p.add_argument(
        "--rerank-fusion",
        choices=["none", "zscore", "minmax", "rrf"],
        default="none",
        help="combine the reranker's score with the first stage's per query (default none: rerank only)",
    )
    p.add_argument("--fusion-weight", type=float, default=0.5, help="the reranker's share in [0, 1] (default 0.5)")
    p.add_argument("--limit", type=int, help="evaluate only this many queries")
    p.add_argument("--seed", type=int, help="sample --limit queries at random with this seed")
    p.add_argument("--name", help="run name in reports")
    p.add_argument("-o", "--output", help="write the result JSON here")
    p.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    p.set_defaults(func=_run_eval)
