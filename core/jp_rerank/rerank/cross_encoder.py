"""The cross-encoder reranker: load once, score (query, passage) pairs fast and in input order, rank them."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank.checks import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_DOCUMENTS,
    check_optional_positive_int,
    check_pairs,
    check_positive_int,
    check_query,
    check_texts,
    too_many_error,
)
from jp_rerank.engines import ModelHandle
from jp_rerank.fusion import RerankFusion
from jp_rerank.hits import RerankResult, check_ranking, rank_scores
from jp_rerank.http_client import is_url
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank.factory import ExportTarget, export_model
from jp_rerank.rerank.pairs import Overflow
from jp_rerank.rerank.plans import BackendOption, PrecisionOption, ScoringPlan, plan_scoring
from jp_rerank.rerank.scoring import (
    Activation,
    ActivationName,
    Listwise,
    PairScorer,
    ScoringOptions,
    check_listwise,
    list_softmax,
)
from jp_rerank.runtime import resolve_device

if TYPE_CHECKING:
    from jp_rerank.rerank.exports import Export

__all__ = ["Reranker"]

logger = logging.getLogger(__name__)


class Reranker(ModelHandle):
    """A Japanese cross-encoder reranker.

    The model is loaded lazily on first use from an alias (``"xsmall"``, ``"base"``...; see
    :mod:`jp_rerank.presets`), a hub id (through the Hugging Face cache; ``HF_HUB_OFFLINE`` honoured) or a local
    directory. One instance is safe to share between threads.

    Pairs are sorted by token length and batched under a token budget, so little compute goes to padding; scores
    come back in input order. ``backend="auto", precision="auto"`` (the default) picks the fastest plan that keeps
    the rankings on this CPU class and says why (:attr:`scoring_plan`; the table and its measurements are
    :data:`jp_rerank.rerank.plans.AUTO_ON_CPU`): torch with bf16 autocast on CUDA and on CPUs with native bf16
    (AMX, AVX-512 BF16), torch fp32 elsewhere; it never picks an export, so a first call never waits on one.
    ``precision="fp32"`` gives exact fp32 scores. ``backend="onnx"`` / ``"openvino"`` run an export made once (on
    first use, or ahead of time with :meth:`export` / ``jp-rerank export``), checked and cached by
    :mod:`jp_rerank.rerank.exports`; int8 exports are quantised for this CPU's int8 kernel
    (:func:`jp_rerank.rerank.plans.int8_kernel`). When an export that was not named (``precision="int8"`` with
    ``backend="auto"``, or ``JP_RERANK_BACKEND``) cannot be made or loaded (a read-only model folder and cache,
    say), one warning says so and torch fp32 scores instead.

    A server URL instead of a model (``Reranker("http://127.0.0.1:8080", api_key=...)``) gives a
    :class:`~jp_rerank.rerank.remote.RemoteReranker` that scores on a ``jp-rerank serve`` (or TEI) server, with
    this API and the same results: one loaded model for many processes, no torch in them.

    The query is never truncated. Passages longer than the model's limit are truncated (``overflow="truncate"``,
    one warning per call counting them) or split into overlapping token windows and scored by their best window
    (``overflow="window"``).

    Args:
        model: Alias, hub id or local directory of a sequence-classification cross-encoder.
        preset: The preset (alias or hub id) a local folder is a copy of, for its prompts, limits and
            activation (default: recognised from the folder's files or name).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default picks CUDA when available.
        max_length: Token limit of a pair (default: the preset's, else the model's own).
        batch_size: Most pairs per forward pass.
        token_budget: Most tokens (pairs x padded length) per forward pass; default 2048 on CPU (measured
            fastest), sized by free memory on CUDA (halved automatically on out-of-memory).
        activation: ``"auto"`` (the preset's or the model's own; sigmoid for single-logit rerankers),
            ``"sigmoid"``, ``"softmax"`` (multi-label models: probability of the last label) or ``"none"`` (raw logit).
        overflow: ``"truncate"`` or ``"window"`` for passages longer than the limit.
        window_overlap: Tokens shared by consecutive windows in window mode, capped at half a window (a larger
            overlap would leave almost no stride and multiply the windows, the cost, for nothing).
        listwise: ``"none"`` (each pair scored on its own, through ``activation``) or ``"softmax"``: ``rerank`` /
            ``rerank_many`` turn one query's raw logits into shares of relevance, ``exp(x - max) / sum(exp(x -
            max))`` over that query's documents (they sum to 1; each query on its own). ``top_n`` and
            ``score_threshold`` then apply to these shares. ``score`` / ``score_many`` are not affected.
        normalize_text: Apply :func:`jp_rerank.text.normalize_text` (NFKC, whitespace) to query and passages.
        precision: ``"auto"`` (see above), ``"fp32"`` (exact), ``"bf16"`` / ``"fp16"`` (torch autocast) or
            ``"int8"`` (OpenVINO static or ONNX Runtime dynamic quantisation).
        backend: ``"auto"`` (see above), ``"torch"``, ``"onnx"`` (needs ``jp-rerank[onnx]``) or ``"openvino"``
            (needs ``jp-rerank[openvino]``); the export backends make their export on first load if needed.
        local_files_only: Only use local files / the HF cache (default: on when ``HF_HUB_OFFLINE`` is set).
        cache_folder: Hugging Face cache override.
        revision: Hub revision.
        trust_remote_code: Allow custom code from the hub repository.
        num_threads: torch CPU threads, set for the whole process when the model loads (``None``: torch's
            choice). Use 1-2 on a shared machine or a container with a CPU quota (see
            :func:`jp_rerank.runtime.set_torch_threads`).
        max_documents: Most passages one call accepts, all queries together (default 100,000; ``None``: no cap).
            Checked before any model work; over the cap raises ``ValueError``.
        max_chars: Most characters of one query or passage (default 1,000,000; ``None``: no cap). Checked
            before any model work; over the cap raises ``ValueError`` (chunk long texts first).

    Example:
        >>> reranker = Reranker("xsmall")
        >>> results = reranker.rerank("富士山の高さは？", ["富士山は3776mです。", "京都の寺。"], top_n=1)
        >>> len(results), type(results[0].score)
        (1, <class 'float'>)
        >>> results  # the real xsmall model  # doctest: +SKIP
        [RerankResult(index=0, score=0.98...)]
    """

    role = "reranker"
    _loaded_attrs = ("_loaded",)

    def __new__(cls, model: str | os.PathLike[str] = DEFAULT_RERANKER, *args: Any, **kwargs: Any) -> Reranker:
        """A server URL instead of a model gives a :class:`~jp_rerank.rerank.remote.RemoteReranker` (see there)."""
        if is_url(model):
            from jp_rerank.rerank.remote import RemoteReranker

            return RemoteReranker(str(model), *args, **kwargs)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_RERANKER,
        *,
        preset: str | None = None,
        device: str | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        token_budget: int | None = None,
        activation: Activation = "auto",
        overflow: Overflow = "truncate",
        window_overlap: int = 64,
        listwise: Listwise = "none",
        normalize_text: bool = True,
        precision: PrecisionOption = "auto",
        backend: BackendOption = "auto",
        local_files_only: bool | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | None = None,
        num_threads: int | None = None,
        max_documents: int | None = DEFAULT_MAX_DOCUMENTS,
        max_chars: int | None = DEFAULT_MAX_CHARS,
    ) -> None:
        super().__init__(
            model,
            preset=preset,
            device=device,
            local_files_only=local_files_only,
            cache_folder=cache_folder,
            revision=revision,
            trust_remote_code=trust_remote_code,
            num_threads=num_threads,
        )
        if max_length is not None:
            check_positive_int(max_length, name="max_length")
        check_positive_int(batch_size, name="batch_size")
        self.max_documents = check_optional_positive_int(max_documents, name="max_documents")
        self.max_chars = check_optional_positive_int(max_chars, name="max_chars")
        if token_budget is not None:
            check_positive_int(token_budget, name="token_budget")
        if activation not in ("auto", "sigmoid", "softmax", "none"):
            raise ValueError(f"activation must be auto, sigmoid, softmax or none, got {activation!r}")
        if overflow not in ("truncate", "window"):
            raise ValueError(f"overflow must be 'truncate' or 'window', got {overflow!r}")
        if isinstance(window_overlap, bool) or not isinstance(window_overlap, int) or window_overlap < 0:
            raise ValueError(f"window_overlap must be a non-negative int, got {window_overlap!r}")
        self.listwise: Listwise = check_listwise(listwise)
        if backend != "auto" or precision != "auto":
            plan_scoring(backend, precision, "cpu", cpu="baseline")  # validates the options and their combination
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.activation: Activation = activation
        self.overflow: Overflow = overflow
        self.window_overlap = window_overlap
        self.normalize_text = normalize_text
        self.precision: PrecisionOption = precision
        self.backend: BackendOption = backend
        self._max_length = max_length
        self._loaded: PairScorer | None = None

    # ------------------------------------------------------------------ properties
    @property
    def max_length(self) -> int:
        """Token limit of one (query, passage) input (loads the model)."""
        return self._load().max_length

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loads the model)."""
        return self._load().tokenizer

    @property
    def model(self) -> Any:
        """The transformers model: the one scoring, or (when ONNX/OpenVINO scores) a fresh CPU copy (loads it)."""
        scorer = self._load()
        if scorer.model is not None:
            return scorer.model
        from sentence_transformers import CrossEncoder

        model = self._load_st(CrossEncoder, "cpu").model
        model.eval()
        return model

    @property
    def scoring_plan(self) -> ScoringPlan:
        """The backend and precision in use, with the reason they were chosen (loads the model)."""
        return self._load().plan

    def __repr__(self) -> str:
        return (
            f"Reranker(model={self.source.name!r}, overflow={self.overflow!r}, precision={self.precision!r}, "
            f"backend={self.backend!r})"
        )

    # ------------------------------------------------------------------ loading
    def _load(self) -> PairScorer:
        scorer = self._loaded
        if scorer is not None:
            return scorer
        with self._lock:
            if self._loaded is None:
                from sentence_transformers import CrossEncoder

                ce = self._load_st(CrossEncoder, resolve_device(self.device))
                self._loaded = PairScorer.load(
                    ce,
                    preset=self.preset,
                    max_length=self._max_length,
                    activation=self.activation,
                    token_budget=self.token_budget,
                    backend=self.backend,
                    precision=self.precision,
                    target=self._export_target(),
                )
                if self._loaded.model is None:  # an export serves: free the torch weights now
                    del ce
                    gc.collect()
            return self._loaded

    def _export_target(self) -> ExportTarget:
        return ExportTarget(self.source, self.model_folder(), self.num_threads)

    # ------------------------------------------------------------------ scoring
    def score(self, query: str, documents: Sequence[str], *, activation: Activation | None = None) -> np.ndarray:
        """Score each document against the query.

        Args:
            query: The question (non-empty).
            documents: Passages; an empty list gives an empty array.
            activation: This call's activation (``"none"``: raw logits); ``None`` or ``"auto"``: the reranker's.

        Returns:
            float32 array of scores, in input order.

        Raises:
            ValueError: Empty or whitespace-only query; a query too long to leave room for any passage.
            TypeError: A non-string query or document (the message names the position).
        """
        return self._scores([query], [documents], _check_call_activation(activation), single=True)[0]

    def score_many(
        self, queries: Sequence[str], documents: Sequence[Sequence[str]], *, activation: Activation | None = None
    ) -> list[np.ndarray]:
        """Score several queries, each against its own documents, sharing batches across queries.

        Args:
            queries: The questions.
            documents: One list of passages per question.
            activation: This call's activation (``"none"``: raw logits); ``None`` or ``"auto"``: the reranker's.

        Returns:
            One float32 array per query, in input order.
        """
        return self._scores(queries, documents, _check_call_activation(activation))

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Score ``(query, passage)`` pairs in any order; pairs sharing a query share one query encoding.

        What LangChain's ``BaseCrossEncoder.score`` asks for (:class:`langchain_jp_rerank.JapaneseCrossEncoder`).

        Args:
            pairs: ``(query, passage)`` tuples (or two-item lists); queries may differ between pairs.

        Returns:
            One score per pair, in input order, as Python floats.

        Raises:
            TypeError: An item that is not a pair, or a non-string text (the message names its position).
            ValueError: An empty or whitespace-only query.

        Example:
            >>> scores = Reranker("xsmall").score_pairs([("富士山の高さは？", "3776m"), ("京都は？", "古都")])
            >>> len(scores), type(scores[0])
            (2, <class 'float'>)
        """
        groups = check_pairs(pairs)
        texts = [[passage for _, passage in group] for group in groups.values()]
        out = [0.0] * sum(len(group) for group in groups.values())
        scores = self._scores(list(groups), texts, None) if groups else []
        for group, values in zip(groups.values(), scores, strict=True):
            for (i, _), value in zip(group, values.tolist(), strict=True):
                out[i] = value
        return out

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        listwise: Listwise | None = None,
        first_stage_scores: Sequence[float | None] | None = None,
        fusion: RerankFusion | str | None = None,
    ) -> list[RerankResult]:
        """Rank documents by relevance to the query, optionally combined with the first stage's scores.

        A reranker weaker than the first stage on a domain makes the ranking worse; ``fusion`` combines both per
        query and keeps the better signal (see :class:`~jp_rerank.fusion.RerankFusion`).

        Args:
            query: The question.
            documents: Candidate passages (with ``fusion``: in the first stage's order).
            top_n: Keep the best ``top_n`` (``None``: all).
            score_threshold: Keep results scoring at least this much (the combined score with ``fusion``; a share
                of relevance with ``listwise="softmax"``).
            listwise: This call's list-wise normalisation (see the class); ``None``: the reranker's.
            first_stage_scores: With ``fusion``: one score per document (``None`` items: that document had none).
                ``None``, or no document with a score: their order is taken as the first stage's ranking. Read
                only when ``fusion`` combines.
            fusion: ``None`` / ``"none"`` (the reranker alone), ``"zscore"``, ``"minmax"``, ``"rrf"`` (weight
                0.5), or a :class:`~jp_rerank.fusion.RerankFusion` with the reranker's weight.

        Returns:
            ``RerankResult(index, score)`` sorted by descending score (ties: lower index first). With ``fusion``,
            ``score`` is the combined score and each result also carries the reranker's ``rerank_score`` and the
            ``first_stage_score`` used.

        Raises:
            ValueError: Empty query, ``top_n`` not positive, NaN threshold, or ``first_stage_scores`` and
                ``documents`` of different lengths.
            TypeError: A non-string query or document (the message names the position).

        Example:
            >>> reranker = Reranker("xsmall")
            >>> len(reranker.rerank("質問", ["文書A", "文書B"], top_n=1))
            1
            >>> shares = reranker.rerank("質問", ["文書A", "文書B", "文書C"], listwise="softmax")
            >>> round(sum(r.score for r in shares), 6)
            1.0
            >>> fused = reranker.rerank("質問", ["文書A", "文書B"], first_stage_scores=[12.0, 3.5], fusion="zscore")
            >>> sorted(r.first_stage_score for r in fused)
            [3.5, 12.0]
        """
        top_n, score_threshold = check_ranking(top_n, score_threshold)
        mode = self.listwise if listwise is None else check_listwise(listwise)
        if fusion is not None and not isinstance(fusion, RerankFusion):
            fusion = RerankFusion.of(fusion)  # a method name: checked before any work
        if first_stage_scores is not None and len(first_stage_scores) != len(documents):
            raise ValueError(f"got {len(documents)} documents but {len(first_stage_scores)} first-stage scores")
        scores = self._scores([query], [documents], "none" if mode == "softmax" else None, single=True)[0]
        if mode == "softmax":
            scores = list_softmax(scores)
        if fusion is None or not fusion.active:
            return rank_scores(scores, top_n=top_n, score_threshold=score_threshold)
        return fusion.rank(scores, first_stage_scores, top_n=top_n, score_threshold=score_threshold)

    def rerank_many(
        self,
        queries: Sequence[str],
        documents: Sequence[Sequence[str]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        listwise: Listwise | None = None,
    ) -> list[list[RerankResult]]:
        """Rerank many queries at once (shared batches); one sorted result list per query.

        With ``listwise="softmax"`` each query's raw logits become shares of relevance over its own documents
        before ``top_n`` and ``score_threshold`` apply.
        """
        top_n, score_threshold = check_ranking(top_n, score_threshold)
        mode = self.listwise if listwise is None else check_listwise(listwise)
        lists = self._scores(queries, documents, "none" if mode == "softmax" else None)
        if mode == "softmax":
            lists = [list_softmax(scores) for scores in lists]
        return [rank_scores(s, top_n=top_n, score_threshold=score_threshold) for s in lists]

    def export(
        self,
        *,
        backend: Literal["onnx", "openvino"] = "onnx",
        int8: bool = True,
        force: bool = False,
        out_dir: str | os.PathLike[str] | None = None,
    ) -> Export:
        """Export this reranker's model to ONNX or OpenVINO (fp32, plus int8 unless ``int8=False``) and cache it.

        What ``backend="onnx"`` / ``"openvino"`` would make on first use, made ahead of time (deployments,
        ``jp-rerank export``). An up-to-date export is reused unless ``force``; files are written to a temporary
        folder and moved into place under a lock, so a crash never leaves half an export and two processes never
        export at once (:mod:`jp_rerank.rerank.exports`). The int8 file is quantised for this CPU's int8 kernel
        (:func:`jp_rerank.rerank.plans.int8_kernel`).

        Args:
            backend: ``"onnx"`` or ``"openvino"``.
            int8: Also write the int8 model.
            force: Export again even if an up-to-date export exists.
            out_dir: Folder to write instead of the default place (``<model>/<backend>`` or the jp-rerank cache),
                which is the only place the backends look.

        Returns:
            The export.

        Raises:
            ImportError: If the backend's packages are not installed (``pip install "jp-rerank[onnx]"``).
            ValueError: If ``backend`` is not ``"onnx"`` or ``"openvino"``.
        """
        if backend not in ("onnx", "openvino"):
            raise ValueError(f"backend must be 'onnx' or 'openvino', got {backend!r}")
        scorer = self._load()
        return export_model(
            backend,
            self.model,
            scorer.encoder,
            self._export_target(),
            token_budget=scorer.token_budget,
            int8=int8,
            force=force,
            out_dir=out_dir,
        )

    # ------------------------------------------------------------------ the one path of every call
    def _scores(
        self,
        queries: Sequence[str],
        documents: Sequence[Sequence[str]],
        activation: ActivationName | None,
        *,
        single: bool = False,
    ) -> list[np.ndarray]:
        """Check the call's texts once (types, blank queries, the caps after normalisation too), then score them.

        One float32 array per query; the model loads on the first passage.
        """
        cap, nfkc = self.max_chars, self.normalize_text
        if single:
            checked = [check_query(queries[0], max_chars=cap, nfkc=nfkc)]
            doc_lists = [check_texts(documents[0], max_documents=self.max_documents, max_chars=cap, nfkc=nfkc)]
        else:
            checked = check_texts(queries, name="queries", max_chars=cap, nfkc=nfkc)
            if len(checked) != len(documents):
                raise ValueError(f"got {len(checked)} queries but {len(documents)} document lists")
            for i, query in enumerate(checked):
                check_query(query, name=f"queries[{i}]" if len(checked) > 1 else "query")
            doc_lists = [
                check_texts(docs, name=f"documents[{i}]", max_chars=cap, nfkc=nfkc) for i, docs in enumerate(documents)
            ]
            total = sum(len(docs) for docs in doc_lists)
            if self.max_documents is not None and total > self.max_documents:
                raise too_many_error(total, self.max_documents)
        if not any(doc_lists):
            return [np.zeros(0, dtype=np.float32) for _ in doc_lists]
        options = ScoringOptions(self.batch_size, self.overflow, self.window_overlap, self.normalize_text, activation)
        return (self._loaded or self._load()).shared.run(checked, doc_lists, options)


def _check_call_activation(activation: object) -> ActivationName | None:
    if activation is None or activation == "auto":
        return None
    if activation not in ("sigmoid", "softmax", "none"):
        raise ValueError(f"activation must be auto, sigmoid, softmax or none, got {activation!r}")
    return activation
