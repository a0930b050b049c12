"""Test setup of slang-kernel-runtime: puts ``kernel_runtime_helpers`` on the path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kernel_runtime_helpers import ENV_CACHE  # noqa: E402


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """The probe package's kernel cache folder, in tmp_path (not created)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(cache))
    return cache
