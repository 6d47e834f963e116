"""Where and at which precision models run: device choice, native-bf16 detection, torch autocast.

Shared by every model-backed engine (the reranker and the embedders), so the same CPU gets the same decision
whatever the model. torch is imported only when a device must be probed or autocast entered.

Measured on the 2-core AVX-512/AMX machine of ``benchmarks/results/``: bf16 autocast ran the reranker shapes
2.2-2.5x faster than fp32 and moved scores far less than int8 (Spearman 0.9995 vs 0.947 against fp32 on real
encoder weights). On CPUs without native bf16, bf16 is emulated and slower than fp32, so it is never picked there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Literal, TypeAlias

__all__ = [
    "LOW_PRECISION_MIN_HIDDEN",
    "TorchPrecision",
    "autocast",
    "cpu_supports_bf16",
    "cuda_low_precision",
    "low_precision_for",
    "resolve_device",
]

TorchPrecision: TypeAlias = Literal["fp32", "bf16", "fp16"]
"""Precisions torch runs at (``bf16`` / ``fp16`` through autocast)."""

_TRUE = {"1", "true", "yes", "on"}
_FLAGS = _TRUE | {"0", "false", "no", "off"}


def resolve_device(device: str | None = None) -> str:
    """Return ``device`` or pick one: ``"cuda"`` when available, else ``"mps"``, else ``"cpu"``.

    Raises:
        ValueError: If ``device`` is given but empty or not a string.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if device is not None:
        if not isinstance(device, str) or not device.strip():
            raise ValueError(f"device must be a non-empty string such as 'cpu' or 'cuda:0', got {device!r}")
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@cache
def cpu_supports_bf16() -> bool:
    """Tell whether this CPU computes bf16 natively (x86 ``avx512_bf16`` or ``amx_bf16``; Linux only).

    Set ``JP_RERANK_CPU_BF16=0`` / ``1`` to override the detection (the result is cached per process).

    Example:
        >>> isinstance(cpu_supports_bf16(), bool)
        True
    """
    forced = os.environ.get("JP_RERANK_CPU_BF16", "").strip().lower()
    if forced in _FLAGS:
        return forced in _TRUE
    from jp_rerank.hardware import machine_info

    features = machine_info(include_torch=False).cpu_features
    return bool(features.get("avx512_bf16") or features.get("amx_bf16"))


LOW_PRECISION_MIN_HIDDEN = 128
"""Models narrower than this (test-size models) stay in fp32 under ``"auto"``: a policy for exact, reproducible
test scores, not a speed finding (bf16 was 1.5x faster on them too)."""


def low_precision_for(device: str, *, hidden_size: int | None = None) -> tuple[TorchPrecision, str]:
    """The fastest faithful torch precision on ``device``, and why.

    CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 where the CPU has native bf16, else fp32. Other
    devices (MPS): fp32. Models narrower than :data:`LOW_PRECISION_MIN_HIDDEN` stay in fp32.

    Example:
        >>> low_precision_for("cpu", hidden_size=32)
        ('fp32', 'hidden size 32 < 128: fp32')
    """
    if hidden_size is not None and hidden_size < LOW_PRECISION_MIN_HIDDEN:
        return "fp32", f"hidden size {hidden_size} < {LOW_PRECISION_MIN_HIDDEN}: fp32"
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        low = cuda_low_precision()
        return low, f"CUDA: {low} autocast"
    if kind == "cpu" and cpu_supports_bf16():
        return "bf16", "CPU with native bf16: bf16 autocast"
    return "fp32", "no faster precision available: fp32"


def cuda_low_precision() -> TorchPrecision:
    """``"bf16"`` where the GPU supports it (Ampere and newer), else ``"fp16"``."""
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"


@contextmanager
def autocast(device_type: str, precision: TorchPrecision) -> Iterator[None]:
    """Run the block under torch autocast to ``precision`` (nothing for ``"fp32"``).

    Example:
        >>> with autocast("cpu", "fp32"):
        ...     pass
    """
    if precision == "fp32":
        yield
        return
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type, dtype=dtype):
        yield
