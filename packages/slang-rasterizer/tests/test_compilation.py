"""The compilation hook ``slang_rasterizer.compilation`` and ``python -m slang_rasterizer``.

The checks are slang_kernel_runtime.testing's, the same for both kernel packages (in
slang-marching-cubes, tests/test_compilation.py is this file for that package); how the hook works
(cache, locks, compile errors, loaders) is tested in slang-kernel-runtime.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slang_kernel_runtime import testing
from slang_rasterizer import _slang, compilation

PACKAGE, ENTRY = "slang_rasterizer", "slang/rasterizer.slang"


def test_hook(tmp_path, monkeypatch):
    monkeypatch.setenv(f"{PACKAGE.upper()}_CACHE_DIR", str(tmp_path))
    testing.check_hook(compilation, PACKAGE, ENTRY, tmp_path)
    assert _slang._MODULE is compilation.slang_module()  # the ops launch what precompile loads


def test_command_line(tmp_path):
    testing.check_command_line(PACKAGE, tmp_path / "cache")


def test_kernels_compile_for_sm80_and_sm90(tmp_path):
    testing.check_kernels_compile(compilation.KERNELS, Path(_slang.__file__), tmp_path)


@pytest.mark.cuda
def test_precompile_command_then_warm_info(tmp_path):
    testing.check_precompile_command(PACKAGE, tmp_path / "cache")
