"""Which backend and precision score pairs: the plan for this device and CPU class, and why.

:func:`plan_scoring` decides which backend (torch, ONNX Runtime, OpenVINO) and precision a
:class:`~jp_rerank.Reranker` uses when it is told ``"auto"`` (by :func:`cpu_class`, see :data:`AUTO_ON_CPU`), and
checks explicit choices; :func:`default_token_budget` sizes its batches.

Evidence behind :data:`AUTO_ON_CPU` (``benchmarks/README.md`` has the tables). A plan qualifies for ``auto`` when it
keeps the rankings of torch fp32 on ja-ce-mini, a real trained Japanese cross-encoder, over seeded JSQuAD questions x
their BM25 candidates: Spearman >= 0.99 for every question, nDCG@10 within 0.005, and the top-3 set unchanged for
>= 95 % of questions (a user sees the top 3; a Spearman of 0.997 can hide a changed top 3). Then the fastest wins.

* AMD EPYC Zen 4 (AVX-512 BF16 + VNNI, no AMX), 2 cores, 40 questions x 50 candidates
  (``benchmarks/results/cpu_plans-avx512_bf16.md``): torch bf16 1.31x torch fp32, Spearman min 0.9988, top-3 set
  unchanged for every question: **the choice there**. OpenVINO static int8 (NNCF, calibrated on Japanese pairs) was
  2.06x (3.4-5.4x in earlier runs) but changed the top-3 set for 18 % of the questions (Spearman min 0.985): not
  picked. ONNX Runtime dynamic int8: top 3 unchanged for 60 %. Exact OpenVINO / ONNX fp32: 1.02-1.08x. VNNI CPUs
  without native bf16 had OpenVINO int8 on the strength of Zen 4's int8; with that int8 failing the top-3
  criterion they get torch fp32.
* AMD EPYC Zen 3 (AVX2 + FMA only: no VNNI, no bf16), measured (``benchmarks/results/cpu_plans-avx2.md`` and issue
  21's table): int8 products go through ``VPMADDUBSW``, whose 16-bit sums saturate. On ja-ce-mini, against torch
  fp32: OpenVINO int8 (7-bit weights, NNCF ``overflow_fix``) Spearman mean 0.993, min 0.989, 0.77-1.36x the speed
  (four runs; 0.77x on idle cores); ONNX int8 0.90-0.987 depending on the weight layout. No int8 plan keeps the
  criterion, so ``auto`` stays on torch fp32 there; ONNX fp32 and OpenVINO fp32 are exact and 0.91-1.2x torch fp32
  (opt-in: ``backend="onnx", precision="fp32"``, exported once).
* Intel AMX (first machine of this project): torch bf16 autocast 2.2-2.5x torch fp32 on the xsmall/small shapes;
  kept as the choice there (OpenVINO int8 was not measured on AMX).
* Batches of about :data:`CPU_TOKEN_BUDGET` tokens (pairs x padded length) were 20-40% faster on CPU than
  batches of 4,096-16,384 tokens.

Model size does not change the choice; tests that need exact scores ask for ``precision="fp32"``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jp_rerank.extras import is_available
from jp_rerank.runtime import TorchPrecision, cpu_supports_bf16, low_precision_for

__all__ = [
    "AUTO_ON_CPU",
    "CPU_TOKEN_BUDGET",
    "UNSUPPORTED",
    "BackendOption",
    "CpuClass",
    "InferenceBackend",
    "Int8Kernel",
    "Precision",
    "PrecisionOption",
    "ScoringPlan",
    "cpu_class",
    "cpu_supports_bf16",
    "default_threads",
    "default_token_budget",
    "int8_file_key",
    "int8_kernel",
    "plan_scoring",
]

Precision = TorchPrecision
"""Precisions of the torch backend (:data:`jp_rerank.runtime.TorchPrecision`)."""

PrecisionOption = Literal["auto", "fp32", "bf16", "fp16", "int8"]
"""What a caller may ask for: ``"int8"`` needs ONNX Runtime or OpenVINO; ``"auto"`` is decided by
:func:`plan_scoring`."""

InferenceBackend = Literal["torch", "onnx", "openvino"]
"""Backends that score pairs (not to be confused with the vector-index backends of :mod:`jp_rerank.index`)."""

BackendOption = Literal["auto", "torch", "onnx", "openvino"]
"""What a caller may ask for; ``"auto"`` is decided by :func:`plan_scoring`."""

PlanPrecision = Literal["fp32", "bf16", "fp16", "int8"]

BACKEND_ENV = "JP_RERANK_BACKEND"
"""Environment variable that replaces ``backend="auto"``'s choice process-wide: ``torch``, ``onnx``,
``openvino``, optionally with a precision (``torch-fp32``, ``openvino-int8``). Explicit arguments still win."""

_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnx": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}
_CPU_ONLY = ("onnx", "openvino")
_NEEDS: dict[str, tuple[str, ...]] = {"torch": (), "onnx": ("onnxruntime", "onnx"), "openvino": ("openvino",)}


CPU_TOKEN_BUDGET = 2048
"""Default tokens per forward pass on CPU (measured: smaller batches stay in cache; see the module notes)."""

_CUDA_MAX_TOKEN_BUDGET = 65536
_CUDA_MIN_TOKEN_BUDGET = 1024


@dataclass(frozen=True)
class ScoringPlan:
    """Which backend scores pairs, at which precision, and why.

    Attributes:
        backend: ``"torch"``, ``"onnx"`` or ``"openvino"``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (torch), ``"fp32"``/``"int8"`` (onnx) or
            ``"fp32"``/``"bf16"``/``"int8"`` (openvino).
        reason: Why it was chosen (shown in logs, ``Reranker.scoring_plan`` and benchmark output).

    Example:
        >>> plan_scoring("torch", "fp32", "cpu")
        ScoringPlan(backend='torch', precision='fp32', reason='as requested')
    """

    backend: InferenceBackend
    precision: PlanPrecision
    reason: str

    @property
    def label(self) -> str:
        """Short name such as ``"torch-bf16"`` or ``"openvino-int8"``."""
        return f"{self.backend}-{self.precision}"


CpuClass = Literal["amx", "avx512_bf16", "vnni", "avx2", "baseline"]
"""What matters of an x86 CPU for inference speed: native bf16 matrix units (AMX, AVX-512 BF16), int8 dot
products (AVX-512 VNNI / AVX-VNNI), plain AVX2 + FMA, or less."""

AUTO_ON_CPU: dict[str, tuple[tuple[InferenceBackend, PlanPrecision], ...]] = {
    "amx": (("torch", "bf16"),),
    "avx512_bf16": (("torch", "bf16"),),
    "vnni": (("torch", "fp32"),),
    "avx2": (("torch", "fp32"),),
    "baseline": (("torch", "fp32"),),
}
"""What ``backend="auto", precision="auto"`` picks on each CPU class, in order of preference (the first whose
packages are installed and that runs the model). See the module notes for the measurements behind it. Only torch
plans: no export plan kept the top 3 on a measured CPU, so ``auto`` never makes an export and a first call never
stalls on a calibration; ONNX / OpenVINO are opt-in (``backend=``, ``JP_RERANK_BACKEND``) and export on first use
or ahead of time (``jp-rerank export``)."""


def cpu_class(features: dict[str, bool] | None = None) -> CpuClass:
    """Classify this CPU (or the given ``/proc/cpuinfo`` flags) for :data:`AUTO_ON_CPU`.

    ``JP_RERANK_CPU_BF16=1`` (see :func:`jp_rerank.runtime.cpu_supports_bf16`) counts as AVX-512 BF16.

    Example:
        >>> cpu_class({"avx2": True, "fma": True})
        'avx2'
    """
    if features is None:
        if cpu_supports_bf16():
            from jp_rerank.hardware import machine_info

            has_amx = bool(machine_info(include_torch=False).cpu_features.get("amx_bf16"))
            return "amx" if has_amx else "avx512_bf16"
        from jp_rerank.hardware import machine_info

        features = machine_info(include_torch=False).cpu_features
    if features.get("amx_bf16"):
        return "amx"
    if features.get("avx512_bf16"):
        return "avx512_bf16"
    if features.get("avx512_vnni") or features.get("avx_vnni"):
        return "vnni"
    if features.get("avx2") and features.get("fma"):
        return "avx2"
    return "baseline"


Int8Kernel = Literal["vnni", "avx2"]
"""How a CPU multiplies int8: ``"vnni"`` (AVX-512 VNNI, AVX-VNNI, AMX-INT8: 32-bit sums of u8 x s8 products) or
``"avx2"`` (``VPMADDUBSW``, whose 16-bit sums of two u8 x s8 products saturate: weights must keep to 7 bits)."""


def int8_kernel(cls: CpuClass | None = None) -> Int8Kernel:
    """The int8 kernel of this CPU (or of CPU class ``cls``): decides how int8 exports are quantised.

    Without VNNI, full-range int8 weights can overflow the 16-bit pair sums of ``VPMADDUBSW`` and scores drift;
    int8 exports made for the ``"avx2"`` kernel keep weights to 7 bits (ONNX Runtime ``reduce_range`` with a scale
    per output channel, NNCF ``overflow_fix``) and live in files of their own, so an export folder that moves
    between CPU kinds is never used with the wrong kernel.

    Example:
        >>> int8_kernel("avx2"), int8_kernel("avx512_bf16")
        ('avx2', 'vnni')
    """
    return "vnni" if (cls or cpu_class()) in ("amx", "avx512_bf16", "vnni") else "avx2"


def int8_file_key(kernel: Int8Kernel) -> str:
    """The key of the int8 file in an export's manifest for ``kernel`` (see :func:`int8_kernel`).

    Example:
        >>> int8_file_key("vnni"), int8_file_key("avx2")
        ('int8', 'int8-avx2')
    """
    return "int8" if kernel == "vnni" else "int8-avx2"


def default_threads() -> int:
    """Threads an export backend uses by default: torch's thread count when torch is loaded, else the usable cores."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _installed(backend: str) -> bool:
    return all(is_available(module) for module in _NEEDS[backend])


