"""Scoring backends and the choice between them: torch (fp32, bf16/fp16 autocast) and ONNX Runtime (fp32, int8).

A backend takes already-encoded pairs of one batch and returns one row of logits per pair as float32 numpy.
:func:`plan_scoring` decides which backend and precision a :class:`~jp_rerank.Reranker` uses when it is told
``"auto"``; :func:`run_batches` drives a backend over length-sorted batches and, on an accelerator, halves the
batch when it runs out of memory.

Measured on the 2-core AVX-512/AMX machine of ``benchmarks/results/`` (see ``benchmarks/README.md``):

* bf16 autocast reranks 2.2-2.5x faster than fp32 on the xsmall/small shapes, and moves scores far less than
  int8 (Spearman 0.9995 vs 0.947 against fp32 on real encoder weights).
* Batches of about :data:`CPU_TOKEN_BUDGET` tokens (pairs x padded length) were 20-40% faster on CPU than
  batches of 4,096-16,384 tokens.
* ONNX Runtime int8 (dynamic quantisation) was 1.6-1.7x torch fp32 but 0.7x bf16 on this CPU. On CPUs without
  native bf16 it is expected to be the fastest choice (int8 dot products only need AVX-512 VNNI / AVX-VNNI), but
  that was not measured here. ONNX fp32 was no faster than torch fp32.

Test-size models (hidden width below :data:`LOW_PRECISION_MIN_HIDDEN`) stay in fp32 under ``"auto"``. This is a
policy, not a speed finding (bf16 was 1.5x faster on them too): they exist for tests and demos, where exact,
reproducible scores matter more than speed, and their near-constant random scores would reorder under any
rounding.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from jp_rerank._deprecation import moved
from jp_rerank.rerank.pairs import EncodedPair, length_sorted_batches
from jp_rerank.runtime import (
    LOW_PRECISION_MIN_HIDDEN,
    TorchPrecision,
    autocast,
    cpu_supports_bf16,
    low_precision_for,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CPU_TOKEN_BUDGET",
    "LOW_PRECISION_MIN_HIDDEN",
    "BackendOption",
    "InferenceBackend",
    "Precision",
    "PrecisionOption",
    "ScoringBackend",
    "ScoringPlan",
    "TorchBackend",
    "cpu_supports_bf16",
    "default_token_budget",
    "pad_batch",
    "plan_scoring",
    "run_batches",
]

logger = logging.getLogger(__name__)

__getattr__ = moved(__name__, {"BackendName": "jp_rerank.rerank.backends:InferenceBackend"})

Precision = TorchPrecision
"""Precisions of the torch backend (:data:`jp_rerank.runtime.TorchPrecision`)."""

PrecisionOption = Literal["auto", "fp32", "bf16", "fp16", "int8"]
"""What a caller may ask for: ``"int8"`` needs the ONNX backend; ``"auto"`` is decided by :func:`plan_scoring`."""

InferenceBackend = Literal["torch", "onnx"]
"""Backends that score pairs (not to be confused with the vector-index backends of :mod:`jp_rerank.index`)."""

BackendOption = Literal["auto", "torch", "onnx"]
"""What a caller may ask for; ``"auto"`` is decided by :func:`plan_scoring`."""


CPU_TOKEN_BUDGET = 2048
"""Default tokens per forward pass on CPU (measured: smaller batches stay in cache; see the module notes)."""

_CUDA_MAX_TOKEN_BUDGET = 65536
_CUDA_MIN_TOKEN_BUDGET = 1024


class ScoringBackend(Protocol):
    """Computes logits ``(n, num_labels)`` for a batch of encoded pairs."""

    name: str

    def logits(self, batch: Sequence[EncodedPair]) -> np.ndarray:
        """Return float32 logits, one row per pair, in batch order."""
        ...


@dataclass(frozen=True)
class ScoringPlan:
    """Which backend scores pairs, at which precision.

    Attributes:
        backend: ``"torch"`` or ``"onnx"``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (torch) or ``"fp32"``, ``"int8"`` (onnx).
        reason: Why it was chosen (shown in logs and benchmark output).

    Example:
        >>> plan_scoring("torch", "fp32", "cpu", hidden_size=384)
        ScoringPlan(backend='torch', precision='fp32', reason='as requested')
    """

    backend: InferenceBackend
    precision: Literal["fp32", "bf16", "fp16", "int8"]
    reason: str

    @property
    def label(self) -> str:
        """Short name such as ``"torch-bf16"`` or ``"onnx-int8"``."""
        return f"{self.backend}-{self.precision}"


def plan_scoring(
    backend: BackendOption,
    precision: PrecisionOption,
    device: str,
    *,
    hidden_size: int | None,
    onnx_int8_ready: bool = False,
) -> ScoringPlan:
    """Decide the backend and precision.

    ``"auto"`` rules: on CUDA, torch with bf16 (fp16 where bf16 is unsupported); on a CPU with native bf16,
    torch bf16; elsewhere torch fp32, or ONNX int8 when an int8 export is already cached (``jp-rerank export``)
    and ONNX Runtime is installed. Models narrower than :data:`LOW_PRECISION_MIN_HIDDEN` stay in fp32.
    Explicit choices are kept as given.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"onnx"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"``.
        device: Resolved device string (``"cpu"``, ``"cuda:0"``...).
        hidden_size: The model's hidden width, if known.
        onnx_int8_ready: Whether an int8 ONNX export of this model is cached and ONNX Runtime is importable.

    Returns:
        The plan.

    Raises:
        ValueError: An unknown option, or a combination no backend offers (``onnx`` with bf16/fp16, ``int8``
            with torch, ``onnx`` on a GPU).

    Example:
        >>> plan_scoring("auto", "auto", "cpu", hidden_size=32).label
        'torch-fp32'
    """
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'onnx', got {backend!r}")
    if precision not in ("auto", "fp32", "bf16", "fp16", "int8"):
        raise ValueError(f"precision must be auto, fp32, bf16, fp16 or int8, got {precision!r}")
    kind = device.split(":", 1)[0]
    if backend == "onnx" and precision in ("bf16", "fp16"):
        raise ValueError(f"the onnx backend runs fp32 or int8, not {precision}; use backend='torch' for {precision}")
    if backend == "torch" and precision == "int8":
        raise ValueError("int8 needs the onnx backend: use backend='onnx' (or 'auto') with precision='int8'")
    if kind != "cpu" and (backend == "onnx" or precision == "int8"):
        raise ValueError(f"the onnx backend runs on CPU only, not on {device!r}")
    if precision == "int8":
        return ScoringPlan("onnx", "int8", "as requested")
    if backend == "onnx":
        return ScoringPlan("onnx", "int8" if precision == "auto" else "fp32", "as requested")
    if precision != "auto":
        return ScoringPlan("torch", precision, "as requested")
    low, why = low_precision_for(device, hidden_size=hidden_size)
    small = hidden_size is not None and hidden_size < LOW_PRECISION_MIN_HIDDEN
    if low == "fp32" and not small and kind == "cpu" and backend == "auto" and onnx_int8_ready:
        return ScoringPlan("onnx", "int8", "CPU without native bf16 and a cached int8 export: onnx int8")
    return ScoringPlan("torch", low, why)


def default_token_budget(device: str, model_config: Any = None) -> int:
    """Tokens per forward pass when the caller gives none: :data:`CPU_TOKEN_BUDGET` on CPU, by free memory on CUDA.

    On CUDA the budget leaves half the free memory for activations of about
    ``2 bytes x (intermediate + heads x 512)`` per token and layer group; :func:`run_batches` halves it on
    out-of-memory anyway.

    Example:
        >>> default_token_budget("cpu")
        2048
    """
    if not device.startswith("cuda"):
        return CPU_TOKEN_BUDGET
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    hidden = int(getattr(model_config, "hidden_size", 1024) or 1024)
    inner = int(getattr(model_config, "intermediate_size", 4 * hidden) or 4 * hidden)
    heads = int(getattr(model_config, "num_attention_heads", 16) or 16)
    per_token = 2 * (inner + heads * 512 + 4 * hidden) * 4  # a few live activations at 2 bytes each
    budget = int(free * 0.5 // per_token)
    return max(_CUDA_MIN_TOKEN_BUDGET, min(_CUDA_MAX_TOKEN_BUDGET, budget))


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
