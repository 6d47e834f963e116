"""Scoring pairs with a loaded cross-encoder: encode, run the backend in batches, activate, back in input order.

A :class:`PairScorer` is what a :class:`~jp_rerank.Reranker` holds once its model is loaded: built from the
sentence-transformers ``CrossEncoder`` and settings fixed at load time (:meth:`PairScorer.load`), it knows nothing
of the reranker itself. What may change between calls (batch size, overflow, text normalisation) comes with each
call as :class:`ScoringOptions`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank.errors import ModelLoadError
from jp_rerank.presets import ModelPreset
from jp_rerank.rerank.backends import ScoringBackend, run_batches
from jp_rerank.rerank.factory import ExportTarget, make_backend
from jp_rerank.rerank.pairs import Overflow, PairEncoder, PairTemplate
from jp_rerank.rerank.plans import BackendOption, PrecisionOption, ScoringPlan, default_token_budget, plan_scoring
from jp_rerank.rerank.sharing import SharedScoring
from jp_rerank.text import normalize_text

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

__all__ = [
    "Activation",
    "ActivationName",
    "Listwise",
    "PairScorer",
    "ScoringOptions",
    "activate",
    "check_listwise",
    "list_softmax",
]

logger = logging.getLogger(__name__)

Activation = Literal["auto", "sigmoid", "softmax", "none"]
"""How logits become scores: the model's own choice, sigmoid, softmax (last label) or the raw logit."""

ActivationName = Literal["sigmoid", "softmax", "none"]
"""An activation once ``"auto"`` is resolved."""

Listwise = Literal["none", "softmax"]
"""List-wise score normalisation of one query's candidates: ``"softmax"`` turns the raw logits into shares of
relevance that sum to 1 (the ``exp_normalize`` of rerankers' walkthroughs); ``"none"`` keeps per-pair scores."""


@dataclass(frozen=True)
class ScoringOptions:
    """The reranker's settings that apply per call (a deep copy of a reranker may change them).

    Attributes:
        batch_size: Most pairs per forward pass.
        overflow: ``"truncate"`` or ``"window"`` for passages longer than the limit.
        window_overlap: Tokens shared by consecutive windows.
        normalize_text: Apply :func:`jp_rerank.text.normalize_text` to queries and passages.
        activation: This call's activation; ``None``: the model's.
    """

    batch_size: int
    overflow: Overflow
    window_overlap: int
    normalize_text: bool
    activation: ActivationName | None = None


class PairScorer:
    """A loaded cross-encoder ready to score: its encoder, backend, plan, activation and token budget.

    Built by :meth:`load`; one instance is shared by a reranker and its deep copies, whose concurrent calls go
    through :attr:`shared` (one forward pass at a time, requests that wait combined).
    """

    def __init__(
        self,
        encoder: PairEncoder,
        backend: ScoringBackend,
        plan: ScoringPlan,
        activation: ActivationName,
        token_budget: int,
        model: Any,
    ) -> None:
        self.encoder = encoder
        self.backend = backend
        self.plan = plan
        self.activation: ActivationName = activation
        self.token_budget = token_budget
        self.model = model
        """The torch model when torch scores; ``None`` when an export serves (its weights are not kept)."""
        self.pad_id: int = encoder.tokenizer.pad_token_id or 0
        self.shared = SharedScoring[ScoringOptions, np.ndarray](self.score_many)
        """Concurrent calls, combined: ``shared.run(queries, doc_lists, options)``."""

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer."""
        return self.encoder.tokenizer

    @property
    def template(self) -> PairTemplate:
        """The tokenizer's pair template."""
        return self.encoder.template

    @property
    def max_length(self) -> int:
        """Token limit of one (query, passage) input."""
        return self.encoder.max_length

    @classmethod
    def load(
        cls,
        ce: CrossEncoder,
        *,
        preset: ModelPreset | None,
        max_length: int | None,
        activation: Activation,
        token_budget: int | None,
        backend: BackendOption,
        precision: PrecisionOption,
        target: ExportTarget,
    ) -> PairScorer:
        """Read what scoring needs from a loaded ``CrossEncoder`` and build the backend of the plan for it.

        Raises:
            ModelLoadError: If the folder did not load as a sequence-classification model.
        """
        model: Any = ce.model
        if model is None:
            raise ModelLoadError(f"{target.source.location!r} did not load as a sequence-classification cross-encoder")
        model.eval()
        tokenizer = ce.tokenizer
        template = PairTemplate.from_tokenizer(tokenizer, segment_types=_restores_segment_ids(model.config, tokenizer))
        encoder = PairEncoder(tokenizer, template, _max_length(ce, preset, max_length))
        device = str(next(model.parameters()).device)
        architecture = getattr(model.config, "model_type", None)
        plan = plan_scoring(backend, precision, device, architecture=architecture)
        budget = token_budget or default_token_budget(device, model.config)
        made, plan = make_backend(plan, model, encoder, target, token_budget=budget, explicit=backend != "auto")
        scorer = cls(encoder, made, plan, _resolve_activation(activation, preset, ce), budget, model)
        if plan.backend != "torch":  # the export serves: do not keep the torch weights in memory
            scorer.model = None
        logger.info("%s scores with %s (%s)", target.source.model_id, plan.label, plan.reason)
        return scorer

    def score_many(self, queries: list[str], doc_lists: list[list[str]], options: ScoringOptions) -> list[np.ndarray]:
        """Score each query against its own (already checked) passages; one float32 array per query."""
        if options.normalize_text:
            queries = [normalize_text(q) for q in queries]
            doc_lists = [[normalize_text(d) for d in docs] for docs in doc_lists]
        request = self.encoder.encode_request(
            queries, doc_lists, overflow=options.overflow, overlap=options.window_overlap
        )
        if request.truncated:
            logger.warning(
                "%d of %d passages exceed max_length=%d tokens with their query and were truncated "
                "(use overflow='window' to score every part)",
                request.truncated,
                len(request.owners),
                self.max_length,
            )
        logits = run_batches(
            self.backend,
            request.items,
            pad_id=self.pad_id,
            batch_size=options.batch_size,
            token_budget=self.token_budget,
            on_budget_change=self._keep_budget,
        )
        scores = activate(logits, options.activation or self.activation)
        if len(request.items) > len(request.owners):  # windows: each pair scores its best window
            scores = _best_window(request.items, scores, len(request.owners))
        nan = int(np.isnan(scores).sum())
        if nan:
            logger.warning("the model returned NaN for %d pairs; they rank last", nan)
        out_lists = [np.zeros(len(docs), dtype=np.float32) for docs in doc_lists]
        for pair, (qi, di) in enumerate(request.owners):
            out_lists[qi][di] = scores[pair]
        return out_lists

    def _keep_budget(self, budget: int) -> None:
        self.token_budget = budget


