"""The reranking and embedding speed benchmark behind ``jp-rerank bench`` (peers are added in ``benchmarks/``).

:func:`run_bench` times, on the same Japanese (question, passage) pairs: sentence-transformers
``CrossEncoder.predict``, our :class:`jp_rerank.Reranker` with its defaults, and each of our backends; it checks
each backend's ranking against torch fp32 (on the benchmark model, and on a trained model when one is given),
and times our :class:`jp_rerank.Embedder` against sentence-transformers' ``encode``. The timing rules are those
of :mod:`jp_rerank.evaluation.timing`. ``extra_methods`` lets a caller add methods (the peer benchmark in
``benchmarks/bench.py`` adds the tutorial loop, LangChain and LlamaIndex).

Models: a given folder (``model=``), the real preset when it is in the local Hugging Face cache, or a same-shape
random-weight model built with :mod:`jp_rerank.testing` (``tokenizer_json=`` swaps in a real tokenizer so pair
lengths are real). The report says which.

Example:
    >>> from jp_rerank.evaluation.bench import run_bench
    >>> report = run_bench(data="path/to/jsquad-valid", quick=True)  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jp_rerank.evaluation.datasets import load_beir
from jp_rerank.evaluation.timing import (
    OURS,
    Agreement,
    Method,
    MethodResult,
    Pairs,
    Scorer,
    agreement,
    build_method,
    load_average,
    time_methods,
)
from jp_rerank.extras import is_available

if TYPE_CHECKING:
    from jp_rerank.evaluation.datasets import BeirDataset

__all__ = [
    "RERANK_SHAPES",
    "BenchReport",
    "EmbedResult",
    "ExtraMethods",
    "RerankShapeResult",
    "bench_embed",
    "bench_rerank",
    "cached_preset",
    "candidate_pairs",
    "run_bench",
    "same_shape_cross_encoder",
    "write_report",
]

logger = logging.getLogger(__name__)

RERANK_SHAPES = (
    "xsmall",
    "small",
    "base",
    "large",
    "tiny-v2",
    "xsmall-v2",
    "small-v2",
    "base-v2",
    "ruri-v3-reranker-310m",
)
"""Reranker shapes :func:`same_shape_cross_encoder` builds (sizes from :data:`jp_rerank.testing.SHAPES`): the v1
XLM-R / BERT rerankers and the ModernBERT generation (japanese-reranker-*-v2, ruri-v3-reranker-310m)."""

ExtraMethods = Callable[[str, str], Sequence[tuple[MethodResult, Callable[[], Scorer]]]]
"""``extra(shape, model_path)`` → more methods to time on that model, as (result record, builder)."""

_FP32 = "ours torch-fp32"


@dataclass
class RerankShapeResult:
    """Reranking speed of every method on one model shape."""

    shape: str
    model: str
    model_note: str
    questions: int
    pairs: int
    pair_tokens: dict[str, float]
    methods: list[MethodResult]
    agreement: list[Agreement] = field(default_factory=list)
    agreement_note: str = ""
    export_note: str = ""
    gflop_per_pair: float | None = None
    """Useful work of one pair, from the model config and the real (unpadded) token counts."""


@dataclass
class EmbedResult:
    """Embedding speed of one model kind."""

    kind: str
    model: str
    model_note: str
    texts: int
    methods: list[MethodResult]


@dataclass
class BenchReport:
    """Everything one ``jp-rerank bench`` run measured.

    Example:
        >>> BenchReport(settings={"quick": True}).to_dict()["settings"]
        {'quick': True}
    """

    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    rerank: list[RerankShapeResult] = field(default_factory=list)
    embed: list[EmbedResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    agreement_trained: list[Agreement] = field(default_factory=list)
    agreement_trained_note: str = ""
    peak_gflops: dict[str, float] = field(default_factory=dict)
    """This machine's measured best matrix-product rates (GFLOP/s; GOP/s for int8), per precision."""
    load_average: dict[str, list[float]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Render the report as Markdown tables (what ``jp-rerank bench`` prints)."""
        return _markdown(self)


# ---------------------------------------------------------------------------------------------- data


def candidate_pairs(dataset: BeirDataset, questions: int, candidates: int, seed: int = 0) -> Pairs:
    """A seeded sample of questions, each with its BM25 (MeCab) top-``candidates`` passages (title + text).

    A question with fewer BM25 hits is topped up with seeded random passages (the note says how many).
    """
    from jp_rerank.lexical import BM25Index

    texts = dataset.passages(with_title=True)
    ids = list(dataset.doc_ids)
    index = BM25Index().index(texts, ids=ids)
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    qids = random.Random(seed).sample(sorted(dataset.queries), min(questions, len(dataset.queries)))
    rng = random.Random(seed + 1)
    out_ids: list[list[str]] = []
    out_docs: list[list[str]] = []
    topped = 0
    for qid in qids:
        hits = [position[h.id] for h in index.search(dataset.queries[qid], k=candidates)]
        if len(hits) < min(candidates, len(texts)):
            chosen = set(hits)
            rest = [i for i in range(len(texts)) if i not in chosen]
            hits += rng.sample(rest, min(candidates, len(texts)) - len(hits))
            topped += 1
        out_ids.append([ids[i] for i in hits])
        out_docs.append([texts[i] for i in hits])
    note = f"BM25 (jp_rerank.lexical, MeCab) top-{candidates} per question over title + text"
    if topped:
        note += f"; {topped} question(s) had fewer BM25 hits and were topped up with seeded random passages"
    return Pairs(qids, [dataset.queries[q] for q in qids], out_ids, out_docs, note)


# ---------------------------------------------------------------------------------------------- models


def cached_preset(alias: str) -> str | None:
    """Local snapshot folder of a preset if it is in the Hugging Face cache (never contacts the hub)."""
    from jp_rerank.presets import find_preset

    preset = find_preset(alias)
    if preset is None or not is_available("huggingface_hub"):
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(preset.model_id, "config.json")
    return str(Path(found).parent) if isinstance(found, str) else None


def same_shape_cross_encoder(
    shape: str, models_dir: Path, *, tokenizer_json: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """Return (path, note) of the model for a shape: the cached real preset, else a same-shape local model.

    Same-shape models are built once into ``models_dir`` with :mod:`jp_rerank.testing`. ``tokenizer_json``
    replaces the XLM-R and ModernBERT shapes' demo tokenizer with a real one (e.g. multilingual-e5's
    ``tokenizer.json``), so that pair lengths, and with them the speeds, are those of real text; a ModernBERT shape
    then keeps that tokenizer's own special tokens and pair template (give the same file to every shape to time
    the architectures on the same token counts).
    """
    from jp_rerank import testing

    real = cached_preset(shape)
    if real is not None:
        return real, f"real preset {shape} (from the local Hugging Face cache)"
    arch = testing.SHAPES[shape].arch
    real_tok = arch in ("xlm-roberta", "modernbert") and tokenizer_json is not None
    suffix = "-xlmr-tokenizer" if arch == "xlm-roberta" else "-real-tokenizer"
    folder = models_dir / (shape + suffix if real_tok else shape)
    if not (folder / "config.json").is_file():
        logger.info("building a same-shape %s cross-encoder in %s", shape, folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if arch == "modernbert":
            testing.build_modernbert_cross_encoder(
                tmp,
                shape=shape,  # type: ignore[arg-type]
                tokenizer_json=tokenizer_json if real_tok else None,
            )
        elif arch == "xlm-roberta":
            testing.build_xlmr_cross_encoder(tmp, shape=shape)  # type: ignore[arg-type]
            if real_tok and tokenizer_json is not None:
                shutil.copy2(tokenizer_json, tmp / "tokenizer.json")
        else:
            testing.build_bert_ja_cross_encoder(tmp, shape=shape)  # type: ignore[arg-type]
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    like = testing.SHAPES[shape].like
    tok = "the given real tokenizer" if real_tok else "a tokenizer trained on the bundled demo corpus"
    return str(folder), f"same-shape random-weight model ({like}) with {tok}; the real preset was not reachable"


# ---------------------------------------------------------------------------------------------- methods


def st_predict(path: str) -> Scorer:
    """sentence-transformers ``CrossEncoder.predict`` with its defaults, as a scorer."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(path, device="cpu")
    return lambda query, docs: model.predict([(query, d) for d in docs], show_progress_bar=False)


