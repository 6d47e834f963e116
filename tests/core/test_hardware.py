"""Machine facts: the record's round trip and summary, and /proc/cpuinfo parsing."""

from __future__ import annotations

import json

import pytest

from jp_rerank.hardware import CPU_FEATURES, MachineInfo, machine_info


def test_machine_info_round_trip_and_summary() -> None:
    info = machine_info(include_torch=False)
    assert info.logical_cores >= info.usable_cores >= 1
    assert info.torch is None
    assert set(info.cpu_features) <= set(CPU_FEATURES)
    assert MachineInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert f"{info.usable_cores} cores" in info.summary()
    with pytest.raises(ValueError, match="lacks"):
        MachineInfo.from_dict({"cpu_model": "x"})


def test_cpuinfo_parsing() -> None:
    from jp_rerank.hardware import _cpuinfo

    block = "model name\t: Test CPU\nflags\t\t: fpu avx2 avx512f amx_bf16\nphysical id\t: 0\ncore id\t: 0\n"
    text = f"processor\t: 0\n{block}\nprocessor\t: 1\n{block}"
    model, physical, flags = _cpuinfo(text)
    assert model == "Test CPU"
    assert physical == 1  # two hyperthreads on one core
    assert {"avx512f", "amx_bf16"} <= flags
