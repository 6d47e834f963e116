"""Evaluation: run retrievers and rerankers over datasets, record quality and speed, compare runs.

Metrics live in :mod:`jp_rerank.evaluation.metrics` (``evaluate``, ``evaluate_per_query``); this package runs the two
settings (:func:`evaluate_retrieval`, :func:`evaluate_rerank`), stores results (:class:`EvalResult`, JSON) and
reports them (tables, Markdown, a quality-vs-speed plot). Importing it does not import ranx or matplotlib.

Example:
    >>> from jp_rerank.evaluation import build_candidates
    >>> build_candidates({"q1": {"a": 0.1, "b": 0.7}}, depth=1)
    {'q1': ['b']}
"""

from __future__ import annotations

from jp_rerank.evaluation.metrics import DEFAULT_METRICS, evaluate, evaluate_per_query
from jp_rerank.evaluation.reports import format_markdown, format_table, plot_results, write_markdown
from jp_rerank.evaluation.results import (
    DatasetStats,
    EvalResult,
    Timing,
    load_result,
    load_results,
    save_result,
)
from jp_rerank.evaluation.runs import (
    ScoreFn,
    SearchFn,
    build_candidates,
    evaluate_rerank,
    evaluate_retrieval,
    sample_queries,
)

__all__ = [
    "DEFAULT_METRICS",
    "DatasetStats",
    "EvalResult",
    "ScoreFn",
    "SearchFn",
    "Timing",
    "build_candidates",
    "evaluate",
    "evaluate_per_query",
    "evaluate_rerank",
    "evaluate_retrieval",
    "format_markdown",
    "format_table",
    "load_result",
    "load_results",
    "plot_results",
    "sample_queries",
    "save_result",
    "write_markdown",
]
