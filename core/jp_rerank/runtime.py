"""Where and at which precision models run: device choice, native-bf16 detection, torch autocast, CPU threads.

Shared by every model-backed engine (the reranker and the embedders), so the same CPU gets the same decision
whatever the model. torch is imported only when a device must be probed or autocast entered.

Measured on the 2-core AVX-512/AMX machine of ``benchmarks/results/``: bf16 autocast ran the reranker shapes
2.2-2.5x faster than fp32 and moved scores far less than int8 (Spearman 0.9995 vs 0.947 against fp32 on real
encoder weights). On CPUs without native bf16, bf16 is emulated and slower than fp32, so it is never picked there.

CPU threads: torch runs each operation on an intra-op thread pool sized to the cores it sees. On a machine whose
cores are shared (other processes, a CPU quota in a container), those threads wait on each other: on this project's
shared 2-core machine a 48-passage rerank with the real 7-layer ja-ce-mini took 8.3 s with torch's 2 threads and
3.2 s with one (median of 5). :func:`set_torch_threads` (``num_threads=`` of every engine, ``jp-rerank --threads``)
sets the pool size.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, Literal, TypeAlias

__all__ = [
    "TorchPrecision",
    "autocast",
    "autocast_dtype",
    "cpu_supports_bf16",
    "cuda_low_precision",
    "low_precision_for",
    "resolve_device",
    "set_torch_threads",
]

logger = logging.getLogger(__name__)

TorchPrecision: TypeAlias = Literal["fp32", "bf16", "fp16"]
"""Precisions torch runs at (``bf16`` / ``fp16`` through autocast)."""

_TRUE = {"1", "true", "yes", "on"}
_FLAGS = _TRUE | {"0", "false", "no", "off"}


_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|hpu|npu|meta)(:\d+)?")


def resolve_device(device: str | None = None) -> str:
    """Return ``device`` or pick one: ``"cuda"`` when available, else ``"mps"``, else ``"cpu"``.

    Raises:
        ValueError: If ``device`` is given but is not a torch device name (``cpu``, ``cuda``, ``mps``, ``xpu``,
            ``hpu``, ``npu``, ``meta``, with an optional ``:index``).

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if device is not None:
        if not isinstance(device, str) or not _DEVICE.fullmatch(device.strip()):
            raise ValueError(
                f"device must name a torch device such as 'cpu', 'cuda', 'cuda:0' or 'mps', got {device!r}"
            )
        return device.strip()
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


def low_precision_for(device: str) -> tuple[TorchPrecision, str]:
    """The fastest faithful torch precision on ``device``, and why.

    CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 where the CPU has native bf16, else fp32. Other
    devices (MPS): fp32. The same for every model size: code that needs exact fp32 scores asks for ``"fp32"``.

    Example:
        >>> low_precision_for("mps")
        ('fp32', 'no faster precision available: fp32')
    """
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


def autocast_dtype(precision: TorchPrecision) -> Any:
    """The torch dtype autocast runs ``precision`` in: ``torch.bfloat16``, ``torch.float16``, or ``None`` for fp32.

    Example:
        >>> autocast_dtype("fp32") is None
        True
    """
    if precision == "fp32":
        return None
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float16


@contextmanager
def autocast(device_type: str, precision: TorchPrecision) -> Iterator[None]:
    """Run the block under torch autocast to ``precision`` (nothing for ``"fp32"``).

    Example:
        >>> with autocast("cpu", "fp32"):
        ...     pass
    """
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    import torch

    with torch.autocast(device_type, dtype=dtype):
        yield


def set_torch_threads(num_threads: int) -> int:
    """Set the number of torch intra-op CPU threads for the whole process (``torch.set_num_threads``).

    It is one setting per process: the last value set wins, whichever engine set it. Use the number of cores the
    process really has to itself: 1 or 2 on a shared machine or a container with a CPU quota (torch counts the
    host's cores there), where too many threads make every call several times slower.

    Args:
        num_threads: Threads, at least 1.

    Returns:
        The previous setting.

    Raises:
        ValueError: If ``num_threads`` is not a positive int.

    Example:
        >>> previous = set_torch_threads(1)
        >>> _ = set_torch_threads(previous)
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads <= 0:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    import torch

    previous = int(torch.get_num_threads())
    if previous != num_threads:
        torch.set_num_threads(num_threads)
        logger.info("torch uses %d CPU threads (was %d)", num_threads, previous)
    return previous
