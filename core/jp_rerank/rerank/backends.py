"""Forward passes of a sequence-classification model over padded batches (the torch backend).

A backend takes already-encoded pairs of one batch and returns one row of logits per pair as float32 numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from jp_rerank.rerank.pairs import EncodedPair

if TYPE_CHECKING:
    import torch

__all__ = ["Precision", "ScoringBackend", "TorchBackend", "pad_batch"]

Precision = Literal["fp32", "bf16", "fp16"]


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
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        autocast = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        with torch.inference_mode(), autocast:
            out = self.model(**inputs).logits
        return out.float().cpu().numpy().astype(np.float32, copy=False)
