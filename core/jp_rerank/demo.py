"""The demo RAG pipeline: bundled Japanese passages → first stage (BM25 or hybrid) → cross-encoder rerank.

Runs fully offline. A model that cannot be loaded (no hub access, empty cache) is skipped with a banner that says
which stage is missing and how to enable it; the demo still completes with what it can run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO, TypeVar

from jp_rerank.errors import ModelLoadError

if TYPE_CHECKING:
    from jp_rerank.embed import Embedder
    from jp_rerank.pipeline import TwoStageRetriever
    from jp_rerank.rerank import Reranker

__all__ = ["DemoReport", "run_demo"]

logger = logging.getLogger(__name__)

_RULE = "=" * 78
M = TypeVar("M")


@dataclass(frozen=True)
class DemoReport:
    """What the demo ran: which stages, how many questions, and which stages were skipped (with reasons)."""

    stages: tuple[str, ...]
    skipped: dict[str, str]
    questions: int
    hits_at_1: int


def _banner(out: TextIO, title: str, lines: Sequence[str]) -> None:
    out.write(f"\n{_RULE}\n!! {title}\n")
    for line in lines:
        out.write(f"   {line}\n")
    out.write(f"{_RULE}\n")


def _try_load(kind: str, load: Callable[[], M], name: str, out: TextIO) -> tuple[M | None, str]:
    """Load a model or explain why it was skipped."""
    try:
        return load(), ""
    except ModelLoadError as exc:
        flag = "--reranker" if kind == "reranker" else "--embedder"
        _banner(
            out,
            f"{kind} skipped: {name!r} could not be loaded",
            [
                str(exc),
                f"To enable this stage: pass {flag} with a local model folder (or an alias/hub id when the",
                "Hugging Face Hub or a populated HF cache is available).",
            ],
        )
        return None, str(exc)


def run_demo(
    *,
    reranker: str | None = None,
    embedder: str | None = None,
    questions: Sequence[str] | None = None,
    top_n: int = 3,
    first_k: int = 20,
    out: TextIO,
) -> DemoReport:
    """Run the demo and write a readable report to ``out``.

    Args:
        reranker: Alias, hub id or local path of the cross-encoder (default: the preset default); ``"none"`` skips it.
        embedder: Alias, hub id or local path of the dense embedder (default: the preset default); ``"none"``
            skips it.
        questions: Questions to ask (default: the bundled demo questions).
        top_n: Passages shown per question.
        first_k: Candidates handed from the first stage to the reranker.
        out: Where the report goes (e.g. ``sys.stdout``).

    Returns:
        A summary of the run.

    Example:
        >>> import io
        >>> report = run_demo(reranker="none", embedder="none", out=io.StringIO())
        >>> report.stages
        ('bm25',)
    """
    from jp_rerank.data import load_demo_corpus, load_demo_queries

    corpus = load_demo_corpus()
    demo_queries = load_demo_queries()
    gold: dict[str, set[str]] = {str(q["text"]): {str(r) for r in q["relevant"]} for q in demo_queries}  # type: ignore[attr-defined]
    asked = list(questions) if questions else list(gold)
    out.write(f"jp-rerank demo: {len(corpus)} bundled Japanese passages, {len(asked)} questions\n")

    rr, em, skipped = _load_models(reranker, embedder, out)
    t0 = time.perf_counter()
    retriever = _index(corpus, rr, em, first_k=first_k, top_n=top_n)
    stages = ("bm25", *(("dense",) if em else ()), *(("rerank",) if rr else ()))
    out.write(f"indexed in {time.perf_counter() - t0:.2f}s; stages: {' -> '.join(stages)}\n")
    if rr:
        out.write(f"reranker: {rr}\n")
    if em:
        out.write(f"embedder: {em}\n")

    hits_at_1 = sum(_ask(retriever, question, gold.get(question, set()), out) for question in asked)
    if gold and not questions:
        out.write(f"\n{hits_at_1}/{len(asked)} questions have a correct passage (*) at rank 1\n")
    if skipped:
        out.write(f"\nfinished without: {', '.join(sorted(skipped))} (see the banners above)\n")
    return DemoReport(stages=stages, skipped=skipped, questions=len(asked), hits_at_1=hits_at_1)


def _load_models(
    reranker: str | None, embedder: str | None, out: TextIO
) -> tuple[Reranker | None, Embedder | None, dict[str, str]]:
    """Load the reranker and the embedder unless ``"none"``; a stage that cannot load is skipped (and why)."""
    from jp_rerank.embed import Embedder
    from jp_rerank.presets import DEFAULT_EMBEDDER, DEFAULT_RERANKER
    from jp_rerank.rerank import Reranker

    skipped: dict[str, str] = {}
    rr: Reranker | None = None
    em: Embedder | None = None
    reranker_name = reranker or DEFAULT_RERANKER
    embedder_name = embedder or DEFAULT_EMBEDDER
    if reranker_name.lower() != "none":
        # torch, not "auto": on some CPUs auto wants a one-time OpenVINO int8 export (minutes of calibration), which
        # a demo over a few dozen passages would never win back.
        load = lambda: Reranker(reranker_name, backend="torch").load()  # noqa: E731
        rr, why = _try_load("reranker", load, reranker_name, out)
        if why:
            skipped["rerank"] = why
    if embedder_name.lower() != "none":
        em, why = _try_load("embedder", lambda: Embedder(embedder_name).load(), embedder_name, out)
        if why:
            skipped["dense"] = why
    return rr, em, skipped


def _index(
    corpus: Sequence[Mapping[str, str]], rr: Reranker | None, em: Embedder | None, *, first_k: int, top_n: int
) -> TwoStageRetriever:
    """Index the passages: BM25, plus dense when an embedder loaded, then the reranker when one loaded."""
    from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER
    from jp_rerank.pipeline import TwoStageRetriever

    return TwoStageRetriever.from_texts(
        [str(d["text"]) for d in corpus],
        ids=[str(d["id"]) for d in corpus],
        metadatas=[{"title": d["title"]} for d in corpus],
        embedder=em,
        bm25=DEFAULT_BM25_TOKENIZER,
        reranker=rr,
        first_k=first_k,
        top_n=top_n,
        # BM25 is much stronger than dense on lexical Japanese QA; z-scored score fusion keeps both signals
        # (benchmarks/retrieval_quality.py: nDCG@10 0.954 vs 0.937 for equal-weight RRF on JSQuAD).
        fusion="weighted" if em else "rrf",
        normalization="zscore",
    )


def _ask(retriever: TwoStageRetriever, question: str, gold: set[str], out: TextIO) -> bool:
    """Retrieve for one question and print the passages (``*`` marks a correct one); True if rank 1 is correct."""
    t1 = time.perf_counter()
    passages = retriever.retrieve(question)
    elapsed = time.perf_counter() - t1
    out.write(f"\nQ: {question}    ({elapsed * 1000:.0f} ms)\n")
    timings = getattr(retriever, "last_timings", {}) or {}
    if timings:
        out.write("   timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()) + "\n")
    for rank, p in enumerate(passages, 1):
        rerank = f"rerank {p.rerank_score:.4f}  " if p.rerank_score is not None else ""
        mark = " *" if p.id in gold else ""
        out.write(
            f"  {rank}. [{p.id}] {rerank}first-stage {p.first_stage_score:.4f}  "
            f"{p.metadata.get('title', '')}: {p.text[:60]}…{mark}\n"
        )
    return bool(passages) and passages[0].id in gold