def _from_env(backend: BackendOption, precision: PrecisionOption) -> tuple[str, str]:
    """Apply :data:`BACKEND_ENV` to ``"auto"`` arguments."""
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not forced or backend != "auto":
        return backend, precision
    name, _, wanted = forced.partition("-")
    if name not in _PRECISIONS or (wanted and wanted not in _PRECISIONS[name]):
        raise ValueError(f"{BACKEND_ENV}={forced!r}: use torch, onnx or openvino, optionally -<precision>")
    return name, (wanted or precision) if precision == "auto" else precision


UNSUPPORTED: dict[str, dict[str, str]] = {
    "openvino-bf16": {
        "modernbert": "its export uses eager attention, whose padding rows see only the mask's float32 minimum; in "
        "bf16 that is -inf, a padding row of a short pair batched with a long one becomes NaN and spreads",
    },
}
"""Backend-precision labels (``"openvino-bf16"``; a bare backend name means every precision) and the architectures
(``config.model_type``) they do not run, with why: ``auto`` passes over them, an explicit choice is refused."""


def _runs(backend: str, precision: str, architecture: str | None) -> bool:
    return architecture is None or not any(
        architecture in UNSUPPORTED.get(key, {}) for key in (backend, f"{backend}-{precision}")
    )


def _why_not(backend: str, precision: str, architecture: str) -> str:
    for key in (backend, f"{backend}-{precision}"):
        if architecture in UNSUPPORTED.get(key, {}):
            return f"the {key} backend does not run {architecture} models: {UNSUPPORTED[key][architecture]}"
    return ""  # pragma: no cover - only called when _runs is false


