"""Test helpers for kernel packages: the backend matrix as one pytest fixture (needs pytest).

In a kernel package's ``tests/conftest.py``::

    from slang_kernel_runtime.testing import backend_fixture
    from my_package import compilation

    backend = backend_fixture(compilation.KERNELS)

A test that takes ``backend`` runs once per case, with ids ``reference-cpu``,
``reference-cuda`` and ``slang``: pass ``backend.name`` as the op's ``backend=`` and put the
tensors on ``backend.device``. The two CUDA cases carry the ``cuda`` marker (register it; the
repository's conftest skips such tests without a CUDA device, with the reason), and the
``slang`` case is skipped with `KernelPackage.slang_available`'s reason where Slang cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .package import KernelPackage

__all__ = ["BackendCase", "CASES", "backend_fixture"]


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
