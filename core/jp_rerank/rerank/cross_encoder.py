"""The cross-encoder reranker: load once, score (query, passage) pairs fast and in input order."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank.checks import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_DOCUMENTS,
    check_limits,
    check_optional_positive_int,
    check_positive_int,
    check_query,
    check_texts,
)
from jp_rerank.errors import ModelLoadError
from jp_rerank.fusion import RerankFusion
from jp_rerank.hits import FusedRerankResult, RerankResult, rank_scores
from jp_rerank.lexical.tokenizers import MECAB_MAX_CHARS, split_for_analysis
from jp_rerank.loading import ModelHandle, resolve_device
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank.backends import (
    BackendOption,
    Precision,
    PrecisionOption,
    ScoringBackend,
    ScoringPlan,
    TorchBackend,
    default_token_budget,
    int8_file_key,
    int8_kernel,
    plan_scoring,
    run_batches,
)
from jp_rerank.rerank.calibration import calibration_batches
from jp_rerank.rerank.pairs import EncodedPair, PairTemplate
from jp_rerank.text import normalize_text

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

    from jp_rerank.rerank.exports import Export

__all__ = ["Activation", "Listwise", "Overflow", "Reranker"]

logger = logging.getLogger(__name__)

Activation = Literal["auto", "sigmoid", "softmax", "none"]
Overflow = Literal["truncate", "window"]
Listwise = Literal["none", "softmax"]
"""List-wise score normalisation of one query's candidates: ``"softmax"`` turns the raw logits into shares of
relevance that sum to 1 (the ``exp_normalize`` of rerankers' walkthroughs); ``"none"`` keeps per-pair scores."""

_CHAR_CUT_FACTOR = 8  # in truncate mode, tokenize at most this many characters per budget token


class Reranker(ModelHandle):
    """A Japanese cross-encoder reranker.

    The model is loaded lazily on first use from an alias (``"xsmall"``, ``"base"``...; see
    :mod:`jp_rerank.presets`), a hub id (through the Hugging Face cache; ``HF_HUB_OFFLINE`` honoured) or a local
    directory. One instance is safe to share between threads.

    Pairs are sorted by token length and batched under a token budget, so little compute goes to padding; scores
    come back in input order. ``backend="auto", precision="auto"`` (the default) picks the fastest plan that keeps
    the rankings on this CPU class and says why (:attr:`scoring_plan`; the table and its measurements are
    :data:`jp_rerank.rerank.backends.AUTO_ON_CPU`): bf16 autocast on CUDA and AMX CPUs, OpenVINO static int8 on
    CPUs with int8 dot products (AVX-512 VNNI / BF16), torch fp32 elsewhere. ``precision="fp32"`` gives exact fp32
    scores. ``backend="onnx"`` / ``"openvino"`` run an export made once (on first use, or ahead of time with
    :meth:`export` / ``jp-rerank export``), checked and cached by :mod:`jp_rerank.rerank.exports`; int8 exports are
    quantised for this CPU's int8 kernel (:func:`jp_rerank.rerank.backends.int8_kernel`). When ``auto`` chose an
    export that cannot be made or loaded (a read-only model folder and cache, say), one warning says so and torch
    fp32 scores instead.

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
        self.listwise: Listwise = _check_listwise(listwise)
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
        self._loaded: _Loaded | None = None

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
        """The underlying transformers model (loads it; when an export serves, a torch copy is loaded on demand)."""
        return self._torch_model()

    def _torch_model(self) -> Any:
        """The transformers model: the one scoring, or (when ONNX/OpenVINO scores) a fresh CPU copy."""
        loaded = self._load()
        if loaded.model is not None:
            return loaded.model
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
    def _load(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = _Loaded.create(self)
            return self._loaded

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
        return self.score_many([check_query(query)], [documents], activation=activation)[0]

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
        call_activation = _check_call_activation(activation)
        queries = check_texts(queries, name="queries")
        if len(queries) != len(documents):
            raise ValueError(f"got {len(queries)} queries but {len(documents)} document lists")
        for i, q in enumerate(queries):
            check_query(q, name=f"queries[{i}]" if len(queries) > 1 else "query")
        doc_lists = [check_texts(docs, name="documents") for docs in documents]
        # the caps bound the work after normalisation too: NFKC can make one character into 18
        nfkc = self.normalize_text
        check_limits([queries], max_documents=None, max_chars=self.max_chars, name="queries", nfkc=nfkc)
        check_limits(doc_lists, max_documents=self.max_documents, max_chars=self.max_chars, nfkc=nfkc)
        if not any(doc_lists):
            return [np.zeros(0, dtype=np.float32) for _ in doc_lists]
        loaded = self._load()
        with self._lock:
            return loaded.score_many(self, queries, doc_lists, activation=call_activation)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        listwise: Listwise | None = None,
    ) -> list[RerankResult]:
        """Rank documents by relevance to the query.

        Args:
            query: The question.
            documents: Candidate passages.
            top_n: Keep the best ``top_n`` (``None``: all).
            score_threshold: Keep results scoring at least this much (a share of relevance with
                ``listwise="softmax"``).
            listwise: This call's list-wise normalisation (see the class); ``None``: the reranker's.

        Returns:
            ``RerankResult(index, score)`` sorted by descending score (ties: lower index first).

        Example:
            >>> [r.index for r in Reranker("xsmall").rerank("質問", ["文書A", "文書B"])]  # doctest: +SKIP
            [1, 0]
            >>> len(Reranker("xsmall").rerank("質問", ["文書A", "文書B"], top_n=1))
            1
            >>> shares = Reranker("xsmall").rerank("質問", ["文書A", "文書B", "文書C"], listwise="softmax")
            >>> round(sum(r.score for r in shares), 6)
            1.0
        """
        query = check_query(query)
        ranked = self.rerank_many([query], [documents], top_n=top_n, score_threshold=score_threshold, listwise=listwise)
        return ranked[0]

    def rerank_fused(
        self,
        query: str,
        documents: Sequence[str],
        first_stage_scores: Sequence[float | None] | None,
        *,
        fusion: RerankFusion | str | None,
        top_n: int | None = None,
        score_threshold: float | None = None,
        listwise: Listwise | None = None,
    ) -> list[FusedRerankResult]:
        """Rank documents by the reranker's score combined with the score each arrived with from the first stage.

        A reranker weaker than the first stage on a domain makes the ranking worse; combining both per query keeps
        the better signal (see :class:`~jp_rerank.fusion.RerankFusion`; ``fusion="none"`` ranks by the reranker
        alone, as :meth:`rerank`).

        Args:
            query: The question.
            documents: Candidate passages, in the first stage's order.
            first_stage_scores: One score per document (``None`` items: that document had none), or ``None`` when
                no document has one: their order is then taken as the first stage's ranking.
            fusion: ``"zscore"``, ``"minmax"``, ``"rrf"`` (weight 0.5), ``"none"``, or a
                :class:`~jp_rerank.fusion.RerankFusion` with the reranker's weight.
            top_n: Keep the best ``top_n`` (``None``: all).
            score_threshold: Keep results whose combined score is at least this.
            listwise: This call's list-wise normalisation of the reranker's scores; ``None``: the reranker's.

        Returns:
            :class:`~jp_rerank.hits.FusedRerankResult` sorted by the combined ``score`` (ties: lower index first),
            with the reranker's ``rerank_score`` and the ``first_stage_score`` used.

        Raises:
            ValueError: If ``first_stage_scores`` and ``documents`` differ in length; or as :meth:`rerank`.

        Example:
            >>> ranked = Reranker("xsmall").rerank_fused("質問", ["文書A", "文書B"], [12.0, 3.5], fusion="zscore")
            >>> sorted(r.first_stage_score for r in ranked)
            [3.5, 12.0]
        """
        setting = RerankFusion.of(fusion)
        query = check_query(query)
        if first_stage_scores is not None and len(first_stage_scores) != len(documents):
            raise ValueError(f"got {len(documents)} documents but {len(first_stage_scores)} first-stage scores")
        rank_scores([], top_n=top_n, score_threshold=score_threshold)  # validates arguments before any work
        scored = self.rerank_many([query], [documents], listwise=listwise)[0]
        by_position = [0.0] * len(scored)
        for r in scored:
            by_position[r.index] = r.score
        return setting.rank(by_position, first_stage_scores, top_n=top_n, score_threshold=score_threshold)

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
        (:func:`jp_rerank.rerank.backends.int8_kernel`).

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
        wanted = {"fp32", int8_file_key(int8_kernel())} if int8 else {"fp32"}
        return _export(self, self._load(), backend, wanted=wanted, force=force, out_dir=out_dir)

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
        rank_scores([], top_n=top_n, score_threshold=score_threshold)  # validates arguments before any work
        mode = self.listwise if listwise is None else _check_listwise(listwise)
        if mode == "softmax":
            lists = [_list_softmax(x) for x in self.score_many(queries, documents, activation="none")]
        else:
            lists = self.score_many(queries, documents)
        return [rank_scores(s, top_n=top_n, score_threshold=score_threshold) for s in lists]


class _Loaded:
    """What a loaded reranker holds; built once under the reranker's lock."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: PairTemplate,
        backend: ScoringBackend | None,
        plan: ScoringPlan,
        max_length: int,
        activation: Literal["sigmoid", "softmax", "none"],
        token_budget: int,
    ) -> None:
        self.model = model
        self.config: Any = getattr(model, "config", None)
        self.tokenizer = tokenizer
        self.template = template
        self.backend: ScoringBackend = backend  # type: ignore[assignment]  # set by create() right after
        self.plan = plan
        self.max_length = max_length
        self.activation = activation
        self.token_budget = token_budget

    @classmethod
    def create(cls, owner: Reranker) -> _Loaded:
        from sentence_transformers import CrossEncoder

        source = owner.source
        device = resolve_device(owner.device)
        ce: CrossEncoder = owner._load_st(CrossEncoder, device)
        model: Any = ce.model
        if model is None:
            raise ModelLoadError(f"{source.location!r} did not load as a sequence-classification cross-encoder")
        model.eval()
        tokenizer = ce.tokenizer
        preset_len = source.preset.max_length if source.preset else None
        model_len = getattr(ce, "max_seq_length", None) or getattr(tokenizer, "model_max_length", None) or 512
        limit = getattr(model.config, "max_position_embeddings", None)
        max_length = owner._max_length or preset_len or int(model_len)
        if limit is not None and getattr(model.config, "model_type", "") in (
            "xlm-roberta",
            "roberta",
            "camembert",
        ):
            limit -= 2  # RoBERTa-style position ids start after the padding index
        if limit is not None and max_length > limit:
            logger.info("max_length %d exceeds the model's positions; using %d", max_length, limit)
            max_length = int(limit)
        segment_types = _restores_segment_ids(model.config, tokenizer)
        template = PairTemplate.from_tokenizer(tokenizer, segment_types=segment_types)
        device = str(next(model.parameters()).device)
        plan = plan_scoring(
            owner.backend, owner.precision, device, architecture=getattr(model.config, "model_type", None)
        )
        budget = owner.token_budget or default_token_budget(device, model.config)
        loaded = cls(model, tokenizer, template, None, plan, max_length, _resolve_activation(owner, ce), budget)
        loaded.config = model.config
        loaded.backend = _make_backend(owner, loaded, device)
        if loaded.plan.backend != "torch":  # the export serves: do not keep the torch weights in memory
            loaded.model = None
            del ce, model
            gc.collect()
        logger.info("%s scores with %s (%s)", owner.model_id, loaded.plan.label, loaded.plan.reason)
        return loaded

    def encode(self, query: str, documents: Sequence[str]) -> list[EncodedPair]:
        """Model inputs of one query's passages, truncated to the limit (for calibration and tests)."""
        q_ids = self._tokenize([query])[0]
        budget = self.template.document_budget(len(q_ids), self.max_length)
        doc_ids, _ = self._encode_documents(list(documents), budget, "truncate")
        return [
            self.template.encode(i, q_ids, d, max_length=self.max_length, overflow="truncate", overlap=0)[0]
            for i, d in enumerate(doc_ids)
            if d
        ]

    def _keep_budget(self, budget: int) -> None:
        self.token_budget = budget

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens.

        Slow (Python) tokenizers, such as the MeCab/Sudachi-based ``BertJapaneseTokenizer``, get texts longer than
        :data:`~jp_rerank.lexical.tokenizers.MECAB_MAX_CHARS` in pieces cut at sentence ends or spaces
        (:func:`~jp_rerank.lexical.tokenizers.split_for_analysis`): MeCab segfaults on very long inputs and Sudachi
        refuses them. The pieces' ids are concatenated.
        """
        if not texts:
            return []
        if getattr(self.tokenizer, "is_fast", False) or all(len(t) <= MECAB_MAX_CHARS for t in texts):
            encoded = self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)
            return [list(ids) for ids in encoded["input_ids"]]
        pieces: list[str] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            parts = split_for_analysis(text, MECAB_MAX_CHARS) if len(text) > MECAB_MAX_CHARS else [text]
            pieces.extend(parts)
            owners.extend([i] * len(parts))
        out: list[list[int]] = [[] for _ in texts]
        encoded = self.tokenizer(pieces, add_special_tokens=False, truncation=False, verbose=False)
        for i, ids in zip(owners, encoded["input_ids"], strict=True):
            out[i].extend(ids)
        return out

    def _encode_documents(self, docs: list[str], budget: int, overflow: Overflow) -> tuple[list[list[int]], int]:
        """Tokenize documents; in truncate mode long ones are cut by characters first (re-checked afterwards)."""
        if overflow == "window":
            ids = self._tokenize(docs)
            return ids, sum(len(x) > budget for x in ids)
        cut = budget * _CHAR_CUT_FACTOR
        clipped = [d[:cut] for d in docs]
        ids = self._tokenize(clipped)
        short_after_cut = [i for i, d in enumerate(docs) if len(d) > cut and len(ids[i]) <= budget]
        if short_after_cut:
            for i, full in zip(short_after_cut, self._tokenize([docs[i] for i in short_after_cut]), strict=True):
                ids[i] = full
        over = sum(len(x) > budget for x in ids)
        return ids, over

    def _encode_direct(self, pair: int, query: str, query_ids: list[int], document: str) -> EncodedPair:
        """Encode with the tokenizer itself (used for empty passages, which some tokenizers drop from the pair)."""
        ids = tuple(self.tokenizer(query, document, truncation="only_second", max_length=self.max_length)["input_ids"])
        joined = self.template.join(pair, query_ids, [])
        if joined.input_ids == ids:
            return joined
        types = (0,) * len(ids) if self.template.uses_token_types else None
        return EncodedPair(pair, ids, types)

    def score_many(
        self,
        owner: Reranker,
        queries: list[str],
        doc_lists: list[list[str]],
        activation: Literal["sigmoid", "softmax", "none"] | None = None,
    ) -> list[np.ndarray]:
        if owner.normalize_text:
            queries = [normalize_text(q) for q in queries]
            doc_lists = [[normalize_text(d) for d in docs] for docs in doc_lists]
        query_ids = self._tokenize(queries)
        items: list[EncodedPair] = []
        owners: list[tuple[int, int]] = []  # (query position, document position) per pair id
        truncated = 0
        for qi, (q_ids, docs) in enumerate(zip(query_ids, doc_lists, strict=True)):
            budget = self.template.document_budget(len(q_ids), self.max_length)
            doc_ids, over = self._encode_documents(docs, budget, owner.overflow)
            truncated += over if owner.overflow == "truncate" else 0
            for di, d_ids in enumerate(doc_ids):
                pair = len(owners)
                owners.append((qi, di))
                if not d_ids:  # empty passage: encode exactly as the tokenizer does (some drop the empty segment)
                    items.append(self._encode_direct(pair, queries[qi], q_ids, docs[di]))
                    continue
                items.extend(
                    self.template.encode(
                        pair,
                        q_ids,
                        d_ids,
                        max_length=self.max_length,
                        overflow=owner.overflow,
                        overlap=owner.window_overlap,
                    )
                )
        if truncated:
            logger.warning(
                "%d of %d passages exceed max_length=%d tokens with their query and were truncated "
                "(use overflow='window' to score every part)",
                truncated,
                len(owners),
                self.max_length,
            )
        logits = run_batches(
            self.backend,
            items,
            batch_size=owner.batch_size,
            token_budget=self.token_budget,
            on_budget_change=self._keep_budget,
        )
        window_scores = _activate(logits, activation or self.activation)
        pair_scores = np.full(len(owners), -np.inf, dtype=np.float32)
        pair_ids = np.fromiter((it.pair for it in items), dtype=np.int64, count=len(items))
        with np.errstate(invalid="ignore"):  # NaN windows are handled just below
            np.maximum.at(pair_scores, pair_ids, window_scores)
        nan_pairs = np.unique(pair_ids[np.isnan(window_scores)])
        pair_scores[nan_pairs] = np.nan
        if len(nan_pairs):
            logger.warning("the model returned NaN for %d pairs; they rank last", len(nan_pairs))
        out_lists = [np.zeros(len(docs), dtype=np.float32) for docs in doc_lists]
        for pair, (qi, di) in enumerate(owners):
            out_lists[qi][di] = pair_scores[pair]
        return out_lists


def _make_backend(owner: Reranker, loaded: _Loaded, device: str) -> ScoringBackend:
    """Build the backend of ``loaded.plan``: the torch model itself, or an export made once and cached.

    An export that cannot be made or loaded (no writable folder for it, a backend error) is reported in one warning
    and torch fp32 scores instead when the backend was chosen by ``auto``; an explicit choice raises.
    """
    plan, model = loaded.plan, loaded.model
    pad_id = loaded.tokenizer.pad_token_id or 0
    if plan.backend != "torch":
        try:
            return _export_backend(owner, loaded, pad_id)
        except (OSError, RuntimeError) as exc:
            if owner.backend != "auto":
                raise
            loaded.plan = ScoringPlan("torch", "fp32", f"the {plan.label} export could not be used ({exc}): torch fp32")
            logger.warning("%s: %s", owner.model_id, loaded.plan.reason)
    torch_precision: Precision = "fp32" if loaded.plan.precision == "int8" else loaded.plan.precision
    return TorchBackend(model, pad_id=pad_id, precision=torch_precision)


def _export_backend(owner: Reranker, loaded: _Loaded, pad_id: int) -> ScoringBackend:
    plan = loaded.plan
    int8 = int8_file_key(int8_kernel())
    key = int8 if plan.precision == "int8" else "fp32"
    # ONNX's int8 file is a cheap by-product of its fp32 one: made together; OpenVINO's needs a calibration
    export = _export(owner, loaded, plan.backend, wanted={"fp32", int8} if plan.backend == "onnx" else {"fp32", key})
    if plan.backend == "onnx":
        from jp_rerank.rerank.onnx_backend import OnnxBackend

        return OnnxBackend(export.path(key), pad_id, threads=owner.num_threads)
    from jp_rerank.rerank.openvino_backend import OpenVINOBackend

    return OpenVINOBackend(export.path(key), pad_id, precision=plan.precision, threads=owner.num_threads)  # type: ignore[arg-type]


def _export(
    owner: Reranker,
    loaded: _Loaded,
    backend: str,
    *,
    wanted: set[str],
    force: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
) -> Export:
    """The cached ``backend`` export of the loaded model with the ``wanted`` files, made now if there is none."""
    from jp_rerank.rerank.exports import build_export, fingerprint

    model = loaded.model if loaded.model is not None else owner._torch_model()
    kernel = int8_kernel()
    int8 = int8_file_key(kernel) in wanted
    token_types = loaded.template.uses_token_types

    def write(folder: Path) -> tuple[dict[str, str], tuple[str, ...], dict[str, Any]]:
        if backend == "onnx":
            from jp_rerank.rerank.onnx_backend import write_onnx_export

            return write_onnx_export(model, folder, token_types=token_types, int8=int8, kernel=kernel)
        from jp_rerank.rerank.openvino_backend import write_openvino_export

        pad_id = loaded.tokenizer.pad_token_id or 0
        calibration = calibration_batches(loaded.encode, pad_id, token_budget=loaded.token_budget) if int8 else []
        return write_openvino_export(
            model, folder, token_types=token_types, int8=int8, kernel=kernel, calibration=calibration
        )

    label = "int8" if int8 else "fp32"
    if backend == "onnx":
        from jp_rerank.rerank.onnx_backend import EXPORT_RECIPE
    else:
        from jp_rerank.rerank.openvino_backend import EXPORT_RECIPE
    return build_export(
        owner.source,
        fingerprint(owner.model_folder(), model.config),
        backend,
        write,
        wanted=wanted,
        description=f"the {'ONNX' if backend == 'onnx' else 'OpenVINO'} {label} export of {owner.model_id}",
        recipe=EXPORT_RECIPE,
        force=force,
        out_dir=out_dir,
    )


def _restores_segment_ids(config: Any, tokenizer: Any) -> bool:
    """Whether passages get token type 1 although the tokenizer returns no token type ids.

    BERT-tokenizer cross-encoders (the MeCab-based Japanese rerankers) were trained with the passage as segment 1,
    but transformers 5's ``BertJapaneseTokenizer`` no longer returns token type ids. A BERT model with another
    tokenizer (e.g. an XLM-R SentencePiece one, as ja-ce-mini has) was trained without them: all zeros.
    """
    two_segments = int(getattr(config, "type_vocab_size", 1) or 1) > 1
    return two_segments and type(tokenizer).__name__.startswith("Bert")


def _resolve_activation(owner: Reranker, ce: CrossEncoder) -> Literal["sigmoid", "softmax", "none"]:
    if owner.activation != "auto":
        return owner.activation
    if owner.preset is not None:
        return owner.preset.activation
    fn = type(getattr(ce, "activation_fn", None)).__name__.lower()
    if "sigmoid" in fn:
        return "sigmoid"
    if "softmax" in fn:
        return "softmax"
    if "identity" in fn and getattr(ce, "num_labels", 1) == 1:
        return "none"  # the model's own config asks for raw logits
    return "sigmoid" if getattr(ce, "num_labels", 1) == 1 else "softmax"


def _check_listwise(listwise: object) -> Listwise:
    if listwise not in ("none", "softmax"):
        raise ValueError(f"listwise must be 'none' or 'softmax', got {listwise!r}")
    return listwise


def _check_call_activation(activation: object) -> Literal["sigmoid", "softmax", "none"] | None:
    if activation is None or activation == "auto":
        return None
    if activation not in ("sigmoid", "softmax", "none"):
        raise ValueError(f"activation must be auto, sigmoid, softmax or none, got {activation!r}")
    return activation


def _list_softmax(logits: np.ndarray) -> np.ndarray:
    """``exp(x - max) / sum(exp(x - max))`` over one query's documents.

    NaN logits stay NaN and take no share. Infinite logits take the limit: the documents at ``+inf`` share the whole
    (equally), ``-inf`` ones get 0, and when every logit is ``-inf`` all share equally (one warning each time).
    """
    x = np.asarray(logits, dtype=np.float64)
    valid = ~np.isnan(x)
    out = np.full(x.shape, np.nan, dtype=np.float64)
    if valid.any():
        v = x[valid]
        top = v.max()
        if np.isinf(top):
            logger.warning("listwise softmax over infinite logits: the %d largest share equally", int((v == top).sum()))
            share = (v == top).astype(np.float64)
        else:
            share = np.exp(v - top)
        out[valid] = share / share.sum()
    return out.astype(np.float32)


def _activate(logits: np.ndarray, activation: Literal["sigmoid", "softmax", "none"]) -> np.ndarray:
    """One float32 score per row: the single logit, or the last label for multi-label heads."""
    if logits.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    x = logits.astype(np.float64)
    if activation == "softmax" and x.shape[1] > 1:
        x = x - x.max(axis=1, keepdims=True)
        e = np.exp(x)
        col = e[:, -1] / e.sum(axis=1)
    elif activation == "sigmoid":
        col = 1.0 / (1.0 + np.exp(-x[:, -1]))
    else:
        col = x[:, -1]
    return col.astype(np.float32)