def plan_scoring(
    backend: BackendOption,
    precision: PrecisionOption,
    device: str,
    *,
    cpu: CpuClass | None = None,
    installed: Callable[[str], bool] = _installed,
    architecture: str | None = None,
) -> ScoringPlan:
    """Decide the backend and precision.

    ``"auto"`` rules: on CUDA, torch with bf16 (fp16 where bf16 is unsupported); on a CPU, the first installed
    choice of :data:`AUTO_ON_CPU` for its :func:`cpu_class`. ``JP_RERANK_BACKEND`` replaces an ``"auto"``
    backend. A backend given with ``precision="auto"`` gets its fastest faithful precision on this machine; an
    ``"auto"`` backend with ``precision="int8"`` gets OpenVINO (else ONNX Runtime). Explicit choices are kept.

    Args:
        backend: ``"auto"``, ``"torch"``, ``"onnx"`` or ``"openvino"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"``.
        device: Resolved device string (``"cpu"``, ``"cuda:0"``...).
        cpu: The CPU class (default: this machine's).
        architecture: The model's ``config.model_type``; see :data:`UNSUPPORTED`.
        installed: Whether a backend's packages are importable (for tests).

    Returns:
        The plan.

    Raises:
        ValueError: An unknown option, or a combination no backend offers (``onnx`` with bf16/fp16, ``int8``
            with torch, ``openvino`` with fp16, ``onnx``/``openvino`` on a GPU).

    Example:
        >>> plan_scoring("auto", "auto", "cpu", cpu="baseline").label
        'torch-fp32'
        >>> plan_scoring("openvino", "auto", "cpu", cpu="avx2").label  # a backend named: its fastest precision
        'openvino-int8'
    """
    if backend not in ("auto", *_PRECISIONS):
        raise ValueError(f"backend must be 'auto', 'torch', 'onnx' or 'openvino', got {backend!r}")
    if precision not in ("auto", "fp32", "bf16", "fp16", "int8"):
        raise ValueError(f"precision must be auto, fp32, bf16, fp16 or int8, got {precision!r}")
    chosen_backend, chosen_precision = _from_env(backend, precision)
    kind = device.split(":", 1)[0]
    _check_combination(chosen_backend, chosen_precision, device, architecture)
    reason = "as requested" if backend != "auto" else f"{BACKEND_ENV}"
    if chosen_backend != "auto" and chosen_precision != "auto":
        return ScoringPlan(chosen_backend, chosen_precision, reason)  # type: ignore[arg-type]
    if kind != "cpu" and chosen_backend in ("torch", "auto") and chosen_precision == "auto":
        low, why = low_precision_for(device)
        return ScoringPlan("torch", low, why)
    cls = cpu or cpu_class()
    if chosen_backend == "torch":
        native = cls in ("amx", "avx512_bf16")
        return ScoringPlan(
            "torch", "bf16" if native else "fp32", f"torch on a {cls} CPU: {'bf16' if native else 'fp32'}"
        )
    if chosen_backend in _CPU_ONLY:
        order = [p for b, p in AUTO_ON_CPU[cls] if b == chosen_backend] + ["int8", "fp32"]
        pick = next(p for p in order if p in _PRECISIONS[chosen_backend])
        return ScoringPlan(chosen_backend, pick, f"{chosen_backend} on a {cls} CPU: {pick}")  # type: ignore[arg-type]
    if chosen_precision == "int8":
        runs = installed("openvino") and _runs("openvino", "int8", architecture)
        name: InferenceBackend = "openvino" if runs else "onnx"
        return ScoringPlan(name, "int8", f"int8 asked for: {name}")
    if chosen_precision != "auto":
        return ScoringPlan("torch", chosen_precision, "as requested")  # type: ignore[arg-type]
    return _auto_on_cpu(cls, installed, architecture)


