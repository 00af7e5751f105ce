from __future__ import annotations

import pytest

from hardnet_export import host


@pytest.mark.parametrize(
    ("flags", "isa"),
    [
        ({"sse4_2", "avx2", "fma"}, "avx2"),  # Zen 3
        ({"avx2", "avx512f", "avx512bw"}, "avx512"),  # Skylake-SP
        ({"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}, "avx512-vnni"),  # Zen 4
        ({"avx2", "avx_vnni"}, "avx-vnni"),  # Alder Lake
        ({"avx2", "avx512bw", "avx512_vnni", "amx_int8"}, "amx-int8"),  # Sapphire Rapids
        ({"fp", "asimd", "asimddp"}, "neon-dotprod"),  # Cortex-A78 (Jetson Orin)
        ({"fp", "asimd"}, "neon"),  # Cortex-A57
    ],
)
def test_int8_kernel_kind_from_cpu_flags(flags: set[str], isa: str) -> None:
    assert host.int8_isa(flags) == isa


def test_which_kinds_saturate() -> None:
    assert {isa for isa in host.INT8_ISAS if host.saturates(isa)} == {"avx2", "avx512"}
    with pytest.raises(ValueError, match=r"unknown int8 instruction set 'sse2'; known: amx-int8"):
        host.saturates("sse2")


def test_this_host() -> None:
    record = host.host_record()
    assert record["int8_isa"] == host.int8_isa() in host.INT8_ISAS
    assert record["int8_kernels"] == host.INT8_ISAS[record["int8_isa"]]
    assert record["cpu"] == host.cpu_model() and record["onnxruntime"]


def test_distribution_version_takes_the_first_installed_name() -> None:
    import numpy as np

    assert host.distribution_version("no-such-distribution-x", "numpy") == np.__version__
    assert host.distribution_version("no-such-distribution-x") is None
    assert host.distribution_version() is None


def test_arm64_counts_only_arm_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under qemu-user, /proc/cpuinfo is the x86 host's: an arm64 process must not take its
    AVX-512/AMX flags for its own (they would pick x86 int8 and bf16 rules); the auxiliary
    vector's features count instead."""
    import platform

    x86 = {"model name": "AMD EPYC", "flags": "avx2 avx512bw avx512_vnni avx512_bf16 amx_int8"}
    monkeypatch.setattr(host, "_cpuinfo", lambda: x86)
    monkeypatch.setattr(host, "_arm_hwcap_flags", lambda: frozenset({"asimd", "asimddp"}))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert host.cpu_flags() == {"asimd", "asimddp"}
    assert host.int8_isa() == "neon-dotprod" and not host.has_bf16()
    monkeypatch.setattr(host, "_arm_hwcap_flags", lambda: frozenset())
    assert host.int8_isa() == "neon"  # an aarch64 machine without readable features
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert host.int8_isa() == "amx-int8" and host.has_bf16()
