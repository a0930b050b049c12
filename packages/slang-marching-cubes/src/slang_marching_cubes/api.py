"""Public ops: validate the inputs, then dispatch to the reference or the Slang backend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from slang_kernel_runtime import Backend

from . import reference
from ._lattice import describe as _describe
from .compilation import KERNELS
from .grid import SparseGrid
from .shells import Shells

__all__ = ["extract_shells", "sdf_regularizers", "slang_available", "resolve_backend", "Backend"]


#: ``(True, "")`` when the Slang backend can run here, else ``(False, reason)``.
slang_available = KERNELS.slang_available
#: ``resolve_backend(backend, device, dtype=None)``: which backend an op runs with. The one rule
#: of both kernel packages (`slang_kernel_runtime.KernelPackage.resolve_backend`).
resolve_backend = KERNELS.resolve_backend


def _check_values(name: str, x: object, grid: SparseGrid, ndim: int, check_finite: bool) -> Tensor:
    expect = f"[{grid.num_vertices}]" if ndim == 1 else f"[{grid.num_vertices}, F]"
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a float32/float64 {expect} tensor, got {_describe(x)}")
    if x.layout != torch.strided:
        raise ValueError(f"{name} must be a dense (strided) tensor, got layout {x.layout}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} must be float32 or float64 {expect}, got {_describe(x)}")
    if x.dim() != ndim or x.shape[0] != grid.num_vertices:
        raise ValueError(f"{name} must be {expect} (one row per grid vertex), got {_describe(x)}")
    if x.device != grid.device:
        raise ValueError(f"{name} must be on the grid's device {grid.device}, got {x.device}")
    if check_finite and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, got NaN or Inf values")
    return x


def _check_levels(levels: object, dtype: torch.dtype, device: torch.device) -> Tensor:
    # checked as Python floats: a few microseconds, where small CPU tensor ops cost ~100
    if isinstance(levels, Tensor):
        if levels.dim() != 1 or not levels.dtype.is_floating_point:
            raise ValueError(f"levels must be a float [L] tensor, got {_describe(levels)}")
        values = levels.detach().double().tolist()
    else:
        try:
            values = [float(v) for v in levels]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"levels must be a sequence of floats, got {levels!r}") from None
    if not values:
        raise ValueError("levels must hold at least one level, got none")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"levels must be finite, got {values}")
    if any(inner >= outer for outer, inner in zip(values, values[1:], strict=False)):
        raise ValueError(
            f"levels must be strictly decreasing (shell 0 is the outermost), got {values}"
        )
    return torch.tensor(values, dtype=dtype, device=device)


def extract_shells(
    grid: SparseGrid,
    sdf: Tensor,
    attributes: Tensor | None,
    levels: Tensor | Sequence[float],
    *,
    backend: Backend = "auto",
    check_finite: bool = True,
) -> Shells:
    """Multi-level-set marching cubes over the occupied voxels of a sparse grid.

    For each level ``l`` (shell), every edge ``(a, b)`` of an occupied voxel whose ends lie on
    different sides (``s >= l`` is outside) yields exactly one vertex at
    ``t = clamp((l - s_a) / (s_b - s_a), 0, 1)`` (``t`` detached, 0.5 if ``s_a == s_b``),
    shared by every face that uses it. Faces follow a generated 256-case table whose ambiguous
    faces are resolved by the face's own corner signs, so meshes are crack-free and watertight
    wherever the surface stays inside the occupied voxels.

    Args:
        grid: the `SparseGrid`.
        sdf: float32 or float64 ``[V]`` signed distances, one per ``grid.vertices`` entry,
            negative inside, on ``grid.device``; any strides.
        attributes: ``[V, F]`` per-vertex attributes (same dtype and device as ``sdf``), e.g. SH
            coefficients flattened from ``[V, n_sh, 3]`` to ``[V, 3 * n_sh]``; None for ``F = 0``.
        levels: ``[L]`` strictly decreasing levels (tensor or sequence of floats); shell 0 is the
            outermost.
        backend: ``"auto"`` (Slang for float32 CUDA tensors when available, else reference),
            ``"reference"`` or ``"slang"`` (a ValueError says why when it cannot run); see
            `resolve_backend`.
        check_finite: reject NaN/Inf in ``sdf`` and ``attributes`` (costs one device sync).

    Returns:
        `Shells`: positions float32 ``[N, 3]`` (no grad), faces int32 ``[M, 3]`` (normals toward
        increasing sdf), per-shell CSR offsets, differentiable ``sdf [N]`` and
        ``attributes [N, F]``. Empty grids and fields without crossings give empty tensors.
    """
    if not isinstance(grid, SparseGrid):
        raise ValueError(f"grid must be a SparseGrid, got {type(grid).__name__}")
    sdf = _check_values("sdf", sdf, grid, 1, check_finite)
    if attributes is None:
        attributes = sdf.new_zeros((grid.num_vertices, 0))
    attributes = _check_values("attributes", attributes, grid, 2, check_finite)
    if attributes.dtype != sdf.dtype:
        raise ValueError(
            f"attributes must have the dtype of sdf ({sdf.dtype}), got {attributes.dtype}"
        )
    lv = _check_levels(levels, sdf.dtype, sdf.device)
    if KERNELS.resolve_backend(backend, sdf.device, sdf.dtype, "sdf and attributes") == "slang":
        from . import _slang

        return _slang.extract_shells(grid, sdf, attributes, lv)
    return reference.extract_shells(grid, sdf, attributes, lv)


def sdf_regularizers(
    grid: SparseGrid,
    sdf: Tensor,
    *,
    curvature: Literal["gradient", "laplacian"] = "gradient",
    check_finite: bool = True,
) -> dict:
    """Eikonal and curvature regularizers of the grid sdf, means over the occupied voxels.

    With ``g_v`` the gradient of voxel ``v``'s trilinear interpolant at its centre, in
    ``[0, 1]^3`` units (``d/dx_a = dims[a] * mean of the 4 edge differences along axis a``):

    - ``eikonal_pos = mean_v relu(|g_v| - 1)^2`` (gradient too steep),
    - ``eikonal_neg = mean_v relu(1 - |g_v|)^2`` (gradient too flat),
    - ``curvature``, one of two operators:

      - ``"gradient"``: the mean over pairs ``(v, w)`` of face-adjacent occupied voxels,
        ``w = v + e_a``, of ``|g_w - g_v|^2 / h_a^2`` with ``h_a = 1 / dims[a]``. For a smooth
        field on a dense cubic grid this tends to ``|H|_F^2 / 3`` (``H`` the Hessian; exact
        for a quadratic), independent of the resolution; e.g. ``2 / (3 r^2)`` for the distance
        to a sphere of radius ``r``. Blind to vertex noise that leaves the centre gradients
        unchanged (e.g. a checkerboard).
      - ``"laplacian"`` (the original Meshtryoshka's operator): ``mean_v L_v^2`` with ``L_v``
        the discrete Laplacian of the grid values at voxel ``v``'s +xyz corner over the 3 to
        6 axis neighbours that exist (`reference.corner_laplacians`), in grid units: about
        ``h^4 (lap s)^2`` inside the occupied region, so it shrinks as the grid is refined.
        Where a neighbour is missing (the edge of the occupied region) the sum is one-sided
        and first order (about ``-h ds/dx_a`` per missing ``+e_a``), which dominates the mean
        in a band a few voxels wide and damps the gradient there.

    Args:
        grid: the `SparseGrid`.
        sdf: float32/float64 ``[V]`` grid values on ``grid.device``.
        curvature: which curvature operator (above).
        check_finite: reject NaN/Inf in ``sdf`` (one device sync).

    Returns:
        dict of 0-dim tensors ``eikonal_pos``, ``eikonal_neg``, ``curvature``, differentiable
        w.r.t. ``sdf`` (zeros for an empty grid). Runs in PyTorch on any device.
    """
    if not isinstance(grid, SparseGrid):
        raise ValueError(f"grid must be a SparseGrid, got {type(grid).__name__}")
    if curvature not in ("gradient", "laplacian"):
        raise ValueError(f"curvature must be 'gradient' or 'laplacian', got {curvature!r}")
    sdf = _check_values("sdf", sdf, grid, 1, check_finite)
    return reference.sdf_regularizers(grid, sdf, curvature)
