"""Scoring backends: each takes one padded batch of encoded pairs and returns one row of logits per pair.

:class:`TorchBackend` runs the transformers model (fp32, bf16/fp16 autocast); the ONNX Runtime and OpenVINO
backends (:mod:`~jp_rerank.rerank.onnx_backend`, :mod:`~jp_rerank.rerank.openvino_backend`) run an export of it.
:func:`run_batches` drives a backend over length-sorted, padded batches and halves the batch when it runs out of
memory. Which backend serves is decided by :mod:`jp_rerank.rerank.plans`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from jp_rerank.rerank.pairs import EncodedPair
from jp_rerank.rerank.plans import Precision
from jp_rerank.runtime import autocast_dtype

if TYPE_CHECKING:
    import torch

__all__ = ["ScoringBackend", "TorchBackend", "run_batches"]

logger = logging.getLogger(__name__)


class ScoringBackend(Protocol):
    """Computes logits ``(n, num_labels)`` for a padded batch of encoded pairs."""

    name: str

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Return float32 logits, one row per pair, for int64 ``input_ids``, ``attention_mask`` (and token types)."""
        ...


class TorchBackend:
    """Runs the transformers model with ``torch.inference_mode`` and optional bf16/fp16 autocast.

    Autocast keeps layer norms, softmax statistics and the residual stream in fp32 and runs the matrix products
    in bf16/fp16; it moved scores about ten times less than casting the whole model to bf16, at ~85% of its speed.

    Args:
        model: A transformers ``*ForSequenceClassification`` model (already on its device, in eval mode).
        precision: ``"fp32"`` (exact), ``"bf16"`` or ``"fp16"`` autocast.
    """

    name = "torch"

    def __init__(self, model: Any, precision: Precision = "fp32") -> None:
        self.model = model
        self.precision: Precision = precision
        self.device: torch.device = next(model.parameters()).device
        self._autocast_dtype = autocast_dtype(precision)

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Return float32 logits for one padded batch."""
        import torch

        tensors = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
        dtype = self._autocast_dtype
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self.model(**tensors).logits
        return out.float().cpu().numpy().astype(np.float32, copy=False)


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, MemoryError)


def run_batches(
    backend: ScoringBackend,
    items: Sequence[EncodedPair],
    *,
    pad_id: int,
    batch_size: int,
    token_budget: int,
    on_budget_change: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Score every item in length-sorted, right-padded batches; returns float32 logits ``(len(items), num_labels)``.

    Items go longest first (ties in item order), each batch within ``batch_size`` items and ``token_budget``
    tokens counted with padding (``len(batch) * longest <= token_budget``; an item longer than the budget forms
    its own batch), padded to its longest item with ``pad_id``. When a batch runs out of memory
    (``torch.OutOfMemoryError``, ``MemoryError``), the token budget is halved and the rest is batched again; a
    single pair that still does not fit re-raises the error.

    Args:
        backend: The scoring backend.
        items: Encoded pairs (or windows).
        pad_id: The tokenizer's padding id.
        batch_size: Most items per forward pass.
        token_budget: Most tokens (items x padded length) per forward pass.
        on_budget_change: Called with the new budget after a back-off, so the caller can keep it.

    Returns:
        Logits in item order.

    Example:
        >>> class Lengths:
        ...     name = "lengths"
        ...     def logits(self, inputs):
        ...         return inputs["attention_mask"].sum(axis=1, keepdims=True).astype(np.float32)
        >>> xs = [EncodedPair(i, (0,) * n, None) for i, n in enumerate([3, 9, 5])]
        >>> run_batches(Lengths(), xs, pad_id=0, batch_size=2, token_budget=64)[:, 0].tolist()
        [3.0, 9.0, 5.0]
    """
    lengths = [len(item.input_ids) for item in items]
    order = sorted(range(len(items)), key=lengths.__getitem__, reverse=True)  # stable: ties in item order
    logits = np.empty((len(items), 0), dtype=np.float32)
    start = 0
    while start < len(order):
        longest = lengths[order[start]]  # longest first: a batch's first item sets its padded length
        batch = order[start : start + max(1, min(batch_size, token_budget // longest))]
        ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if items[batch[0]].token_type_ids is not None:
            inputs["token_type_ids"] = np.zeros((len(batch), longest), dtype=np.int64)
        for row, i in enumerate(batch):
            ids[row, : lengths[i]] = items[i].input_ids
            mask[row, : lengths[i]] = 1
            if "token_type_ids" in inputs and (item_types := items[i].token_type_ids) is not None:
                inputs["token_type_ids"][row, : lengths[i]] = item_types
        try:
            out = backend.logits(inputs)
        except Exception as exc:
            if len(batch) == 1 or not _is_out_of_memory(exc):
                raise
            token_budget = max(longest, (len(batch) * longest) // 2)
            logger.warning("out of memory on a batch of %d pairs; retrying with %d tokens", len(batch), token_budget)
            _empty_accelerator_cache()
            if on_budget_change is not None:
                on_budget_change(token_budget)
            continue
        if logits.shape[1] == 0:
            logits = np.empty((len(items), out.shape[1]), dtype=np.float32)
        logits[batch] = out
        start += len(batch)
    return logits


def _empty_accelerator_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
