"""Sparse voxel grids and differentiable multi-level-set marching cubes.

Public API: `SparseGrid` (the sparse occupancy and its vertices), `extract_shells` (marching
cubes at several levels, returning `Shells`), `sdf_regularizers` (eikonal and curvature),
`interpolate_vertices`, `write_ply`/`read_ply` and `estimate_nbytes`. Every op has a pure-PyTorch
reference (`slang_marching_cubes.reference`) and, on CUDA, a Slang backend.
"""

from importlib.metadata import PackageNotFoundError, version

from .api import extract_shells, resolve_backend, sdf_regularizers, slang_available
from .grid import SparseGrid, estimate_nbytes
from .reference import interpolate_vertices
from .shells import Shells, read_ply, write_ply

try:  # the version block of every package's __init__.py in this repository (each installs alone)
    __version__ = version("slang-marching-cubes")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "SparseGrid",
    "Shells",
    "extract_shells",
    "sdf_regularizers",
    "slang_available",
    "resolve_backend",
    "interpolate_vertices",
    "estimate_nbytes",
    "write_ply",
    "read_ply",
]
