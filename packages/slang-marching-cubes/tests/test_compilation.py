"""The package's compilation hook ``slang_marching_cubes.compilation`` and ``python -m
slang_marching_cubes``: this package's name, kernels and command line. How the hook works (cache,
locks, compile errors, loaders) is tested in slang-kernel-runtime, which makes it.

Deliberately parallel to slang-rasterizer's tests/test_compilation.py: each kernel package
checks its own hook the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slang_kernel_runtime import HOOK, KernelPackage, nvrtc, slangc
from slang_marching_cubes import _slang, compilation

PACKAGE = "slang_marching_cubes"
ENV_CACHE = "SLANG_MARCHING_CUBES_CACHE_DIR"


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(cache))
    return cache


def test_hook_names_the_package_and_its_entry_module(cache_env):
    assert isinstance(compilation.KERNELS, KernelPackage)
    assert set(HOOK) <= set(compilation.__all__)
    assert compilation.PACKAGE == PACKAGE
    assert compilation.ENTRY == Path(compilation.__file__).parent / "slang/marching_cubes.slang"
    assert compilation.entry_modules() == [compilation.ENTRY]  # the wheel ships the kernels
    module = compilation.slang_module()
    assert module is _slang._MODULE  # one SlangModule: precompile loads what the ops launch
    assert (module.package, module.entry) == (PACKAGE, compilation.ENTRY)
    assert compilation.cache_dir() == cache_env and compilation.cache_entries() == []


def test_python_dash_m_commands(cache_env):
    def run(*args):
        env = {**os.environ, ENV_CACHE: str(cache_env)}
        command = [sys.executable, "-m", PACKAGE, *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    info = run("info")
    assert info.returncode == 0, info.stderr
    assert f"cache: {cache_env} (0 build(s), 0 B" in info.stdout
    assert "slangc:" in info.stdout and "NVRTC:" in info.stdout and "loader:" in info.stdout
    cleared = run("clear-cache")
    assert cleared.returncode == 0 and "nothing cached" in cleared.stdout
    usage = run("compile")
    assert usage.returncode == 2 and "invalid choice: 'compile'" in usage.stderr


def test_kernels_compile_for_sm80_and_sm90(tmp_path):
    """The package's own kernels through slangc and NVRTC (skipped without both)."""
    if slangc.find_slangc() is None or nvrtc.find_nvrtc(PACKAGE) is None:
        pytest.skip("needs slangc (slangtorch) and NVRTC (nvidia-cuda-nvrtc wheel)")
    for arch in (80, 90):
        info = compilation.slang_module().compile_only(arch, output=tmp_path / str(arch))
        assert info["binary"] == "cubin" and set(info["kernels"]) == launched_kernels()
        assert (tmp_path / str(arch) / "kernels.cubin").read_bytes()[:4] == b"\x7fELF"


def launched_kernels() -> set[str]:
    """The kernel names _slang.py launches (``_MODULE.launch("name", ...)``)."""
    return set(re.findall(r'_MODULE\.launch\(\s*"(\w+)"', Path(_slang.__file__).read_text()))


@pytest.mark.cuda
def test_gpu_precompile_command_then_warm_info(tmp_path):
    env = {**os.environ, ENV_CACHE: str(tmp_path / "cache")}

    def run(*args):
        command = [sys.executable, "-m", PACKAGE, *args]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    cold = run("precompile")
    assert cold.returncode == 0, cold.stderr
    assert "compiling kernels (first use only)" in cold.stderr
    warm = run("precompile")
    assert warm.returncode == 0 and "compiling" not in warm.stderr
    info = run("info")
    assert "(1 build(s)" in info.stdout and "loader:      nvrtc" in info.stdout