def _check_combination(backend: str, precision: str, device: str, architecture: str | None) -> None:
    """Refuse a backend / precision / device combination no backend offers, naming what to use instead."""
    on_cpu = device.split(":", 1)[0] == "cpu"
    if backend != "auto":
        if precision != "auto" and precision not in _PRECISIONS[backend]:
            hint = "use backend='openvino' or 'onnx'" if precision == "int8" else "use backend='torch'"
            raise ValueError(
                f"the {backend} backend runs {', '.join(_PRECISIONS[backend])}, not {precision}; {hint} for {precision}"
            )
        if not on_cpu and backend in _CPU_ONLY:
            raise ValueError(f"the {backend} backend runs on CPU only, not on {device!r}")
        if precision != "auto" and not _runs(backend, precision, architecture):
            raise ValueError(f"{_why_not(backend, precision, str(architecture))}; use another precision")
    if not on_cpu and precision == "int8":
        raise ValueError(f"int8 runs on CPU only (openvino or onnx), not on {device!r}")


def _auto_on_cpu(cls: CpuClass, installed: Callable[[str], bool], architecture: str | None) -> ScoringPlan:
    """The first choice of :data:`AUTO_ON_CPU` for ``cls`` that is installed and runs the model's architecture."""
    for name, pick in AUTO_ON_CPU[cls]:
        if not _runs(name, pick, architecture):
            continue
        if installed(name):
            why = _AUTO_REASONS.get((cls, name, pick), f"{cls} CPU: {name}-{pick}")
            passed = [f"{o}-{p}" for o, p in AUTO_ON_CPU[cls] if not _runs(o, p, architecture)]
            if passed:
                why = f"{cls} CPU, a {architecture} model ({', '.join(passed)} does not run it): {name}-{pick}"
            return ScoringPlan(name, pick, why)
    return ScoringPlan("torch", "fp32", "no faster backend installed: torch fp32")


_AUTO_REASONS: dict[tuple[str, str, str], str] = {
    ("amx", "torch", "bf16"): "CPU with AMX: torch bf16 autocast",
    ("avx512_bf16", "torch", "bf16"): "CPU with AVX-512 BF16: torch bf16 autocast (OpenVINO int8 changed the top 3, "
    "measured)",
    ("vnni", "torch", "fp32"): "CPU with VNNI but no native bf16: torch fp32 (no int8 plan keeps the top 3, measured "
    "on AVX-512 VNNI)",
    ("avx2", "torch", "fp32"): "AVX2 CPU without VNNI or native bf16: torch fp32 (no int8 plan keeps the rankings "
    "there, measured; exact ONNX / OpenVINO fp32 are opt-in)",
    ("baseline", "torch", "fp32"): "CPU without AVX2: torch fp32",
}


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
