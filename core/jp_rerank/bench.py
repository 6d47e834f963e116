"""Side-by-side speed benchmark: our reranker and embedder against the ways people usually run them.

One run, the same model and the same Japanese (question, passage) pairs for every method:

* ``tutorial``: the plain transformers loop of popular tutorials (all pairs of a question tokenised and padded
  together, one forward pass);
* ``st-predict``: sentence-transformers ``CrossEncoder.predict`` with its defaults;
* ``langchain``: LangChain's ``CrossEncoderReranker`` over ``HuggingFaceCrossEncoder``;
* ``llamaindex``: LlamaIndex's ``SentenceTransformerRerank``;
* ours: :class:`jp_rerank.Reranker` with its defaults and with each backend/precision we offer.

Every method scores every question's candidates once per repetition; the methods take turns within a repetition
(in a rotating order), so load from other processes hits them alike. Speeds are medians over repetitions, and
each ratio is the median of the per-repetition ratios. Candidate passages are BM25 top-100 per question from
:class:`jp_rerank.lexical.BM25Index`. Models are the real presets when they are in the local Hugging Face
cache, otherwise same-shape random-weight models built with :mod:`jp_rerank.toy_models` (the output says which).

Embeddings are timed the same way: our :class:`jp_rerank.Embedder` against sentence-transformers' ``encode``
on a StaticEmbedding model and on a transformer of multilingual-e5-small's shape.

Example:
    >>> from jp_rerank.bench import run_bench
    >>> report = run_bench(quick=True)  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank._deps import is_available
from jp_rerank.datasets import default_data_dir, load_beir

if TYPE_CHECKING:
    from jp_rerank.datasets import BeirDataset

__all__ = [
    "BenchReport",
    "EmbedResult",
    "MethodResult",
    "RerankShapeResult",
    "add_bench_command",
    "run_bench",
]

logger = logging.getLogger(__name__)

OFFLINE_MODELS_ENV = "JP_RERANK_OFFLINE_MODELS"
"""Folder of real models rebuilt offline (see ``../shared/models/README.md``)."""

_E5_FOLDER = "multilingual-e5-small-q4dq"
_RERANK_SHAPES = ("xsmall", "small", "base", "large")
_PEERS_ON = ("xsmall", "small")  # peers load extra model copies: only on the shapes the speed goal is about
_OURS_DEFAULT = "ours (default)"

Kind = Literal["baseline", "peer", "ours"]
Scorer = Callable[[str, list[str]], Any]


# ---------------------------------------------------------------------------------------------- results


@dataclass
class MethodResult:
    """Speed of one method on one model.

    Attributes:
        name: Method name (``"tutorial"``, ``"st-predict"``, ``"ours (default)"``...).
        kind: ``"baseline"``, ``"peer"`` or ``"ours"``.
        note: What exactly ran (backend, precision, defaults).
        items_per_s: Median pairs (or texts) per second over the repetitions.
        seconds: Wall time of each repetition.
        ours_speedup: Median over repetitions of (ours default speed / this method's speed).
        load_s: Time to build the method (load the model, create sessions).
        load_mib: Resident memory added by building it and one warm-up call.
        peak_mib: Most resident memory above the pre-call level while it ran.
        error: Why the method could not run (then the speed fields are empty).
    """

    name: str
    kind: Kind
    note: str = ""
    items_per_s: float | None = None
    seconds: list[float] = field(default_factory=list)
    ours_speedup: float | None = None
    load_s: float | None = None
    load_mib: float | None = None
    peak_mib: float | None = None
    error: str | None = None


@dataclass
class Agreement:
    """How closely one of our backends ranks like torch fp32 on the benchmark pairs.

    Attributes:
        method: Our method compared with ``torch-fp32``.
        spearman_mean: Mean over questions of the Spearman correlation of scores.
        spearman_min: Smallest per-question Spearman correlation.
        ndcg10: nDCG@10 of this method's ranking against the dataset's judgements.
        ndcg10_fp32: nDCG@10 of torch fp32.
        max_abs_diff: Largest absolute score difference.
        score_std: Standard deviation of the fp32 scores (tiny for random-weight models: see the notes).
    """

    method: str
    spearman_mean: float
    spearman_min: float
    ndcg10: float
    ndcg10_fp32: float
    max_abs_diff: float
    score_std: float


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
    agreement_real_weights: list[Agreement] = field(default_factory=list)
    agreement_real_weights_note: str = ""
    load_average: dict[str, list[float]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Render the report as Markdown tables (what ``jp-rerank bench`` prints)."""
        return _markdown(self)


# ---------------------------------------------------------------------------------------------- memory


def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # resets VmHWM (peak resident memory) to the current level
    except OSError:
        return False
    return True


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not Unix
        return []


# ---------------------------------------------------------------------------------------------- data


@dataclass
class _Pairs:
    qids: list[str]
    queries: list[str]
    doc_ids: list[list[str]]
    docs: list[list[str]]
    note: str

    @property
    def n_pairs(self) -> int:
        return sum(len(d) for d in self.docs)


def _candidate_pairs(dataset: BeirDataset, questions: int, candidates: int, seed: int) -> _Pairs:
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
    return _Pairs(qids, [dataset.queries[q] for q in qids], out_ids, out_docs, note)


# ---------------------------------------------------------------------------------------------- models


def _offline_models_dir(path: str | os.PathLike[str] | None) -> Path | None:
    for candidate in (path, os.environ.get(OFFLINE_MODELS_ENV), Path.home() / ".cache" / "jp-rerank-offline"):
        if candidate and (Path(candidate) / _E5_FOLDER / "config.json").is_file():
            return Path(candidate)
    return None


def _cached_preset(alias: str) -> str | None:
    """Local snapshot folder of a preset if it is in the Hugging Face cache (never contacts the hub)."""
    from jp_rerank.presets import find_preset

    preset = find_preset(alias)
    if preset is None or not is_available("huggingface_hub"):
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(preset.model_id, "config.json")
    return str(Path(found).parent) if isinstance(found, str) else None


def _reranker_model(shape: str, models_dir: Path, offline: Path | None) -> tuple[str, str]:
    """Return (path, note) of the model for a shape: the cached real preset, else a same-shape local model."""
    from jp_rerank import toy_models

    real = _cached_preset(shape)
    if real is not None:
        return real, f"real preset {shape} (from the local Hugging Face cache)"
    xlmr = toy_models.SHAPES[shape].vocab_size == 250002
    real_tok = xlmr and offline is not None
    folder = models_dir / (f"{shape}-xlmr-tokenizer" if real_tok else shape)
    if not (folder / "config.json").is_file():
        logger.info("building a same-shape %s cross-encoder in %s", shape, folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if xlmr:
            toy_models.build_xlmr_cross_encoder(tmp, shape=shape)  # type: ignore[arg-type]
        else:
            toy_models.build_bert_ja_cross_encoder(tmp, shape=shape)  # type: ignore[arg-type]
        if real_tok and offline is not None:
            shutil.copy2(offline / _E5_FOLDER / "tokenizer.json", tmp / "tokenizer.json")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    like = toy_models.SHAPES[shape].like
    tok = (
        "the real XLM-R tokenizer (from the offline mE5-small folder)"
        if real_tok
        else "a tokenizer trained on the bundled demo corpus"
    )
    return str(folder), f"same-shape random-weight model ({like}) with {tok}; the real preset was not reachable"


# ---------------------------------------------------------------------------------------------- methods


def _tutorial(path: str) -> Scorer:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def score(query: str, docs: list[str]) -> np.ndarray:
        enc = tokenizer([query] * len(docs), docs, padding=True, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits
        return torch.sigmoid(logits[:, -1]).numpy()

    return score


def _st_predict(path: str) -> Scorer:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(path, device="cpu")
    return lambda query, docs: model.predict([(query, d) for d in docs], show_progress_bar=False)


def _langchain(path: str) -> Scorer:
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_community.cross_encoders import HuggingFaceCrossEncoder
    from langchain_core.documents import Document

    compressor = CrossEncoderReranker(
        model=HuggingFaceCrossEncoder(model_name=path, model_kwargs={"device": "cpu"}), top_n=10
    )
    return lambda query, docs: compressor.compress_documents([Document(page_content=d) for d in docs], query)


def _llamaindex(path: str) -> Scorer:
    from llama_index.core.postprocessor import SentenceTransformerRerank
    from llama_index.core.schema import NodeWithScore, TextNode

    post = SentenceTransformerRerank(model=path, top_n=10, device="cpu")
    return lambda query, docs: post.postprocess_nodes(
        [NodeWithScore(node=TextNode(text=d)) for d in docs], query_str=query
    )


def _ours(path: str, **kwargs: Any) -> Scorer:
    from jp_rerank import Reranker

    reranker = Reranker(path, device="cpu", **kwargs).load()
    return reranker.score


def _ours_variants(path: str, quick: bool) -> list[tuple[str, str, Callable[[], Scorer]]]:
    from jp_rerank.rerank.backends import cpu_supports_bf16

    variants: list[tuple[str, str, Callable[[], Scorer]]] = []
    variants.append(("ours torch-fp32", "backend='torch', precision='fp32'", lambda: _ours(path, precision="fp32")))
    if cpu_supports_bf16() and not quick:
        variants.append(("ours torch-bf16", "backend='torch', precision='bf16'", lambda: _ours(path, precision="bf16")))
    if is_available("onnxruntime") and is_available("onnx") and not quick:
        variants.append(
            (
                "ours onnx-fp32",
                "backend='onnx', precision='fp32'",
                lambda: _ours(path, backend="onnx", precision="fp32"),
            )
        )
        variants.append(
            (
                "ours onnx-int8",
                "backend='onnx', precision='int8'",
                lambda: _ours(path, backend="onnx", precision="int8"),
            )
        )
    return variants


@dataclass
class _Method:
    result: MethodResult
    build: Callable[[], Any]
    run: Callable[[], Any] | None = None


def _build(method: _Method, warm: Callable[[Any], Any]) -> None:
    """Build a method and warm it up; record its build time and the resident memory it added.

    Some loaders memory-map weights, so memory is read after the warm-up call, once the pages are in.
    """
    gc.collect()
    rss = _status_mib("VmRSS")
    started = time.perf_counter()
    try:
        obj = method.build()
        method.result.load_s = round(time.perf_counter() - started, 2)
        warm(obj)
    except Exception as exc:  # a peer that cannot be installed or loaded is reported, not fatal
        method.result.error = f"{type(exc).__name__}: {exc}"[:300]
        logger.warning("%s could not run: %s", method.result.name, method.result.error)
        return
    after = _status_mib("VmRSS")
    if rss is not None and after is not None:
        method.result.load_mib = round(after - rss, 1)
    method.run = lambda: obj


def _time_methods(methods: list[_Method], workload: Callable[[Any], int], repeats: int) -> None:
    """Run each method's workload ``repeats`` times, rotating the order; fill speeds, peaks and ratios."""
    live = [m for m in methods if m.run is not None]
    items: dict[str, int] = {}
    for rep in range(repeats):
        shift = rep % max(1, len(live))
        for method in live[shift:] + live[:shift]:
            assert method.run is not None
            obj = method.run()
            can_peak = _reset_peak()
            before = _status_mib("VmRSS")
            started = time.perf_counter()
            items[method.result.name] = workload(obj)
            method.result.seconds.append(round(time.perf_counter() - started, 4))
            peak = _status_mib("VmHWM") if can_peak else None
            if peak is not None and before is not None:
                used = round(peak - before, 1)
                method.result.peak_mib = max(method.result.peak_mib or 0.0, used)
    ours = next((m for m in live if m.result.name == _OURS_DEFAULT), None)
    for method in live:
        r = method.result
        r.items_per_s = round(items[r.name] / statistics.median(r.seconds), 2)
        if ours is not None:
            ratios = [b / a for a, b in zip(ours.result.seconds, r.seconds, strict=True)]
            r.ours_speedup = round(statistics.median(ratios), 3)


# ---------------------------------------------------------------------------------------------- agreement


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _average_ranks(np.asarray(a, np.float64)), _average_ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ndcg10(pairs: _Pairs, scores: list[np.ndarray], qrels: dict[str, dict[str, int]]) -> float:
    from jp_rerank.evaluate import evaluate

    run = {
        qid: {doc: float(s) for doc, s in zip(docs, sc, strict=True)}
        for qid, docs, sc in zip(pairs.qids, pairs.doc_ids, scores, strict=True)
    }
    judged = {q: qrels[q] for q in pairs.qids if q in qrels}
    return float(evaluate(run, judged, ["ndcg@10"])["ndcg@10"]) if judged else float("nan")


def _agreement(pairs: _Pairs, scorers: dict[str, Scorer], qrels: dict[str, dict[str, int]]) -> list[Agreement]:
    if "ours torch-fp32" not in scorers or not is_available("ranx"):
        return []
    ref = [
        np.asarray(scorers["ours torch-fp32"](q, d), np.float64) for q, d in zip(pairs.queries, pairs.docs, strict=True)
    ]
    ref_ndcg = _ndcg10(pairs, ref, qrels)
    out = []
    for name, scorer in scorers.items():
        if name == "ours torch-fp32":
            continue
        got = [np.asarray(scorer(q, d), np.float64) for q, d in zip(pairs.queries, pairs.docs, strict=True)]
        rhos = [_spearman(a, b) for a, b in zip(ref, got, strict=True)]
        out.append(
            Agreement(
                method=name,
                spearman_mean=round(float(np.nanmean(rhos)), 4),
                spearman_min=round(float(np.nanmin(rhos)), 4),
                ndcg10=round(_ndcg10(pairs, got, qrels), 4),
                ndcg10_fp32=round(ref_ndcg, 4),
                max_abs_diff=float(max(np.abs(a - b).max() for a, b in zip(ref, got, strict=True))),
                score_std=round(float(np.concatenate(ref).std()), 6),
            )
        )
    return out


_REAL_WEIGHTS_NOTE = (
    "No trained Japanese cross-encoder is available offline. This checks numerics on real weights instead: the "
    "real multilingual-e5-small encoder (4-bit dequantized, 12 layers, hidden 384: the small reranker's shape) "
    "with a seeded, untrained classification head. Its scores follow real activations, so rank agreement with "
    "fp32 is meaningful; its nDCG is not (the head is untrained)."
)


def _real_weights_cross_encoder(models_dir: Path, offline: Path) -> str:
    """A cross-encoder made of the real mE5-small encoder and a seeded random head (built once, cached)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = models_dir / "e5-small-encoder-ce"
    if not (folder / "config.json").is_file():
        source = offline / _E5_FOLDER
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
        tmp = folder.with_name(folder.name + ".tmp")
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return str(folder)


# ---------------------------------------------------------------------------------------------- rerank


def _pair_token_stats(path: str, pairs: _Pairs) -> dict[str, float]:
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


def _bench_shape(
    shape: str,
    pairs: _Pairs,
    qrels: dict[str, dict[str, int]],
    cfg: dict[str, Any],
    models_dir: Path,
    offline: Path | None,
) -> RerankShapeResult:
    path, note = _reranker_model(shape, models_dir, offline)
    quick = bool(cfg["quick"])
    with_peers = cfg["peers"] and shape in _PEERS_ON and not quick
    methods: list[_Method] = [
        _Method(
            MethodResult("tutorial", "baseline", "transformers: pad all pairs together, one forward"),
            lambda: _tutorial(path),
        ),
        _Method(
            MethodResult("st-predict", "baseline", "sentence-transformers CrossEncoder.predict defaults"),
            lambda: _st_predict(path),
        ),
    ]
    if with_peers:
        methods += [
            _Method(
                MethodResult("langchain", "peer", "CrossEncoderReranker + HuggingFaceCrossEncoder"),
                lambda: _langchain(path),
            ),
            _Method(MethodResult("llamaindex", "peer", "SentenceTransformerRerank"), lambda: _llamaindex(path)),
        ]
    ours_default = _Method(MethodResult(_OURS_DEFAULT, "ours", ""), lambda: _ours(path))
    methods.append(ours_default)
    variants = _ours_variants(path, quick) if cfg["variants"] else []
    export_note = _export_once(path) if any("onnx" in v[0] for v in variants) else ""
    for name, what, build in variants:
        methods.append(_Method(MethodResult(name, "ours", what), build))
    warm_q, warm_docs = pairs.queries[0], pairs.docs[0][:16]
    for method in methods:
        _build(method, lambda obj: obj(warm_q, warm_docs))
    workload = _rerank_workload(pairs)
    _time_methods(methods, workload, cfg["repeats"])
    scorers = {m.result.name: m.run() for m in methods if m.run is not None and m.result.kind == "ours"}
    if ours_default.run is not None:
        reranker = getattr(ours_default.run(), "__self__", None)
        if reranker is not None:
            plan = reranker.scoring_plan
            ours_default.result.note = f"Reranker defaults -> {plan.label} ({plan.reason})"
    agreement = _agreement(pairs, scorers, qrels) if cfg["agreement"] else []
    result = RerankShapeResult(
        shape=shape,
        model=path,
        model_note=note,
        questions=len(pairs.queries),
        pairs=pairs.n_pairs,
        pair_tokens=_pair_token_stats(path, pairs),
        methods=[m.result for m in methods],
        agreement=agreement,
        export_note=export_note,
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
    from jp_rerank.rerank.onnx_backend import export_reranker

    started = time.perf_counter()
    export = export_reranker(Reranker(path, device="cpu", backend="torch", precision="fp32"))
    seconds = time.perf_counter() - started
    sizes = ", ".join(
        f"{p} {(export.directory / f).stat().st_size / 2**20:.0f} MiB" for p, f in sorted(export.files.items())
    )
    gc.collect()
    return f"ONNX export (once, cached; {seconds:.0f} s this run, reused if already made): {sizes}"


def _rerank_workload(pairs: _Pairs) -> Callable[[Any], int]:
    def work(score: Any) -> int:
        for query, docs in zip(pairs.queries, pairs.docs, strict=True):
            score(query, docs)
        return pairs.n_pairs

    return work


# ---------------------------------------------------------------------------------------------- embed


def _embed_models(models_dir: Path, offline: Path | None) -> list[tuple[str, str, str]]:
    """(kind, path, note) of the StaticEmbedding model and the mE5-small-shaped transformer."""
    from jp_rerank import toy_models

    out = []
    static = _cached_preset("static-ja")
    if static is not None:
        out.append(("static", static, "real preset static-ja (from the local Hugging Face cache)"))
    else:
        folder = models_dir / "static-1024"
        if not (folder / "modules.json").is_file():
            toy_models.build_static_embedder(folder, dim=1024)
        out.append(("static", str(folder), "same-shape StaticEmbedding (1024 dims, random weights, demo tokenizer)"))
    if offline is not None:
        out.append(("e5-small", str(offline / _E5_FOLDER), "real mE5-small weights (4-bit dequantized, offline)"))
    else:
        folder = models_dir / "e5-small"
        if not (folder / "modules.json").is_file():
            toy_models.build_dense_embedder(folder, shape="e5-small")
        out.append(("e5-small", str(folder), "same-shape random-weight model of multilingual-e5-small's shape"))
    return out


def _bench_embed(kind: str, path: str, note: str, texts: list[str], repeats: int) -> EmbedResult:
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
        _Method(MethodResult("st-encode", "baseline", "SentenceTransformer.encode_document defaults"), st_build),
        _Method(MethodResult(_OURS_DEFAULT, "ours", "Embedder defaults, embed_documents"), ours_build),
    ]
    for method in methods:
        _build(method, lambda obj: obj(texts[:8]))

    def work(encode: Any) -> int:
        encode(texts)
        return len(texts)

    _time_methods(methods, work, repeats)
    return EmbedResult(kind=kind, model=path, model_note=note, texts=len(texts), methods=[m.result for m in methods])


# ---------------------------------------------------------------------------------------------- run


def run_bench(
    *,
    data: str | os.PathLike[str] | None = None,
    shapes: Sequence[str] = ("xsmall", "small"),
    questions: int = 2,
    candidates: int = 100,
    repeats: int = 3,
    quick: bool = False,
    peers: bool = True,
    variants: bool = True,
    agreement: bool = True,
    embed: bool = True,
    embed_texts: int = 64,
    models_dir: str | os.PathLike[str] | None = None,
    offline_models: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> BenchReport:
    """Run the side-by-side benchmark and return its report.

    Args:
        data: A BEIR folder of Japanese questions and passages (default ``$JP_RERANK_DATA/jsquad-valid`` or
            ``../shared/data/jsquad-valid``).
        shapes: Reranker shapes to measure (``"xsmall"``, ``"small"``, ``"base"``, ``"large"``).
        questions: Questions per shape (each with ``candidates`` passages).
        candidates: Candidate passages per question (BM25 top-k).
        repeats: Timed repetitions per method (medians are reported).
        quick: One question, two repetitions, the first shape only, no peers/variants/agreement (a smoke run).
        peers: Include LangChain and LlamaIndex (on xsmall and small only; each loads another model copy).
        variants: Time each of our backends, not only the default.
        agreement: Compare our backends' rankings with torch fp32 on the same pairs.
        embed: Also time embeddings (StaticEmbedding and an mE5-small-shaped transformer).
        embed_texts: Passages embedded per repetition by the transformer embedder (the static one embeds all).
        models_dir: Where same-shape models are built and cached (default ``~/.cache/jp-rerank/bench-models``).
        offline_models: Folder of real models rebuilt offline (default ``$JP_RERANK_OFFLINE_MODELS``).
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
    unknown = [s for s in shapes if s not in _RERANK_SHAPES]
    if unknown:
        raise ValueError(f"unknown shape(s) {unknown}; choose from {list(_RERANK_SHAPES)}")
    if quick:
        shapes, questions, repeats, peers, variants, agreement, embed_texts = (
            tuple(shapes[:1]),
            1,
            2,
            False,
            False,
            False,
            16,
        )
    folder = Path(data) if data is not None else (default_data_dir() or Path("data")) / "jsquad-valid"
    if not (folder / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"no BEIR data folder at {folder} (pass --data or set JP_RERANK_DATA)")
    if threads is not None:
        torch.set_num_threads(threads)
    cache = Path(models_dir) if models_dir is not None else Path.home() / ".cache" / "jp-rerank" / "bench-models"
    cache.mkdir(parents=True, exist_ok=True)
    offline = _offline_models_dir(offline_models)
    report = BenchReport(
        settings={
            "shapes": list(shapes),
            "questions": questions,
            "candidates": candidates,
            "repeats": repeats,
            "quick": quick,
            "peers": peers,
            "variants": variants,
            "agreement": agreement,
            "embed": embed,
            "embed_texts": embed_texts,
            "seed": seed,
            "threads": torch.get_num_threads(),
        },
        machine=machine_info().to_dict(),
    )
    report.load_average["start"] = _load_average()
    dataset = load_beir(folder)
    pairs = _candidate_pairs(dataset, questions, candidates, seed)
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
    cfg = {"quick": quick, "peers": peers, "variants": variants, "agreement": agreement, "repeats": repeats}
    for shape in shapes:
        logger.info("reranking benchmark on shape %s", shape)
        report.rerank.append(_bench_shape(shape, pairs, dataset.qrels, cfg, cache, offline))
    if embed:
        passages = dataset.passages(with_title=True)
        for kind, path, note in _embed_models(cache, offline):
            texts = passages if kind == "static" else passages[:embed_texts]
            logger.info("embedding benchmark on %s", kind)
            report.embed.append(_bench_embed(kind, path, note, texts, repeats))
    if agreement and offline is not None:
        logger.info("ranking agreement on real encoder weights")
        path = _real_weights_cross_encoder(cache, offline)
        scorers = {name: build() for name, _what, build in _ours_variants(path, quick=False)}
        scorers[_OURS_DEFAULT] = _ours(path)
        report.agreement_real_weights = _agreement(pairs, scorers, dataset.qrels)
        report.agreement_real_weights_note = _REAL_WEIGHTS_NOTE
    report.notes = _notes(report)
    report.load_average["end"] = _load_average()
    report.elapsed_s = round(time.perf_counter() - started, 1)
    return report


def _speed(shape: RerankShapeResult | EmbedResult, name: str) -> MethodResult | None:
    return next((m for m in shape.methods if m.name == name and m.items_per_s), None)


def _notes(report: BenchReport) -> list[str]:
    notes = []
    for shape in report.rerank:
        ours = _speed(shape, _OURS_DEFAULT)
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


def _method_table(methods: list[MethodResult], unit: str) -> list[str]:
    lines = [
        f"| method | {unit}/s | ours (default) is x faster | load s | MiB after load | peak MiB scoring | what ran |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in methods:
        if m.error:
            lines.append(f"| {m.name} | - | - | - | - | - | could not run: {m.error} |")
            continue
        lines.append(
            f"| {m.name} | {_fmt(m.items_per_s)} | {_fmt(m.ours_speedup, '.2f')} | {_fmt(m.load_s)} | "
            f"{_fmt(m.load_mib, '.0f')} | {_fmt(m.peak_mib, '.0f')} | {m.note} |"
        )
    return lines


def _agreement_table(rows: list[Agreement]) -> list[str]:
    lines = [
        "| method | Spearman mean | Spearman min | nDCG@10 | nDCG@10 fp32 | max abs score diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a in rows:
        lines.append(
            f"| {a.method} | {_fmt(a.spearman_mean, '.4f')} | {_fmt(a.spearman_min, '.4f')} | "
            f"{_fmt(a.ndcg10, '.4f')} | {_fmt(a.ndcg10_fp32, '.4f')} | {a.max_abs_diff:.2e} |"
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
        lines.append("")
        lines += _method_table(shape.methods, "pairs")
        if shape.agreement:
            lines += ["", "Agreement with torch fp32 on the same pairs:", ""]
            lines += _agreement_table(shape.agreement)
            if shape.agreement_note:
                lines.append("")
                lines.append(f"Note: {shape.agreement_note} (fp32 score std {shape.agreement[0].score_std:g}).")
    if report.agreement_real_weights:
        lines += ["", "## Ranking agreement on real weights", "", report.agreement_real_weights_note, ""]
        lines += _agreement_table(report.agreement_real_weights)
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


# ---------------------------------------------------------------------------------------------- CLI


def _cmd_bench(args: argparse.Namespace) -> int:
    report = run_bench(
        data=args.data,
        shapes=[s.strip() for s in args.shapes.split(",") if s.strip()],
        questions=args.questions,
        candidates=args.candidates,
        repeats=args.repeats,
        quick=args.quick,
        peers=not args.no_peers,
        variants=not args.no_variants,
        agreement=not args.no_agreement,
        embed=not args.no_embed,
        models_dir=args.models_dir,
        offline_models=args.offline_models,
        threads=args.threads,
    )
    sys.stdout.write(report.to_markdown())
    if args.out:
        json_path, md_path = write_report(report, args.out, args.stem)
        sys.stdout.write(f"\nwrote {json_path} and {md_path}\n")
    return 0


def add_bench_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jp-rerank bench`` (side-by-side reranking and embedding speed)."""
    p = subparsers.add_parser(
        "bench",
        help="side-by-side reranking/embedding speed vs transformers, sentence-transformers, LangChain, LlamaIndex",
        description="Time our reranker and embedder against the usual ways of running the same model on the "
        "same Japanese pairs (medians of several repetitions, ratios measured in the same run). The default run "
        "takes about ten minutes on 2 cores; --quick takes about one.",
    )
    p.add_argument("--data", help="BEIR folder (default: $JP_RERANK_DATA/jsquad-valid or ../shared/data/jsquad-valid)")
    p.add_argument("--shapes", default="xsmall,small", help="reranker shapes, comma-separated (default xsmall,small)")
    p.add_argument("--questions", type=int, default=2, help="questions per shape (default 2)")
    p.add_argument("--candidates", type=int, default=100, help="BM25 candidates per question (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions per method (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: xsmall, 1 question, 2 repetitions")
    p.add_argument("--no-peers", action="store_true", help="skip LangChain and LlamaIndex")
    p.add_argument("--no-variants", action="store_true", help="time only our default, not each backend")
    p.add_argument("--no-agreement", action="store_true", help="skip the ranking agreement check")
    p.add_argument("--no-embed", action="store_true", help="skip the embedding benchmark")
    p.add_argument("--models-dir", help="where same-shape models are built (default ~/.cache/jp-rerank/bench-models)")
    p.add_argument("--offline-models", help="folder of real offline models (default $JP_RERANK_OFFLINE_MODELS)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--out", help="also write <stem>.json and <stem>.md into this folder")
    p.add_argument("--stem", default="bench", help="file name stem for --out (default 'bench')")
    p.set_defaults(func=_cmd_bench)
