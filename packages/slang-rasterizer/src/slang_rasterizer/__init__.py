"""Tile-based multi-shell rasterizer with differentiable compositing (PyTorch reference + Slang).

Public API:
    Cameras, ShellMesh, Fragments      input/output containers (validated on construction)
    render                             rasterize + shade + composite, modes "fused" | "explicit"
    rasterize, interpolate, eval_sh, composite   the explicit-mode pieces
    MAX_FUSED_SHELLS, resolve_backend, slang_available
The pure-PyTorch specification is ``slang_rasterizer.reference``.
"""

from importlib.metadata import PackageNotFoundError, version

from .api import (
    MAX_FUSED_SHELLS,
    composite,
    eval_sh,
    interpolate,
    rasterize,
    render,
    resolve_backend,
    slang_available,
)
from .types import Cameras, Fragments, ShellMesh

try:  # the version block of every package's __init__.py in this repository (each installs alone)
    __version__ = version("slang-rasterizer")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "Cameras",
    "ShellMesh",
    "Fragments",
    "render",
    "rasterize",
    "interpolate",
    "eval_sh",
    "composite",
    "MAX_FUSED_SHELLS",
    "resolve_backend",
    "slang_available",
]
