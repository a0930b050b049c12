"""Shared pytest setup for every package of the monorepo.

Markers (registered in pytest.ini):
- ``cuda``: needs a CUDA device and slangtorch; skipped with the reason otherwise.
- ``slow``: takes more than a few seconds on a CPU; deselect with ``-m "not slow"``.

Tests say "needs CUDA" with ``@pytest.mark.cuda``; ``cuda_skip_reason()`` gives the reason
when it cannot run, for tests that need to decide inside their body.
"""

from __future__ import annotations

import functools
import importlib.util

import pytest


@functools.cache
def cuda_skip_reason() -> str | None:
    """Why CUDA tests cannot run here, or None when they can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    if importlib.util.find_spec("slangtorch") is None:
        return "slangtorch is not installed (pip install slangtorch)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = cuda_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"cuda test skipped: {reason}")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
