"""Whether the Slang backend can run here (cached: the answer does not change in a process)."""

from __future__ import annotations

import functools

import torch


@functools.cache
def _runtime_available() -> tuple[bool, str]:
    try:
        from ._slang_runtime import slang_available as runtime_available
    except ImportError as exc:  # pragma: no cover - the runtime ships with the package
        return False, f"the Slang runtime cannot be imported: {exc}"
    return runtime_available()


def slang_available() -> tuple[bool, str]:
    """``(True, "")`` when the Slang backend can run here, else ``(False, reason)``."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return _runtime_available()
