"""Facts about the machine a benchmark ran on, for result files and reports.

Reads ``/proc/cpuinfo`` and ``/proc/meminfo`` on Linux and falls back to :mod:`platform` / :mod:`os` elsewhere
(fields it cannot learn are ``None``). torch is imported only when asked for and installed.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from jp_rerank.extras import is_available

__all__ = ["CPU_FEATURES", "MachineInfo", "machine_info"]

logger = logging.getLogger(__name__)

CPU_FEATURES: tuple[str, ...] = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
"""``/proc/cpuinfo`` flags that matter for CPU inference speed (bf16/int8 matrix units and vector widths)."""


@dataclass(frozen=True)
class MachineInfo:
    """Hardware and software a run used.

    Attributes:
        cpu_model: CPU model name.
        logical_cores: Logical CPUs in the machine.
        usable_cores: CPUs this process may run on (affinity / container limits).
        physical_cores: Physical cores, when ``/proc/cpuinfo`` tells.
        ram_gb: Total memory in GiB, when known.
        cpu_features: Which of :data:`CPU_FEATURES` the CPU has (Linux only; empty elsewhere).
        os: Operating system and release.
        python: Python version.
        torch: torch version, if torch was inspected and installed.
        torch_threads: ``torch.get_num_threads()``, if torch was inspected.
        accelerator: ``"cuda:<name>"`` / ``"mps"`` if torch sees one, else ``None``.

    Example:
        >>> info = machine_info(include_torch=False)
        >>> info.logical_cores >= 1
        True
    """

    cpu_model: str
    logical_cores: int
    usable_cores: int
    physical_cores: int | None = None
    ram_gb: float | None = None
    cpu_features: dict[str, bool] = field(default_factory=dict)
    os: str = ""
    python: str = ""
    torch: str | None = None
    torch_threads: int | None = None
    accelerator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MachineInfo:
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored (files from newer versions).

        Raises:
            ValueError: If a required field is missing.
        """
        known = {f.name for f in fields(cls)}
        missing = {"cpu_model", "logical_cores", "usable_cores"} - data.keys()
        if missing:
            raise ValueError(f"hardware record lacks {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        """One line for report headers, e.g. ``"Intel Xeon, 2 cores, 23.5 GiB, avx512_bf16 amx_bf16"``."""
        parts = [self.cpu_model, f"{self.usable_cores} cores"]
        if self.ram_gb is not None:
            parts.append(f"{self.ram_gb:.1f} GiB")
        flags = [name for name in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if self.cpu_features.get(name)]
        if flags:
            parts.append(" ".join(flags))
        if self.torch:
            parts.append(f"torch {self.torch} ({self.torch_threads} threads)")
        if self.accelerator:
            parts.append(self.accelerator)
        return ", ".join(parts)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo(text: str) -> tuple[str | None, int | None, set[str]]:
    model: str | None = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key in {"flags", "Features"} and not flags:  # x86 / ARM
            flags = set(value.split())
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    return model, (len(cores) or None), flags


def _ram_gb(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return round(int(parts[1]) / 1024**2, 1)  # kB → GiB
    return None


def _usable_cores(logical: int) -> int:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS / Windows
        usable = logical
    quota = _read("/sys/fs/cgroup/cpu.max").split()  # cgroup v2: "<quota> <period>" or "max <period>"
    if len(quota) == 2 and quota[0].isdigit() and quota[1].isdigit() and int(quota[1]) > 0:
        usable = min(usable, max(1, int(quota[0]) // int(quota[1])))
    return usable


def _torch_facts() -> tuple[str | None, int | None, str | None]:
    if not is_available("torch"):
        return None, None, None
    import torch

    accelerator = None
    if torch.cuda.is_available():
        accelerator = f"cuda:{torch.cuda.get_device_name(0)}"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        accelerator = "mps"
    return str(torch.__version__), int(torch.get_num_threads()), accelerator


def machine_info(*, include_torch: bool = True) -> MachineInfo:
    """Describe this machine.

    Args:
        include_torch: Also record the torch version, its thread count and any accelerator. This imports torch
            (a few seconds the first time) when it is installed; it is skipped otherwise.

    Returns:
        The facts; those that cannot be learned on this platform are ``None`` or empty.

    Example:
        >>> machine_info(include_torch=False).python == platform.python_version()
        True
    """
    model, physical, flags = _cpuinfo(_read("/proc/cpuinfo"))
    logical = os.cpu_count() or 1
    torch_version, threads, accelerator = _torch_facts() if include_torch else (None, None, None)
    return MachineInfo(
        cpu_model=model or platform.processor() or platform.machine() or "unknown",
        logical_cores=logical,
        usable_cores=_usable_cores(logical),
        physical_cores=physical,
        ram_gb=_ram_gb(_read("/proc/meminfo")),
        cpu_features={name: name in flags for name in CPU_FEATURES} if flags else {},
        os=f"{platform.system()} {platform.release()}".strip(),
        python=platform.python_version(),
        torch=torch_version,
        torch_threads=threads,
        accelerator=accelerator,
    )
