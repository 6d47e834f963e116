"""Scoring backends: each takes the encoded pairs of one batch and returns one row of logits per pair.

:class:`TorchBackend` runs the transformers model (fp32, bf16/fp16 autocast); the ONNX Runtime and OpenVINO
backends (:mod:`~jp_rerank.rerank.onnx_backend`, :mod:`~jp_rerank.rerank.openvino_backend`) run an export of it.
:func:`run_batches` drives a backend over length-sorted batches and, on an accelerator, halves the batch when it
runs out of memory. Which backend serves is decided by :mod:`jp_rerank.rerank.plans`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from jp_rerank.rerank.pairs import EncodedPair, length_sorted_batches
from jp_rerank.rerank.plans import Precision
from jp_rerank.runtime import autocast

if TYPE_CHECKING:
    import torch

__all__ = ["ScoringBackend", "TorchBackend", "pad_batch", "run_batches"]

logger = logging.getLogger(__name__)


class ScoringBackend(Protocol):
    """Computes logits ``(n, num_labels)`` for a batch of encoded pairs."""

    name: str

    def logits(self, batch: Sequence[EncodedPair]) -> np.ndarray:
        """Return float32 logits, one row per pair, in batch order."""
        ...


def pad_batch(batch: Sequence[EncodedPair], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad a batch to its longest item; returns int64 ``input_ids``, ``attention_mask`` (and token types)."""
    longest = max(len(item.input_ids) for item in batch)
    ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), longest), dtype=np.int64)
    types = np.zeros((len(batch), longest), dtype=np.int64) if batch[0].token_type_ids is not None else None
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        ids[row, :n] = item.input_ids
        mask[row, :n] = 1
        if types is not None and item.token_type_ids is not None:
            types[row, :n] = item.token_type_ids
    out = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out


class TorchBackend:
    """Runs the transformers model with ``torch.inference_mode`` and optional bf16/fp16 autocast.

    Autocast keeps layer norms, softmax statistics and the residual stream in fp32 and runs the matrix products
    in bf16/fp16; it moved scores about ten times less than casting the whole model to bf16, at ~85% of its speed.

    Args:
        model: A transformers ``*ForSequenceClassification`` model (already on its device, in eval mode).
        pad_id: The tokenizer's padding id.
        precision: ``"fp32"`` (exact), ``"bf16"`` or ``"fp16"`` autocast.
    """

    name = "torch"

    def __init__(self, model: Any, pad_id: int, precision: Precision = "fp32") -> None:
        self.model = model
        self.pad_id = pad_id
        self.precision: Precision = precision
        self.device: torch.device = next(model.parameters()).device

    def logits(self, batch: Sequence[EncodedPair]) -> np.ndarray:
        """Return float32 logits for one batch."""
        import torch

        arrays = pad_batch(batch, self.pad_id)
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        with torch.inference_mode(), autocast(self.device.type, self.precision):
            out = self.model(**inputs).logits
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
    batch_size: int,
    token_budget: int,
    on_budget_change: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Score every item in length-sorted batches; returns float32 logits ``(len(items), num_labels)``.

    When a batch runs out of memory (``torch.OutOfMemoryError``, ``MemoryError``), the token budget is halved,
    the batch is split and retried; a single pair that still does not fit re-raises the error.

    Args:
        backend: The scoring backend.
        items: Encoded pairs (or windows).
        batch_size: Most items per forward pass.
        token_budget: Most tokens (items x padded length) per forward pass.
        on_budget_change: Called with the new budget after a back-off, so the caller can keep it.

    Returns:
        Logits in item order.

    Example:
        >>> class Lengths:
        ...     name = "lengths"
        ...     def logits(self, batch):
        ...         return np.array([[len(x.input_ids)] for x in batch], dtype=np.float32)
        >>> xs = [EncodedPair(i, (0,) * n, None) for i, n in enumerate([3, 9, 5])]
        >>> run_batches(Lengths(), xs, batch_size=2, token_budget=64)[:, 0].tolist()
        [3.0, 9.0, 5.0]
    """
    logits = np.empty((len(items), 0), dtype=np.float32)
    pending = list(length_sorted_batches(items, batch_size=batch_size, token_budget=token_budget))
    while pending:
        batch = pending.pop(0)
        try:
            out = backend.logits([items[i] for i in batch])
        except Exception as exc:
            if len(batch) == 1 or not _is_out_of_memory(exc):
                raise
            longest = max(len(items[i].input_ids) for i in batch)
            token_budget = max(longest, (len(batch) * longest) // 2)
            logger.warning("out of memory on a batch of %d pairs; retrying with %d tokens", len(batch), token_budget)
            _empty_accelerator_cache()
            if on_budget_change is not None:
                on_budget_change(token_budget)
            remaining = batch + [i for rest in pending for i in rest]
            sub = [items[i] for i in remaining]
            pending = [
                [remaining[j] for j in part]
                for part in length_sorted_batches(sub, batch_size=batch_size, token_budget=token_budget)
            ]
            continue
        if logits.shape[1] == 0:
            logits = np.empty((len(items), out.shape[1]), dtype=np.float32)
        logits[batch] = out
    return logits


def _empty_accelerator_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
