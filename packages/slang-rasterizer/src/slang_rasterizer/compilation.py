"""Where the package's Slang kernels are, and the commands that compile and cache them.

The public hook for tools (``python -m slang_rasterizer``, ``meshtryoshka-train doctor``, the
compile benchmark, ``nox -s compat``): they find the kernels through ``entry_modules()`` and
``slang_module()`` instead of knowing file or kernel names.

Kernels compile on first use (slangc -> NVRTC -> cubin, about a second) into a per-user cache,
so later processes start in a fraction of a second. ``python -m slang_rasterizer COMMAND``:

    precompile    compile now for this GPU (e.g. in a Docker build step)
    check         compile for sm_80 and sm_90 with NVRTC; no GPU needed, nothing cached
    clear-cache   delete the cached builds
    info          the cache and the tools in use

Environment variables:

    SLANG_RASTERIZER_CACHE_DIR
        the cache folder (default: $XDG_CACHE_HOME/slang_rasterizer,
        else ~/.cache/slang_rasterizer)
    SLANG_RASTERIZER_LOADER
        nvrtc (default) or slangtorch (the slow torch-extension build)
    SLANG_RASTERIZER_NVRTC_PATH
        the libnvrtc.so to use
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _slang_runtime

__all__ = [
    "PACKAGE",
    "ENTRY",
    "entry_modules",
    "slang_module",
    "precompile",
    "clear_cache",
    "cache_dir",
    "cache_entries",
    "toolchain",
    "describe_cache",
    "describe_toolchain",
    "main",
]

PACKAGE = "slang_rasterizer"
#: The package's one Slang entry module; it ``import``s the other .slang files next to it.
ENTRY = Path(__file__).parent / "slang" / "rasterizer.slang"


def entry_modules() -> list[Path]:
    """The Slang entry modules this installation ships: ``[ENTRY]``, or ``[]`` without kernels."""
    return [ENTRY] if ENTRY.is_file() else []


@functools.cache
def slang_module() -> _slang_runtime.SlangModule:
    """The process-wide ``SlangModule`` of the package's kernels (compiled on first use)."""
    return _slang_runtime.SlangModule(package=PACKAGE, entry=ENTRY)


def precompile() -> Path | None:
    """Compile (or find in the cache) and load the kernels on the current CUDA device.

    Returns the cache folder, or None when this version ships no kernels. Raises RuntimeError
    (compiler message, versions, what to do) on a compile failure; needs a CUDA device.
    """
    return slang_module().precompile() if entry_modules() else None


def clear_cache() -> None:
    """Delete every cached build of the package (all loaders, GPU architectures, versions)."""
    slang_module().clear_cache()


def cache_dir() -> Path:
    """The package's kernel cache folder (it may not exist yet)."""
    return slang_module().cache_dir


def cache_entries() -> list[dict[str, Any]]:
    """What the cache holds; see ``SlangModule.cache_entries``."""
    return slang_module().cache_entries()


def toolchain() -> dict[str, Any]:
    """torch, driver, GPU, slangc and NVRTC versions and the loader; never raises."""
    return slang_module().toolchain()


def describe_cache() -> list[str]:
    """Printable lines: the cache folder and its entries."""
    return _slang_runtime.describe_cache(slang_module())


def describe_toolchain() -> list[str]:
    """Printable lines for ``toolchain()``."""
    return _slang_runtime.describe_toolchain(toolchain())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m slang_rasterizer precompile | check | clear-cache | info``; the exit code."""
    return _slang_runtime.command_line(slang_module(), argv)