def ours(path: str, **kwargs: Any) -> Scorer:
    """Our :class:`jp_rerank.Reranker` (``kwargs`` on top of its defaults), as a scorer."""
    from jp_rerank import Reranker

    reranker = Reranker(path, device="cpu", **kwargs).load()
    return reranker.score


def ours_variants(path: str, quick: bool = False) -> list[tuple[str, str, Callable[[], Scorer]]]:
    """Each backend/precision we offer besides the default: (name, what ran, builder).

    bf16 variants only where the CPU computes bf16 natively (elsewhere it is emulated, slower than fp32); the ONNX
    and OpenVINO ones when their packages are installed. ``quick`` keeps torch fp32 only.
    """
    from jp_rerank.runtime import cpu_supports_bf16

    combos: list[tuple[str, str]] = [("torch", "fp32")]
    if not quick:
        if cpu_supports_bf16():
            combos.append(("torch", "bf16"))
        if is_available("onnxruntime") and is_available("onnx"):
            combos += [("onnx", "fp32"), ("onnx", "int8")]
        if is_available("openvino"):
            combos += [("openvino", "fp32"), *([("openvino", "bf16")] if cpu_supports_bf16() else [])]
            if is_available("nncf"):
                combos.append(("openvino", "int8"))
    return [
        (f"ours {b}-{p}", f"backend='{b}', precision='{p}'", partial(ours, path, backend=b, precision=p))
        for b, p in combos
    ]


