"""Test helpers for kernel packages (needs pytest): the backend matrix as one fixture, and the
checks of a package's compilation hook that every kernel package runs the same way.

In a kernel package's ``tests/conftest.py``::

    from slang_kernel_runtime.testing import backend_fixture
    from my_package import compilation

    backend = backend_fixture(compilation.KERNELS)

A test that takes ``backend`` runs once per case, with ids ``reference-cpu``,
``reference-cuda`` and ``slang``: pass ``backend.name`` as the op's ``backend=`` and put the
tensors on ``backend.device``. The two CUDA cases carry the ``cuda`` marker (register it; the
repository's conftest skips such tests without a CUDA device, with the reason), and the
``slang`` case is skipped with `KernelPackage.slang_available`'s reason where Slang cannot run.

``check_hook``, ``check_command_line``, ``check_kernels_compile`` and
``check_precompile_command`` check a package's ``compilation`` module and ``python -m
<package>`` (the last one needs a GPU); a failed check raises AssertionError.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from .nvrtc import env_prefix, find_nvrtc
from .package import HOOK, KernelPackage
from .slangc import find_slangc

__all__ = [
    "BackendCase",
    "CASES",
    "backend_fixture",
    "check_hook",
    "check_command_line",
    "check_kernels_compile",
    "check_precompile_command",
    "launched_kernels",
]


@dataclass(frozen=True)
class BackendCase:
    """One way to run a package's ops: ``backend=name`` with tensors on ``device``."""

    name: Literal["reference", "slang"]
    device: str  # "cpu" or "cuda"

    @property
    def id(self) -> str:
        return self.name if self.name == "slang" else f"{self.name}-{self.device}"


#: The cases, CPU first: the reference on both devices and Slang on CUDA.
CASES = (
    BackendCase("reference", "cpu"),
    BackendCase("reference", "cuda"),
    BackendCase("slang", "cuda"),
)


def backend_fixture(kernels: KernelPackage, name: str = "backend") -> Any:
    """A pytest fixture named ``name`` over `CASES` for the package of ``kernels``."""
    import pytest

    params = [
        pytest.param(case, id=case.id, marks=[pytest.mark.cuda] if case.device == "cuda" else [])
        for case in CASES
    ]

    @pytest.fixture(name=name, params=params)
    def fixture(request: Any) -> BackendCase:
        case = request.param
        if case.name == "slang":
            available, why = kernels.slang_available()
            if not available:
                pytest.skip(f"{kernels.PACKAGE}: the Slang backend cannot run here: {why}")
        return case

    return fixture


# ----------------------------------------------------------------------------------------------
# The compilation hook of a kernel package


def check_hook(compilation: ModuleType, package: str, entry: str, cache: Path) -> None:
    """``compilation`` (the package's hook module) names ``package`` and its entry module
    ``entry`` (relative to the module's folder, e.g. ``"slang/rasterizer.slang"``), ships it,
    has every `HOOK` name, and its cache is ``cache`` (where ``<PACKAGE>_CACHE_DIR`` points)."""
    kernels = compilation.KERNELS
    assert isinstance(kernels, KernelPackage), type(kernels)
    assert set(HOOK) <= set(compilation.__all__), compilation.__all__
    assert (compilation.PACKAGE, compilation.ENTRY) == (package, kernels.ENTRY)
    assert compilation.ENTRY == Path(compilation.__file__).parent / entry, compilation.ENTRY
    assert compilation.entry_modules() == [compilation.ENTRY], "the kernels are not shipped"
    module = compilation.slang_module()
    assert module is kernels.slang_module(), "more than one SlangModule"
    assert (module.package, module.entry) == (package, compilation.ENTRY)
    assert compilation.cache_dir() == cache, compilation.cache_dir()
    assert compilation.cache_entries() == [], compilation.cache_entries()


def _run(package: str, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, f"{env_prefix(package)}_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", package, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def check_command_line(package: str, cache: Path) -> None:
    """``python -m <package> info``, ``clear-cache`` and a bad command, with an empty cache."""
    info = _run(package, cache, "info")
    assert info.returncode == 0, info.stderr
    assert f"cache: {cache} (0 build(s), 0 B" in info.stdout, info.stdout
    for line in ("slangc:", "NVRTC:", "loader:"):
        assert line in info.stdout, info.stdout
    cleared = _run(package, cache, "clear-cache")
    assert cleared.returncode == 0 and "nothing cached" in cleared.stdout, cleared.stdout
    usage = _run(package, cache, "compile")
    assert usage.returncode == 2 and "invalid choice: 'compile'" in usage.stderr, usage.stderr


def launched_kernels(source: Path) -> set[str]:
    """The kernel names a Python file launches: ``<module>.launch("name", ...)``."""
    return set(re.findall(r'\.launch\(\s*"(\w+)"', Path(source).read_text()))


def check_kernels_compile(kernels: KernelPackage, launcher: Path, output: Path) -> None:
    """The package's kernels compile with slangc and NVRTC for sm_80 and sm_90 (no GPU needed;
    skipped without slangc or NVRTC), and they are exactly the kernels ``launcher`` (the
    package's ``_slang.py``) launches."""
    import pytest

    if find_slangc() is None or find_nvrtc(kernels.PACKAGE) is None:
        pytest.skip("needs slangc (slangtorch) and NVRTC (the nvidia-cuda-nvrtc wheel)")
    for arch in (80, 90):
        info = kernels.slang_module().compile_only(arch, output=output / str(arch))
        assert info["binary"] == "cubin", info["binary"]
        assert set(info["kernels"]) == launched_kernels(launcher), sorted(info["kernels"])
        assert (output / str(arch) / "kernels.cubin").read_bytes()[:4] == b"\x7fELF"


def check_precompile_command(package: str, cache: Path) -> None:
    """On a GPU: ``python -m <package> precompile`` compiles cold, then loads warm; ``info``
    shows the build and the nvrtc loader."""
    cold = _run(package, cache, "precompile")
    assert cold.returncode == 0, cold.stderr
    assert "compiling kernels (first use only)" in cold.stderr, cold.stderr
    warm = _run(package, cache, "precompile")
    assert warm.returncode == 0 and "compiling" not in warm.stderr, warm.stderr
    info = _run(package, cache, "info")
    assert "(1 build(s)" in info.stdout and "loader:      nvrtc" in info.stdout, info.stdout
