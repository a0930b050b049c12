"""The public compilation hook ``slang_rasterizer.compilation`` and ``python -m slang_rasterizer``.

The runtime behind it (cache, locking, compile errors, the command line) is tested in depth in
slang-marching-cubes, which holds the canonical copy of the vendored ``_slang_runtime.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slang_rasterizer import _slang_runtime as rt
from slang_rasterizer import compilation

PACKAGE = "slang_rasterizer"
ENV_CACHE = "SLANG_RASTERIZER_CACHE_DIR"


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(cache))
    return cache


def test_hook_names_the_package_entry_module(cache_env):
    assert compilation.PACKAGE == PACKAGE
    assert compilation.ENTRY == Path(compilation.__file__).parent / "slang" / "rasterizer.slang"
    expected = [compilation.ENTRY] if compilation.ENTRY.is_file() else []
    assert compilation.entry_modules() == expected
    module = compilation.slang_module()
    assert module is compilation.slang_module()
    assert (module.package, module.entry, module.env_prefix) == (
        PACKAGE,
        compilation.ENTRY,
        "SLANG_RASTERIZER",
    )
    assert compilation.cache_dir() == cache_env
    (cache_env / "nvrtc-sm90-0123456789abcdef0123").mkdir(parents=True)
    (cache_env / "nvrtc-sm90-0123456789abcdef0123" / "kernels.json").write_text('{"kernels": {}}')
    assert [e["kind"] for e in compilation.cache_entries()] == ["build"]
    assert compilation.describe_cache()[0].startswith(f"cache: {cache_env} (1 build(s)")
    compilation.clear_cache()
    assert not cache_env.exists()


def test_python_dash_m_commands(cache_env):
    env = {**os.environ, ENV_CACHE: str(cache_env)}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", PACKAGE, *args], capture_output=True, text=True, env=env
        )

    info = run("info")
    assert info.returncode == 0, info.stderr
    assert f"cache: {cache_env} (0 build(s)" in info.stdout and "loader:" in info.stdout
    cleared = run("clear-cache")
    assert cleared.returncode == 0 and "nothing cached" in cleared.stdout
    usage = run("compile")
    assert usage.returncode == 2 and "invalid choice: 'compile'" in usage.stderr


def test_hook_kernels_compile_for_sm80_and_sm90(tmp_path):
    """The package's own kernels through slangc and NVRTC (skipped without both)."""
    if not compilation.entry_modules():
        pytest.skip("this version ships no Slang kernels yet")
    if rt.find_slangc() is None or rt.find_nvrtc(PACKAGE) is None:
        pytest.skip("needs slangc (slangtorch) and NVRTC (nvidia-cuda-nvrtc wheel)")
    for arch in (80, 90):
        info = compilation.slang_module().compile_only(arch, output=tmp_path / str(arch))
        assert info["binary"] == "cubin" and info["kernels"]
