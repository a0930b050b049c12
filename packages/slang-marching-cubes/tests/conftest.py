"""Test setup of slang-marching-cubes: puts ``mc_helpers`` on the path and a backend fixture."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from slang_marching_cubes import slang_available  # noqa: E402


def _backends():
    yield pytest.param(("reference", "cpu"), id="reference-cpu")
    yield pytest.param(("reference", "cuda"), id="reference-cuda", marks=pytest.mark.cuda)
    yield pytest.param(("slang", "cuda"), id="slang", marks=pytest.mark.cuda)


@pytest.fixture(params=list(_backends()))
def backend(request):
    """(backend name, device) pairs; CUDA ones skip when no GPU or Slang is available."""
    name, device = request.param
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if name == "slang":
        ok, why = slang_available()
        if not ok:
            pytest.skip(f"Slang backend unavailable: {why}")
    return name, device
