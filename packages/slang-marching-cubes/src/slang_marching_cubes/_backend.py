"""Whether the Slang backend can run here (cached: the answer does not change in a process)."""

from __future__ import annotations

import functools
import sys

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


@functools.cache
def notice_reference_fallback(why: str) -> None:
    """One line on stderr, once per reason: CUDA tensors run on the (slow) reference backend."""
    print(
        f"slang_marching_cubes: the Slang backend is not available ({why}); using the "
        "pure-PyTorch reference backend (slow). `meshtryoshka-train doctor` or "
        "`python -m slang_marching_cubes info` says more.",
        file=sys.stderr,
    )
