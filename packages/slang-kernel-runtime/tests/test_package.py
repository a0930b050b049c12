"""The package itself: metadata, the public API, an import that needs neither torch nor
slangtorch, and `KernelPackage` (the compilation hook it makes, the backend rule)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernel_runtime_helpers import ENV_CACHE, PACKAGE, PROBE

import slang_kernel_runtime
from slang_kernel_runtime import HOOK, KernelPackage, SlangModule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


# The first two tests are every package's tests/test_package.py checks, for this package.


def test_version_matches_pyproject():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert slang_kernel_runtime.__version__ == project["version"]


def test_all_names_exist():
    missing = [
        name for name in slang_kernel_runtime.__all__ if not hasattr(slang_kernel_runtime, name)
    ]
    assert missing == []


def test_import_needs_neither_torch_nor_slangtorch():
    code = (
        "import sys\n"
        "import slang_kernel_runtime, slang_kernel_runtime.cli\n"
        "heavy = sorted(m for m in ('torch', 'slangtorch') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------------------------
# KernelPackage: the compilation hook


def test_hook_of_a_package(tmp_path, cache_env):
    kernels = KernelPackage(PACKAGE, PROBE)
    assert (kernels.PACKAGE, kernels.ENTRY) == (PACKAGE, PROBE)
    assert kernels.entry_modules() == [PROBE]
    module = kernels.slang_module()
    assert isinstance(module, SlangModule) and module is kernels.slang_module()  # one per package
    assert (module.package, module.entry) == (PACKAGE, PROBE)
    assert kernels.cache_dir() == cache_env and kernels.cache_entries() == []
    assert kernels.describe_cache()[0].startswith(f"cache: {cache_env} (0 build(s)")
    assert kernels.describe_toolchain()[0].startswith("torch:")
    assert kernels.main(["clear-cache"]) == 0
    assert [kernels.hook_attribute(name) for name in ("PACKAGE", "ENTRY")] == [PACKAGE, PROBE]
    assert all(callable(kernels.hook_attribute(name)) for name in HOOK[2:])
    with pytest.raises(AttributeError, match=f"module '{PACKAGE}.compilation' has no attribute"):
        kernels.hook_attribute("resolve_backend")  # not part of the hook
    missing = KernelPackage(PACKAGE, tmp_path / "missing.slang")
    assert missing.entry_modules() == [] and missing.precompile() is None


# ----------------------------------------------------------------------------------------------
# KernelPackage: the backend rule


def kernels_with(available: tuple[bool, str]) -> KernelPackage:
    kernels = KernelPackage(PACKAGE, PROBE)
    kernels._available = available
    return kernels


CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize("available", [(True, ""), (False, "no CUDA device")])
def test_reference_is_always_the_reference(available):
    kernels = kernels_with(available)
    for device in (CPU, CUDA, "cuda:1"):
        for dtype in (None, torch.float32, torch.float64):
            assert kernels.resolve_backend("reference", device, dtype) == "reference"


def test_auto_picks_slang_for_float32_cuda_tensors_when_it_can_run():
    kernels = kernels_with((True, ""))
    assert kernels.resolve_backend("auto", CUDA, torch.float32) == "slang"
    assert kernels.resolve_backend("auto", "cuda:0", None) == "slang"  # no float inputs
    assert kernels.resolve_backend("auto", CUDA, torch.float64) == "reference"
    assert kernels.resolve_backend("auto", CPU, torch.float32) == "reference"


def test_auto_on_cuda_without_slang_falls_back_with_one_notice(capsys):
    kernels = kernels_with((False, "no slangtorch"))
    assert kernels.resolve_backend("auto", CUDA, torch.float32) == "reference"
    assert kernels.resolve_backend("auto", CUDA, None) == "reference"
    err = capsys.readouterr().err
    assert err.count(f"{PACKAGE}: the Slang backend is not available (no slangtorch)") == 1
    assert kernels.resolve_backend("auto", CPU, torch.float32) == "reference"
    assert kernels.resolve_backend("auto", CUDA, torch.float64) == "reference"
    assert capsys.readouterr().err == ""  # CPU or float64: the reference is expected, no notice


def test_explicit_slang_never_falls_back_quietly():
    kernels = kernels_with((True, ""))
    assert kernels.resolve_backend("slang", CUDA, torch.float32, "sdf") == "slang"
    with pytest.raises(ValueError, match=r"backend='slang' needs CUDA tensors, got sdf on cpu"):
        kernels.resolve_backend("slang", CPU, torch.float32, "sdf")
    with pytest.raises(
        ValueError, match=r"backend='slang' needs float32 sdf and sh, got float64 \(the Slang"
    ):
        kernels.resolve_backend("slang", CUDA, torch.float64, "sdf and sh")
    unavailable = kernels_with((False, "slangc not found: install slangtorch"))
    with pytest.raises(ValueError, match="backend='slang' is not available: slangc not found"):
        unavailable.resolve_backend("slang", CUDA, torch.float32)


def test_unknown_backend_is_rejected():
    with pytest.raises(
        ValueError, match="backend must be 'auto', 'reference' or 'slang', got 'cuda'"
    ):
        kernels_with((True, "")).resolve_backend("cuda", CUDA, torch.float32)


def test_slang_available_is_asked_once(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "slang_kernel_runtime.package.slang_available", lambda: calls.append(1) or (False, "x")
    )
    kernels = KernelPackage(PACKAGE, PROBE)
    assert kernels.slang_available() == kernels.slang_available() == (False, "x")
    assert calls == [1]


def test_env_prefix_of_the_probe_package():
    assert SlangModule(PACKAGE, PROBE).env_prefix + "_CACHE_DIR" == ENV_CACHE
