"""The methods ``jp-rerank bench`` times side by side, and timing them on one model.

Reranking: sentence-transformers ``CrossEncoder.predict`` with its defaults, our :class:`jp_rerank.Reranker` with
its defaults, each of our other backends/precisions, and any methods a caller adds (:func:`bench_rerank`; our
backends' rankings are compared with torch fp32). Embedding: our :class:`jp_rerank.Embedder` against
sentence-transformers' ``encode_document`` (:func:`bench_embed`). The timing rules are those of
:mod:`jp_rerank.evaluation.timing`.

Example:
    >>> result = bench_rerank("model", "path/to/model", "the given model", pairs, qrels)  # doctest: +SKIP
    >>> [m.name for m in result.methods]  # doctest: +SKIP
    ['st-predict', 'ours (default)', 'ours torch-fp32']
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from jp_rerank.evaluation.bench_pairs import gflop_per_pair, pair_token_stats
from jp_rerank.evaluation.bench_report import EmbedResult, RerankShapeResult
from jp_rerank.evaluation.timing import (
    OURS,
    Agreement,
    Method,
    MethodResult,
    Pairs,
    Scorer,
    agreement,
    build_method,
    time_methods,
)
from jp_rerank.extras import is_available

__all__ = ["bench_embed", "bench_rerank", "ours", "ours_variants", "st_predict", "trained_agreement"]

logger = logging.getLogger(__name__)

_FP32 = "ours torch-fp32"
"""The method every agreement is measured against."""

Variant = tuple[str, str, Callable[[], Scorer]]
"""(name, what ran, builder) of one of our backends/precisions."""


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


def ours_variants(path: str, quick: bool = False) -> list[Variant]:
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
    chosen = ours_variants(path, quick) if variants else []
    export_note = _export_once(path) if any("onnx" in name for name, _what, _build in chosen) else ""
    methods, ours_default = _rerank_methods(path, chosen, extra)
    _build_all(shape, methods, pairs)
    logger.warning("timing %d methods x %d repetitions on %d pairs (%s)", len(methods), repeats, pairs.n_pairs, shape)
    time_methods(methods, _rerank_workload(pairs), repeats)
    work = gflop_per_pair(path, pairs)
    for method in methods:
        if work is not None and method.result.items_per_s:
            method.result.gflops = round(work * method.result.items_per_s, 1)
    _note_plan(ours_default)
    scorers = {m.result.name: m.run() for m in methods if m.run is not None and m.result.kind == "ours"}
    agreed = agreement(pairs, scorers, qrels, reference=_FP32) if with_agreement and is_available("ranx") else []
    return RerankShapeResult(
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


def trained_agreement(path: str, pairs: Pairs, qrels: dict[str, dict[str, int]]) -> list[Agreement]:
    """Each of our backends' ranking agreement with torch fp32 on a trained cross-encoder, on the same pairs.

    Random-weight models only stress-test the numerics; a trained model shows the agreement users get.
    """
    logger.info("ranking agreement on the trained model %s", path)
    scorers = {name: build() for name, _what, build in ours_variants(path)}
    scorers[OURS] = ours(path)
    return agreement(pairs, scorers, qrels, reference=_FP32)


def _rerank_methods(
    path: str, chosen: list[Variant], extra: Sequence[tuple[MethodResult, Callable[[], Scorer]]]
) -> tuple[list[Method], Method]:
    """sentence-transformers, the extra methods, our default and our ``chosen`` variants; and our default alone."""
    ours_default = Method(MethodResult(OURS, "ours", ""), lambda: ours(path))
    methods = [
        Method(
            MethodResult("st-predict", "baseline", "sentence-transformers CrossEncoder.predict defaults"),
            lambda: st_predict(path),
        ),
        *(Method(result, build) for result, build in extra),
        ours_default,
        *(Method(MethodResult(name, "ours", what), build) for name, what, build in chosen),
    ]
    return methods, ours_default


def _build_all(shape: str, methods: list[Method], pairs: Pairs) -> None:
    """Load every method and warm it up on part of the first question's pairs."""
    warm_q, warm_docs = pairs.queries[0], pairs.docs[0][:16]
    for number, method in enumerate(methods, 1):
        logger.warning("[%s] loading %d/%d: %s", shape, number, len(methods), method.result.name)
        build_method(method, lambda obj: obj(warm_q, warm_docs))


def _note_plan(ours_default: Method) -> None:
    """Say in our default's note which backend and precision it chose, and why."""
    if ours_default.run is None:
        return
    reranker = getattr(ours_default.run(), "__self__", None)
    if reranker is not None:
        plan = reranker.scoring_plan
        ours_default.result.note = f"Reranker defaults -> {plan.label} ({plan.reason})"


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