# ---------------------------------------------------------------------------------------------- rerank


def _pair_lengths(path: str, pairs: Pairs, limit: int = 512) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    return [
        min(limit, len(ids))
        for q, docs in zip(pairs.queries, pairs.docs, strict=True)
        for ids in tok([q] * len(docs), docs, truncation=False, verbose=False)["input_ids"]
    ]


def gflop_per_pair(path: str, pairs: Pairs) -> float | None:
    """Mean useful GFLOP of one pair (:func:`jp_rerank.evaluation.flops.encoder_flops` over the real lengths)."""
    from transformers import AutoConfig

    from jp_rerank.evaluation.flops import total_flops

    try:
        config = AutoConfig.from_pretrained(path)
        lengths = _pair_lengths(path, pairs)
        return round(total_flops(config, lengths) / len(lengths) / 1e9, 4)
    except (OSError, ValueError, AttributeError) as exc:  # a model whose config has no encoder shape
        logger.info("no FLOP count for %s: %s", path, exc)
        return None


def pair_token_stats(path: str, pairs: Pairs) -> dict[str, float]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    lengths = [
        min(512, len(ids))
        for q, docs in zip(pairs.queries, pairs.docs, strict=True)
        for ids in tok([q] * len(docs), docs, truncation=False, verbose=False)["input_ids"]
    ]
    padded = [
        min(512, max(len(x) for x in tok([q] * len(d), d, verbose=False)["input_ids"]))
        for q, d in zip(pairs.queries, pairs.docs, strict=True)
    ]
    mean = float(np.mean(lengths))
    return {
        "mean": round(mean, 1),
        "median": float(np.median(lengths)),
        "p95": round(float(np.percentile(lengths, 95)), 1),
        "max": float(max(lengths)),
        "tutorial_padding_waste": round(float(np.mean(padded)) / mean, 2),
    }


