"""``meshtryoshka-train doctor | precompile | clear-cache`` and the doctor's known-bad rules."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from meshtryoshka_train.cli import main
from meshtryoshka_train.doctor import Finding, check_toolchain

GOOD = {
    "torch": "2.11.0+cu130",
    "torch_cuda": "13.0",
    "driver_cuda": (13, 0),
    "driver_note": "",
    "gpu": "NVIDIA H100 80GB HBM3",
    "arch": 90,
    "slangtorch": "1.3.22",
    "slangc": "/site/slangtorch/bin/slangc",
    "slangc_version": "2026.14.1",
    "nvrtc": "/site/nvidia/cu13/lib/libnvrtc.so.13",
    "nvrtc_version": (13, 0),
    "nvrtc_archs": [75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121],
    "loader": "nvrtc",
    "loader_used": "nvrtc",
    "loader_note": "default",
}


def levels(findings: list[Finding]) -> list[str]:
    return [f.level for f in findings]


@pytest.fixture
def caches(tmp_path, monkeypatch):
    paths = {}
    for package in ("SLANG_MARCHING_CUBES", "SLANG_RASTERIZER"):
        paths[package] = tmp_path / package.lower()
        monkeypatch.setenv(f"{package}_CACHE_DIR", str(paths[package]))
    build = paths["SLANG_MARCHING_CUBES"] / "nvrtc-sm90-0123456789abcdef0123"
    build.mkdir(parents=True)
    info = {"kernels": {"a": [], "b": [], "c": []}, "slangc": "2026.14.1", "nvrtc": "13.0"}
    (build / "kernels.json").write_text(json.dumps(info))
    (build / "kernels.cubin").write_bytes(b"\0" * 5000)
    return paths


def test_a_good_machine_has_no_findings_but_ok():
    assert check_toolchain(GOOD) == [
        Finding("ok", "kernels compile and run here with the nvrtc loader")
    ]


def test_cpu_torch_is_flagged_with_a_fix():
    tool = {**GOOD, "torch": "2.13.0+cpu", "torch_cuda": None, "arch": None, "gpu": None}
    tool.update(driver_cuda=None, loader_used=None, nvrtc=None, nvrtc_version=None, nvrtc_archs=[])
    (finding,) = check_toolchain(tool)
    assert finding.level == "problem" and "CPU-only build" in finding.text
    assert "download.pytorch.org/whl/cu" in finding.fix


def test_nvrtc_older_than_the_gpu_is_a_note_and_unsupported_gpu_a_problem():
    old = {**GOOD, "nvrtc_version": (12, 4), "nvrtc_archs": [50, 60, 70, 75, 80, 86, 89, 90]}
    findings = check_toolchain({**old, "arch": 100})
    assert levels(findings) == ["ok", "note"]
    assert (
        "older than this GPU (sm_100)" in findings[1].text and "PTX for sm_90" in findings[1].text
    )
    new = {**GOOD, "arch": 70}
    findings = check_toolchain(new)
    assert levels(findings) == ["problem"]
    assert "does not support this GPU (sm_70" in findings[0].text
    assert "nvidia-cuda-nvrtc-cu12" in findings[0].fix


def test_nvrtc_newer_than_the_driver_and_missing_nvrtc():
    findings = check_toolchain({**GOOD, "driver_cuda": (12, 8), "loader_used": "slangtorch"})
    assert levels(findings) == ["problem"]
    assert "newer than the driver's CUDA 12.8" in findings[0].text
    assert "nvidia-cuda-nvrtc-cu12" in findings[0].fix
    missing = {**GOOD, "torch_cuda": "12.8", "nvrtc": None, "nvrtc_version": None}
    findings = check_toolchain({**missing, "nvrtc_archs": [], "loader_used": "slangtorch"})
    assert levels(findings) == ["problem"]
    assert "no NVRTC found" in findings[0].text
    assert findings[0].fix.startswith("pip install nvidia-cuda-nvrtc-cu12")


def test_slangtorch_loader_pairs_from_the_compat_matrix():
    fallback = {**GOOD, "loader": "slangtorch", "loader_used": "slangtorch"}
    findings = check_toolchain({**fallback, "slangtorch": "1.3.7"})
    assert levels(findings) == ["problem"]
    assert "cannot build extensions with torch 2.11.0+cu130" in findings[0].text
    assert "slangtorch>=1.3.11" in findings[0].fix
    assert levels(check_toolchain({**fallback, "slangtorch": "1.3.7", "torch": "2.6.0"})) == ["ok"]
    findings = check_toolchain({**fallback, "torch": "2.13.0+cu130"})
    assert levels(findings) == ["ok", "note"]
    assert "slang-torch#50" in findings[1].text and "still builds" in findings[1].text
    assert levels(check_toolchain({**GOOD, "torch": "2.13.0+cu130"})) == ["ok"]  # nvrtc: no C++


def test_slangtorch_without_pkg_resources():
    old = {**GOOD, "slangtorch": "1.3.11", "slangtorch_needs_pkg_resources": True}
    findings = check_toolchain({**old, "pkg_resources": False})
    assert levels(findings) == ["ok", "note"] and "only the slangtorch fallback" in findings[1].text
    fallback = {**old, "pkg_resources": False, "loader": "slangtorch", "loader_used": "slangtorch"}
    findings = check_toolchain(fallback)
    assert levels(findings) == ["problem"] and "cannot even import" in findings[0].text
    assert "setuptools<81" in findings[0].fix
    assert levels(check_toolchain({**old, "pkg_resources": True})) == ["ok"]


def test_missing_slangtorch_and_old_slangtorch():
    findings = check_toolchain({**GOOD, "slangtorch": None, "slangc": None, "loader_used": None})
    assert levels(findings) == ["problem"] and findings[0].fix == "pip install slangtorch"
    findings = check_toolchain({**GOOD, "slangtorch": "1.2.0"})
    assert levels(findings) == ["problem"] and "older than the oldest tested" in findings[0].text


def test_doctor_on_this_machine(caches):
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    out = result.output
    for label in ("torch:", "driver:", "GPU:", "slangtorch:", "slangc:", "NVRTC:"):
        assert f"\n  {label}" in out
    assert out.count("  loader:  ") == 2
    assert f"cache: {caches['SLANG_MARCHING_CUBES']} (1 build(s), " in out
    assert "nvrtc-sm90-0123456789abcdef0123" in out and "3 kernels, slangc 2026.14.1" in out
    assert f"cache: {caches['SLANG_RASTERIZER']} (0 build(s), 0 B" in out
    assert "\nChecks\n" in out
    if not torch.cuda.is_available():
        assert "GPU:         none" in out
        assert "PROBLEM torch" in out or "PROBLEM torch is built for CUDA" in out
        assert "no CUDA device" in out


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_precompile_without_cuda_fails_with_the_reason(caches):
    result = CliRunner().invoke(main, ["precompile"])
    assert result.exit_code == 1
    assert "cannot precompile here: no CUDA device" in result.output


def test_clear_cache_removes_both_packages_caches(caches):
    result = CliRunner().invoke(main, ["clear-cache"])
    assert result.exit_code == 0, result.output
    assert (
        f"slang_marching_cubes: removed {caches['SLANG_MARCHING_CUBES']} (1 build(s)"
        in result.output
    )
    assert f"slang_rasterizer: nothing cached in {caches['SLANG_RASTERIZER']}" in result.output
    assert not caches["SLANG_MARCHING_CUBES"].exists()


def test_help_lists_the_kernel_commands():
    result = CliRunner().invoke(main, ["--help"])
    for command in ("doctor", "precompile", "clear-cache"):
        assert command in result.output