def _best_window(items: list[Any], window_scores: np.ndarray, n_pairs: int) -> np.ndarray:
    """Each pair's score: the best of its windows; a pair with a NaN window scores NaN."""
    pair_scores = np.full(n_pairs, -np.inf, dtype=np.float32)
    pair_ids = np.fromiter((it.pair for it in items), dtype=np.int64, count=len(items))
    with np.errstate(invalid="ignore"):  # NaN windows are handled just below
        np.maximum.at(pair_scores, pair_ids, window_scores)
    pair_scores[np.unique(pair_ids[np.isnan(window_scores)])] = np.nan
    return pair_scores


def _max_length(ce: CrossEncoder, preset: ModelPreset | None, requested: int | None) -> int:
    """The pair limit: the caller's, else the preset's, else the model's own; capped at the model's positions."""
    config = getattr(ce.model, "config", None)
    preset_len = preset.max_length if preset else None
    model_len = getattr(ce, "max_seq_length", None) or getattr(ce.tokenizer, "model_max_length", None) or 512
    limit = getattr(config, "max_position_embeddings", None)
    max_length = requested or preset_len or int(model_len)
    if limit is not None and getattr(config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
        limit -= 2  # RoBERTa-style position ids start after the padding index
    if limit is not None and max_length > limit:
        logger.info("max_length %d exceeds the model's positions; using %d", max_length, limit)
        max_length = int(limit)
    return max_length


def _restores_segment_ids(config: Any, tokenizer: Any) -> bool:
    """Whether passages get token type 1 although the tokenizer returns no token type ids.

    BERT-tokenizer cross-encoders (the MeCab-based Japanese rerankers) were trained with the passage as segment 1,
    but transformers 5's ``BertJapaneseTokenizer`` no longer returns token type ids. A BERT model with another
    tokenizer (e.g. an XLM-R SentencePiece one, as ja-ce-mini has) was trained without them: all zeros.
    """
    two_segments = int(getattr(config, "type_vocab_size", 1) or 1) > 1
    return two_segments and type(tokenizer).__name__.startswith("Bert")


def _resolve_activation(activation: Activation, preset: ModelPreset | None, ce: CrossEncoder) -> ActivationName:
    if activation != "auto":
        return activation
    if preset is not None:
        return preset.activation
    fn = type(getattr(ce, "activation_fn", None)).__name__.lower()
    if "sigmoid" in fn:
        return "sigmoid"
    if "softmax" in fn:
        return "softmax"
    if "identity" in fn and getattr(ce, "num_labels", 1) == 1:
        return "none"  # the model's own config asks for raw logits
    return "sigmoid" if getattr(ce, "num_labels", 1) == 1 else "softmax"


def check_listwise(listwise: object) -> Listwise:
    """Return ``listwise`` if it is ``"none"`` or ``"softmax"``.

    Raises:
        ValueError: Anything else.

    Example:
        >>> check_listwise("softmax")
        'softmax'
    """
    if listwise not in ("none", "softmax"):
        raise ValueError(f"listwise must be 'none' or 'softmax', got {listwise!r}")
    return listwise


def list_softmax(logits: np.ndarray) -> np.ndarray:
    """``exp(x - max) / sum(exp(x - max))`` over one query's documents, as float64.

    NaN logits stay NaN and take no share. Infinite logits take the limit: the documents at ``+inf`` share the whole
    (equally), ``-inf`` ones get 0, and when every logit is ``-inf`` all share equally (one warning each time).

    Example:
        >>> list_softmax(np.array([0.0, 0.0, float("nan")])).tolist()
        [0.5, 0.5, nan]
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
    return out


def activate(logits: np.ndarray, activation: ActivationName) -> np.ndarray:
    """One float32 score per row: the single logit, or the last label for multi-label heads.

    Example:
        >>> [round(float(x), 3) for x in activate(np.array([[0.0], [2.0]], dtype=np.float32), "sigmoid")]
        [0.5, 0.881]
    """
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