def bench_rerank(
    shape: str,
    path: str,
    note: str,
    pairs: Pairs,
    qrels: dict[str, dict[str, int]],
    *,
    repeats: int = 3,
    quick: bool = False,
    variants: bool = True,
    with_agreement: bool = True,
    extra: Sequence[tuple[MethodResult, Callable[[], Scorer]]] = (),
) -> RerankShapeResult:
    """Time every method on one model and the same pairs; compare our backends' rankings with torch fp32.

    Args:
        shape: Shape name (a label in the report).
        path: Model folder.
        note: What the model is (a label in the report).
        pairs: The workload.
        qrels: Judgements, for nDCG@10 in the agreement table.
        repeats: Timed repetitions per method.
        quick: Skip the slower variants.
        variants: Time each of our backends, not only the default.
        with_agreement: Compare our backends' rankings with torch fp32.
        extra: More methods (result record, builder) to time beside ours and sentence-transformers.
    """
    methods: list[Method] = [
        Method(
            MethodResult("st-predict", "baseline", "sentence-transformers CrossEncoder.predict defaults"),
            lambda: st_predict(path),
        ),
        *(Method(result, build) for result, build in extra),
    ]
    ours_default = Method(MethodResult(OURS, "ours", ""), lambda: ours(path))
    methods.append(ours_default)
    chosen = ours_variants(path, quick) if variants else []
    export_note = _export_once(path) if any("onnx" in v[0] for v in chosen) else ""
    for name, what, build in chosen:
        methods.append(Method(MethodResult(name, "ours", what), build))
    warm_q, warm_docs = pairs.queries[0], pairs.docs[0][:16]
    for number, method in enumerate(methods, 1):
        logger.warning("[%s] loading %d/%d: %s", shape, number, len(methods), method.result.name)
        build_method(method, lambda obj: obj(warm_q, warm_docs))
    logger.warning("timing %d methods x %d repetitions on %d pairs (%s)", len(methods), repeats, pairs.n_pairs, shape)
    time_methods(methods, _rerank_workload(pairs), repeats)
    work = gflop_per_pair(path, pairs)
    for method in methods:
        if work is not None and method.result.items_per_s:
            method.result.gflops = round(work * method.result.items_per_s, 1)
    scorers = {m.result.name: m.run() for m in methods if m.run is not None and m.result.kind == "ours"}
    if ours_default.run is not None:
        reranker = getattr(ours_default.run(), "__self__", None)
        if reranker is not None:
            plan = reranker.scoring_plan
            ours_default.result.note = f"Reranker defaults -> {plan.label} ({plan.reason})"
    agreed = agreement(pairs, scorers, qrels, reference=_FP32) if with_agreement and is_available("ranx") else []
    result = RerankShapeResult(
        shape=shape,
        model=path,
        model_note=note,
        questions=len(pairs.queries),
        pairs=pairs.n_pairs,
        pair_tokens=pair_token_stats(path, pairs),
        methods=[m.result for m in methods],
        agreement=agreed,
        export_note=export_note,
        gflop_per_pair=work,
        agreement_note=(
            "random weights: scores differ by tiny amounts, so rank agreement here is a stress test, not the "
            "agreement a trained reranker would show"
            if "random-weight" in note
            else ""
        ),
    )
    del methods, scorers
    return result


def _export_once(path: str) -> str:
    """Make the ONNX export before timing, so the ONNX methods' load time and memory exclude it."""
    from jp_rerank import Reranker

    started = time.perf_counter()
    export = Reranker(path, device="cpu", backend="torch", precision="fp32").export()
    seconds = time.perf_counter() - started
    sizes = ", ".join(
        f"{p} {(export.directory / f).stat().st_size / 2**20:.0f} MiB" for p, f in sorted(export.files.items())
    )
    gc.collect()
    return f"ONNX export (once, cached; {seconds:.0f} s this run, reused if already made): {sizes}"


def _rerank_workload(pairs: Pairs) -> Callable[[Any], int]:
    def work(score: Any) -> int:
        for query, docs in zip(pairs.queries, pairs.docs, strict=True):
            score(query, docs)
        return pairs.n_pairs

    return work


# ---------------------------------------------------------------------------------------------- embed


def bench_embed(kind: str, path: str, note: str, texts: list[str], repeats: int) -> EmbedResult:
    """Time our :class:`jp_rerank.Embedder` against sentence-transformers' ``encode_document`` on ``texts``."""

    def st_build() -> Callable[[list[str]], Any]:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu")
        return lambda xs: model.encode_document(xs, show_progress_bar=False)

    def ours_build() -> Callable[[list[str]], Any]:
        from jp_rerank import Embedder

        embedder = Embedder(path, device="cpu").load()
        methods[1].result.note = f"Embedder defaults ({embedder.precision_in_use}), embed_documents"
        return embedder.embed_documents

    methods = [
        Method(MethodResult("st-encode", "baseline", "SentenceTransformer.encode_document defaults"), st_build),
        Method(MethodResult(OURS, "ours", "Embedder defaults, embed_documents"), ours_build),
    ]
    for method in methods:
        build_method(method, lambda obj: obj(texts[:8]))

    def work(encode: Any) -> int:
        encode(texts)
        return len(texts)

    time_methods(methods, work, repeats)
    return EmbedResult(kind=kind, model=path, model_note=note, texts=len(texts), methods=[m.result for m in methods])


