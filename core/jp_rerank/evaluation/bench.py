"""The reranking and embedding speed benchmark behind ``jp-rerank bench`` (peers are added in ``benchmarks/``).

:func:`run_bench` times, on the same Japanese (question, passage) pairs (:mod:`jp_rerank.evaluation.bench_pairs`):
sentence-transformers ``CrossEncoder.predict``, our :class:`jp_rerank.Reranker` with its defaults, and each of our
backends; it checks each backend's ranking against torch fp32 (on the benchmark model, and on a trained model when
one is given), and times our :class:`jp_rerank.Embedder` against sentence-transformers' ``encode``
(:mod:`jp_rerank.evaluation.bench_methods`). ``extra_methods`` lets a caller add methods (the peer benchmark in
``benchmarks/bench.py`` adds the tutorial loop, LangChain and LlamaIndex). The result is a
:class:`jp_rerank.evaluation.bench_report.BenchReport`.

Models: a given folder (``model=``), the real preset when it is in the local Hugging Face cache, or a same-shape
random-weight model built with :mod:`jp_rerank.testing` (``tokenizer_json=`` swaps in a real tokenizer so pair
lengths are real; :mod:`jp_rerank.evaluation.bench_models`). The report says which.

Example:
    >>> from jp_rerank.evaluation.bench import run_bench
    >>> report = run_bench(data="path/to/jsquad-valid", quick=True)  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jp_rerank.evaluation.bench_methods import bench_embed, bench_rerank, trained_agreement
from jp_rerank.evaluation.bench_models import RERANK_SHAPES, same_shape_cross_encoder
from jp_rerank.evaluation.bench_pairs import candidate_pairs
from jp_rerank.evaluation.bench_report import BenchReport, EmbedResult, RerankShapeResult
from jp_rerank.evaluation.datasets import load_beir
from jp_rerank.evaluation.timing import OURS, MethodResult, Pairs, Scorer, load_average

if TYPE_CHECKING:
    from jp_rerank.evaluation.datasets import BeirDataset

__all__ = ["ExtraMethods", "run_bench"]

logger = logging.getLogger(__name__)

ExtraMethods = Callable[[str, str], Sequence[tuple[MethodResult, Callable[[], Scorer]]]]
"""``extra(shape, model_path)`` → more methods to time on that model, as (result record, builder)."""


def run_bench(
    *,
    data: str | os.PathLike[str],
    shapes: Sequence[str] = ("xsmall", "small"),
    model: str | None = None,
    questions: int = 2,
    candidates: int = 100,
    repeats: int = 3,
    quick: bool = False,
    variants: bool = True,
    with_agreement: bool = True,
    agreement_model: tuple[str, str] | None = None,
    embed_models: Sequence[tuple[str, str, str]] = (),
    embed_texts: int = 64,
    models_dir: str | os.PathLike[str] | None = None,
    tokenizer_json: str | os.PathLike[str] | None = None,
    extra_methods: ExtraMethods | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> BenchReport:
    """Run the benchmark and return its report.

    Args:
        data: A BEIR folder of Japanese questions and passages (e.g. JSQuAD's).
        shapes: Reranker shapes to measure (``"xsmall"``, ``"small"``, ``"base"``, ``"large"``); ignored with
            ``model``.
        model: Measure this cross-encoder (alias, hub id or folder) instead of the shapes.
        questions: Questions per shape (each with ``candidates`` passages).
        candidates: Candidate passages per question (BM25 top-k).
        repeats: Timed repetitions per method (medians are reported).
        quick: One question, two repetitions, the first shape only, no variants/agreement (a smoke run).
        variants: Time each of our backends, not only the default.
        with_agreement: Compare our backends' rankings with torch fp32 on the same pairs.
        agreement_model: ``(path, note)`` of a trained cross-encoder to check every backend's agreement on
            (random-weight models only stress-test the numerics).
        embed_models: ``(kind, path, note)`` of embedders to time (``kind`` ``"static"`` embeds every passage,
            others the first ``embed_texts``).
        embed_texts: Passages per repetition for transformer embedders.
        models_dir: Where same-shape models are built and cached (default ``~/.cache/jp-rerank/bench-models``).
        tokenizer_json: A real XLM-R ``tokenizer.json`` for the same-shape XLM-R models.
        extra_methods: More methods per model (see :data:`ExtraMethods`).
        threads: torch threads (default: torch's own choice).
        seed: Seed of the question sample.

    Returns:
        The report (also printable with :meth:`BenchReport.to_markdown`).

    Raises:
        FileNotFoundError: If the data folder does not exist.
        ValueError: An unknown shape or a non-positive count.
    """
    started = time.perf_counter()
    folder = _check_arguments(shapes, model, data, questions=questions, candidates=candidates, repeats=repeats)
    if quick:
        shapes, questions, repeats, variants, with_agreement, embed_texts = (tuple(shapes[:1]), 1, 2, False, False, 16)
    settings = {
        "shapes": [model] if model else list(shapes),
        "questions": questions,
        "candidates": candidates,
        "repeats": repeats,
        "quick": quick,
        "variants": variants,
        "agreement": with_agreement,
        "embed_texts": embed_texts,
        "seed": seed,
    }
    report = _start_report(settings, threads=threads, peaks=not quick)
    dataset, pairs, report.data = _workload(folder, questions, candidates, seed)
    rerank = partial(bench_rerank, pairs=pairs, qrels=dataset.qrels, repeats=repeats, quick=quick, variants=variants)
    for shape, path, note in _rerank_targets(model, shapes, models_dir, tokenizer_json):
        logger.info("reranking benchmark on %s (%s)", shape, path)
        extra = extra_methods(shape, path) if extra_methods is not None and not quick else ()
        report.rerank.append(rerank(shape, path, note, with_agreement=with_agreement, extra=extra))
    report.embed = _bench_embedders(embed_models, dataset, embed_texts, repeats)
    if with_agreement and agreement_model is not None:
        report.agreement_trained = trained_agreement(agreement_model[0], pairs, dataset.qrels)
        report.agreement_trained_note = agreement_model[1]
    return _finish(report, started)


def _check_arguments(
    shapes: Sequence[str],
    model: str | None,
    data: str | os.PathLike[str],
    *,
    questions: int,
    candidates: int,
    repeats: int,
) -> Path:
    """Return the data folder; refuse a non-positive count, an unknown shape (without a model), a missing folder."""
    for name, value in (("questions", questions), ("candidates", candidates), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    unknown = [s for s in shapes if s not in RERANK_SHAPES]
    if unknown and model is None:
        raise ValueError(f"unknown shape(s) {unknown}; choose from {list(RERANK_SHAPES)}")
    folder = Path(data)
    if not (folder / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"no BEIR data folder at {folder} (pass --data or set JP_RERANK_DATA)")
    return folder


def _start_report(settings: dict[str, Any], *, threads: int | None, peaks: bool) -> BenchReport:
    """A report with the settings, this machine and its load; with ``peaks``, its best matrix-product rates."""
    import torch

    from jp_rerank.hardware import machine_info

    if threads is not None:
        torch.set_num_threads(threads)
    report = BenchReport(settings={**settings, "threads": torch.get_num_threads()}, machine=machine_info().to_dict())
    report.load_average["start"] = load_average()
    if peaks:
        from jp_rerank.evaluation.flops import peak_rates
        from jp_rerank.runtime import cpu_supports_bf16

        logger.warning("measuring this machine's peak matrix-product rates")
        report.peak_gflops = peak_rates(with_bf16=cpu_supports_bf16(), threads=torch.get_num_threads())
    return report


def _workload(folder: Path, questions: int, candidates: int, seed: int) -> tuple[BeirDataset, Pairs, dict[str, Any]]:
    """The dataset, the pairs every method scores, and the data facts the report prints."""
    dataset = load_beir(folder)
    pairs = candidate_pairs(dataset, questions, candidates, seed)
    data = {
        "path": str(folder),
        "name": folder.name,
        "corpus_passages": len(dataset.corpus),
        "questions_available": len(dataset.queries),
        "questions_used": len(pairs.queries),
        "pairs_per_repetition": pairs.n_pairs,
        "candidates": pairs.note,
        "mean_passage_chars": round(float(np.mean([len(d) for docs in pairs.docs for d in docs])), 1),
        "attribution": "JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0" if "jsquad" in folder.name else "",
    }
    return dataset, pairs, data


def _rerank_targets(
    model: str | None,
    shapes: Sequence[str],
    models_dir: str | os.PathLike[str] | None,
    tokenizer_json: str | os.PathLike[str] | None,
) -> list[tuple[str, str, str]]:
    """(shape, model path, note) of each cross-encoder to time: the given model, else one per shape.

    Same-shape models are built and cached in ``models_dir`` (default ``~/.cache/jp-rerank/bench-models``).
    """
    cache = Path(models_dir) if models_dir is not None else Path.home() / ".cache" / "jp-rerank" / "bench-models"
    cache.mkdir(parents=True, exist_ok=True)
    if model:
        return [("model", model, "the given model")]
    return [(shape, *same_shape_cross_encoder(shape, cache, tokenizer_json=tokenizer_json)) for shape in shapes]


def _bench_embedders(
    embed_models: Sequence[tuple[str, str, str]], dataset: BeirDataset, embed_texts: int, repeats: int
) -> list[EmbedResult]:
    """Time each embedder on the passages: every one for ``"static"`` models, else the first ``embed_texts``."""
    if not embed_models:
        return []
    passages = dataset.passages(with_title=True)
    results = []
    for kind, path, note in embed_models:
        texts = passages if kind == "static" else passages[:embed_texts]
        logger.info("embedding benchmark on %s", kind)
        results.append(bench_embed(kind, path, note, texts, repeats))
    return results


def _finish(report: BenchReport, started: float) -> BenchReport:
    """Add the goal verdicts, the load average at the end and the elapsed time."""
    report.notes = _notes(report)
    report.load_average["end"] = load_average()
    report.elapsed_s = round(time.perf_counter() - started, 1)
    return report


def _speed(shape: RerankShapeResult | EmbedResult, name: str) -> MethodResult | None:
    return next((m for m in shape.methods if m.name == name and m.items_per_s), None)


def _notes(report: BenchReport) -> list[str]:
    """The speed goals, each met or not: ours (default) against sentence-transformers and the tutorial loop."""
    notes = []
    for shape in report.rerank:
        ours = _speed(shape, OURS)
        for base, goal in (("st-predict", 2.5), ("tutorial", 5.0)):
            other = _speed(shape, base)
            if ours is None or other is None or other.ours_speedup is None:
                continue
            verdict = "met" if other.ours_speedup >= goal else "NOT met"
            notes.append(
                f"{shape.shape}: ours (default) is {other.ours_speedup:.2f}x {base} (goal >= {goal}x: {verdict})"
            )
    for emb in report.embed:
        st = _speed(emb, "st-encode")
        if st is not None and st.ours_speedup is not None:
            goal = 1.0 if emb.kind == "static" else 2.0
            verdict = "met" if st.ours_speedup >= goal else "NOT met"
            notes.append(f"embed {emb.kind}: ours is {st.ours_speedup:.2f}x st-encode (goal >= {goal}x: {verdict})")
    return notes