# ---------------------------------------------------------------------------------------------- run


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
    import torch

    from jp_rerank.hardware import machine_info

    started = time.perf_counter()
    for name, value in (("questions", questions), ("candidates", candidates), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    unknown = [s for s in shapes if s not in RERANK_SHAPES]
    if unknown and model is None:
        raise ValueError(f"unknown shape(s) {unknown}; choose from {list(RERANK_SHAPES)}")
    if quick:
        shapes, questions, repeats, variants, with_agreement, embed_texts = (tuple(shapes[:1]), 1, 2, False, False, 16)
    folder = Path(data)
    if not (folder / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"no BEIR data folder at {folder} (pass --data or set JP_RERANK_DATA)")
    if threads is not None:
        torch.set_num_threads(threads)
    cache = Path(models_dir) if models_dir is not None else Path.home() / ".cache" / "jp-rerank" / "bench-models"
    cache.mkdir(parents=True, exist_ok=True)
    report = BenchReport(
        settings={
            "shapes": [model] if model else list(shapes),
            "questions": questions,
            "candidates": candidates,
            "repeats": repeats,
            "quick": quick,
            "variants": variants,
            "agreement": with_agreement,
            "embed_texts": embed_texts,
            "seed": seed,
            "threads": torch.get_num_threads(),
        },
        machine=machine_info().to_dict(),
    )
    report.load_average["start"] = load_average()
    if not quick:
        from jp_rerank.evaluation.flops import peak_rates
        from jp_rerank.runtime import cpu_supports_bf16

        logger.warning("measuring this machine's peak matrix-product rates")
        report.peak_gflops = peak_rates(with_bf16=cpu_supports_bf16(), threads=torch.get_num_threads())
    dataset = load_beir(folder)
    pairs = candidate_pairs(dataset, questions, candidates, seed)
    report.data = {
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
    targets = [("model", model, "the given model")] if model else []
    for shape in [] if model else shapes:
        path, note = same_shape_cross_encoder(shape, cache, tokenizer_json=tokenizer_json)
        targets.append((shape, path, note))
    for shape, path, note in targets:
        logger.info("reranking benchmark on %s (%s)", shape, path)
        extra = extra_methods(shape, path) if extra_methods is not None and not quick else ()
        report.rerank.append(
            bench_rerank(
                shape,
                path,
                note,
                pairs,
                dataset.qrels,
                repeats=repeats,
                quick=quick,
                variants=variants,
                with_agreement=with_agreement,
                extra=extra,
            )
        )
    if embed_models:
        passages = dataset.passages(with_title=True)
        for kind, path, note in embed_models:
            texts = passages if kind == "static" else passages[:embed_texts]
            logger.info("embedding benchmark on %s", kind)
            report.embed.append(bench_embed(kind, path, note, texts, repeats))
    if with_agreement and agreement_model is not None:
        path, note = agreement_model
        logger.info("ranking agreement on the trained model %s", path)
        scorers = {name: build() for name, _what, build in ours_variants(path)}
        scorers[OURS] = ours(path)
        report.agreement_trained = agreement(pairs, scorers, dataset.qrels, reference=_FP32)
        report.agreement_trained_note = note
    report.notes = _notes(report)
    report.load_average["end"] = load_average()
    report.elapsed_s = round(time.perf_counter() - started, 1)
    return report


def _speed(shape: RerankShapeResult | EmbedResult, name: str) -> MethodResult | None:
    return next((m for m in shape.methods if m.name == name and m.items_per_s), None)


def _notes(report: BenchReport) -> list[str]:
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


# ---------------------------------------------------------------------------------------------- output


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _of_peak(m: MethodResult, peaks: dict[str, float]) -> str:
    """``"42.0 (23% of int8)"``: achieved GFLOP/s against the peak of the precision the method runs."""
    if m.gflops is None:
        return "-"
    precision = next((p for p in ("int8", "bf16", "fp16") if p in m.note or p in m.name), "fp32")
    peak = peaks.get(precision) or peaks.get("fp32")
    return f"{m.gflops:.1f}" + (f" ({100 * m.gflops / peak:.0f}% of {precision})" if peak else "")


def _method_table(methods: list[MethodResult], unit: str, peaks: dict[str, float] | None = None) -> list[str]:
    lines = [
        f"| method | {unit}/s | ours (default) is x faster | GFLOP/s (of peak) | load s | MiB after load | "
        "peak MiB scoring | what ran |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in methods:
        if m.error:
            lines.append(f"| {m.name} | - | - | - | - | - | - | could not run: {m.error} |")
            continue
        lines.append(
            f"| {m.name} | {_fmt(m.items_per_s)} | {_fmt(m.ours_speedup, '.2f')} | {_of_peak(m, peaks or {})} | "
            f"{_fmt(m.load_s)} | {_fmt(m.load_mib, '.0f')} | {_fmt(m.peak_mib, '.0f')} | {m.note} |"
        )
    return lines


def _agreement_table(rows: list[Agreement]) -> list[str]:
    lines = [
        "| method | Spearman mean | Spearman min | top-3 set same | nDCG@10 | nDCG@10 fp32 | max abs score diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a in rows:
        lines.append(
            f"| {a.method} | {_fmt(a.spearman_mean, '.4f')} | {_fmt(a.spearman_min, '.4f')} | "
            f"{_fmt(a.top3_same, '.2f')} | {_fmt(a.ndcg10, '.4f')} | {_fmt(a.ndcg10_fp32, '.4f')} | "
            f"{a.max_abs_diff:.2e} |"
        )
    return lines


def _markdown(report: BenchReport) -> str:
    m = report.machine
    lines = ["# jp-rerank bench", ""]
    feats = " ".join(k for k, v in (m.get("cpu_features") or {}).items() if v)
    lines.append(
        f"- Machine: {m.get('cpu_model')}, {m.get('usable_cores')} usable cores, {m.get('ram_gb')} GiB, "
        f"torch {m.get('torch')} ({m.get('torch_threads')} threads); CPU features: {feats or 'unknown'}"
    )
    lines.append(
        f"- Load average (1/5/15 min) at start {report.load_average.get('start')}, "
        f"end {report.load_average.get('end')}; elapsed {report.elapsed_s} s"
    )
    if report.peak_gflops:
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in report.peak_gflops.items())
        lines.append(f"- Measured peak of 2048x2048 matrix products (GFLOP/s; GOP/s for int8): {peaks}")
    d = report.data
    if d:
        lines.append(
            f"- Data: {d.get('name')} ({d.get('corpus_passages')} passages, {d.get('questions_used')} of "
            f"{d.get('questions_available')} questions, {d.get('pairs_per_repetition')} pairs per repetition, "
            f"mean passage {d.get('mean_passage_chars')} characters); candidates: {d.get('candidates')}. "
            f"{d.get('attribution')}"
        )
    s = report.settings
    lines.append(
        f"- Settings: {s.get('repeats')} repetitions per method (medians; ratios are medians of per-repetition "
        f"ratios, methods take turns within each repetition), quick={s.get('quick')}"
    )
    for shape in report.rerank:
        lines += ["", f"## Reranking: {shape.shape}", ""]
        lines.append(f"Model: {shape.model_note}.")
        t = shape.pair_tokens
        lines.append(
            f"Pair length in tokens: mean {t.get('mean')}, median {t.get('median')}, p95 {t.get('p95')}, "
            f"max {t.get('max')}; padding all of a question's pairs together costs "
            f"{t.get('tutorial_padding_waste')}x the tokens."
        )
        if shape.export_note:
            lines.append(shape.export_note + ".")
        if shape.gflop_per_pair is not None:
            lines.append(f"Useful work: {shape.gflop_per_pair:.3f} GFLOP per pair (model config, real token counts).")
        lines.append("")
        lines += _method_table(shape.methods, "pairs", report.peak_gflops)
        if shape.agreement:
            lines += ["", "Agreement with torch fp32 on the same pairs:", ""]
            lines += _agreement_table(shape.agreement)
            if shape.agreement_note:
                lines.append("")
                lines.append(f"Note: {shape.agreement_note} (fp32 score std {shape.agreement[0].score_std:g}).")
    if report.agreement_trained:
        lines += ["", "## Ranking agreement on a trained model", "", report.agreement_trained_note, ""]
        lines += _agreement_table(report.agreement_trained)
    for emb in report.embed:
        lines += ["", f"## Embedding: {emb.kind}", "", f"Model: {emb.model_note}; {emb.texts} passages.", ""]
        lines += _method_table(emb.methods, "texts")
    if report.notes:
        lines += ["", "## Goals", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def write_report(report: BenchReport, out_dir: str | os.PathLike[str], stem: str = "bench") -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``; returns their paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(report.to_markdown(), encoding="utf-8")
    return json_path, md_path
