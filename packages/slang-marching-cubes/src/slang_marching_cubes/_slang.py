"""Slang backend (CUDA): `extract_shells`, `interpolate_pair` and `grid_vertices`, the Slang
versions of the functions of the same names in `reference.py` (the spec), with the same
arguments; an autograd Function behind one of them is named after it in both modules
(`_InterpolateVertices`). Inputs are validated by the public ops (`api.py`, `grid.py`).

Pipeline of `extract_shells`, all on torch's current stream, two host syncs:

1. ``mc_classify`` (one thread per occupied voxel): does any level cross the voxel?
2. ``torch.nonzero`` compacts the active voxels (sync 1: their count).
3. ``mc_count`` (one thread per active voxel): corner vertex indices, which of the 18
   edge-sharing neighbours are occupied, and per level the cube code, the owned crossing edges,
   the vertex and face counts. One flat ``torch.cumsum`` over both count rows gives the offsets;
   the per-level totals come back in one copy (sync 2).
4. ``mc_emit`` (one thread per active voxel) writes (edge ends, detached ``t``, position) per
   owned crossing edge, then the faces, finding each edge's vertex through its owner voxel.

Vertex sdf and attributes are ``(1 - t) v_a + t v_b`` (``mc_interpolate_fwd``, both in one
launch, one thread per output value); the backward (``mc_interpolate_bwd``) scatters into the
grid gradients with float atomic adds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from slang_kernel_runtime import TENSOR_VIEW_BYTES

from . import _table, compilation, reference
from .reference import _empty_shells
from .shells import Shells

if TYPE_CHECKING:  # the grid module dispatches to this one: no import back at run time
    from .grid import SparseGrid

_MODULE = compilation.KERNELS.slang_module()  # the package's one SlangModule (also precompile's)
_BLOCK = 256
_TABLES: dict[torch.device, tuple[Tensor, Tensor]] = {}
_INT32_MAX = 2**31 - 1
_VIEW_BYTES = TENSOR_VIEW_BYTES  # what one tensor view addresses (tests shrink it)


def _tables(device: torch.device) -> tuple[Tensor, Tensor]:
    if device not in _TABLES:
        _TABLES[device] = (
            torch.from_numpy(_table.TRI_OFFSETS).to(device),
            torch.from_numpy(_table.TRI_EDGES.reshape(-1)).to(device),
        )
    return _TABLES[device]


def _grid_for(n: int) -> tuple[int, int, int]:
    return ((n + _BLOCK - 1) // _BLOCK, 1, 1)


def _flat(values: Tensor) -> tuple[Tensor, int]:
    """A contiguous flat float32 view of ``values [V, ...]`` and its channels per row."""
    return values.detach().contiguous().view(-1), math.prod(values.shape[1:])  # 1 for [V]


class _InterpolateVertices(torch.autograd.Function):
    """``out[n] = (1 - t[n]) values[a_n] + t[n] values[b_n]`` for two float32 ``values [V, ...]``
    arrays (the sdf and the attributes) in one launch each way."""

    @staticmethod
    def forward(ctx, first: Tensor, second: Tensor, edges: Tensor, t: Tensor):
        ctx.save_for_backward(edges, t)
        ctx.shapes = first.shape, second.shape
        num_vertices = edges.shape[0]
        out_1 = first.new_empty((num_vertices, *first.shape[1:]))
        out_2 = second.new_empty((num_vertices, *second.shape[1:]))
        (values_1, channels_1), (values_2, channels_2) = _flat(first), _flat(second)
        _MODULE.launch(
            "mc_interpolate_fwd",
            grid=_grid_for(num_vertices * (channels_1 + channels_2)),
            block=(_BLOCK, 1, 1),
            edges=edges.view(-1),
            t=t,
            values_1=values_1,
            out_1=out_1.view(-1),
            channels_1=channels_1,
            values_2=values_2,
            out_2=out_2.view(-1),
            channels_2=channels_2,
            num_vertices=num_vertices,
        )
        return out_1, out_2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_1: Tensor, grad_2: Tensor):
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return None, None, None, None
        edges, t = ctx.saved_tensors
        num_vertices = edges.shape[0]
        grad_values_1 = grad_1.new_zeros(ctx.shapes[0])
        grad_values_2 = grad_2.new_zeros(ctx.shapes[1])
        (grad_out_1, channels_1), (grad_out_2, channels_2) = _flat(grad_1), _flat(grad_2)
        # the forward's launch with values and outputs swapped: a deliberate look-alike
        _MODULE.launch(
            "mc_interpolate_bwd",
            grid=_grid_for(num_vertices * (channels_1 + channels_2)),
            block=(_BLOCK, 1, 1),
            edges=edges.view(-1),
            t=t,
            grad_out_1=grad_out_1,
            grad_values_1=grad_values_1.view(-1),
            channels_1=channels_1,
            grad_out_2=grad_out_2,
            grad_values_2=grad_values_2.view(-1),
            channels_2=channels_2,
            num_vertices=num_vertices,
        )
        return (
            grad_values_1 if ctx.needs_input_grad[0] else None,
            grad_values_2 if ctx.needs_input_grad[1] else None,
            None,
            None,
        )


def interpolate_pair(
    first: Tensor, second: Tensor, edges: Tensor, t: Tensor
) -> tuple[Tensor, Tensor]:
    """Slang version of `reference.interpolate_pair` (float32 CUDA value arrays): one launch each
    way for both arrays. Arrays past int32 thread indices or the 4 GiB a Slang tensor view
    addresses (e.g. degree-1 colours of 90M corners) take the reference (torch ops)."""
    width = math.prod(first.shape[1:]) + math.prod(second.shape[1:])
    largest = max(first.numel(), second.numel(), edges.shape[0] * width)
    if edges.shape[0] * width > _INT32_MAX or 4 * largest >= _VIEW_BYTES:
        return reference.interpolate_pair(first, second, edges, t)
    return _InterpolateVertices.apply(first, second, edges, t.detach())


def grid_vertices(voxels: Tensor, voxel_rows: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Slang version of `reference.grid_vertices` (int64 CUDA tensors): built by merging the
    voxel rows around each lattice row, with no sort and no per-voxel candidate list."""
    ni, nj, nk = shape
    rows = (ni + 1) * (nj + 1)
    if rows > _INT32_MAX or voxels.numel() > _INT32_MAX:
        raise ValueError("the Slang grid builder needs (I+1)(J+1) and the voxel count < 2^31")
    counts = torch.empty(rows, dtype=torch.int64, device=voxels.device)
    dims = {"I": ni, "J": nj, "K": nk}
    launch = {"grid": _grid_for(rows), "block": (_BLOCK, 1, 1)}
    _MODULE.launch(
        "grid_count_vertices",
        **launch,
        voxels=voxels,
        voxel_rows=voxel_rows,
        row_counts=counts,
        **dims,
    )
    ends = torch.cumsum(counts, 0)
    vertices = torch.empty(int(ends[-1]), dtype=torch.int64, device=voxels.device)  # sync
    _MODULE.launch(
        "grid_write_vertices",
        **launch,
        voxels=voxels,
        voxel_rows=voxel_rows,
        row_offsets=ends - counts,
        vertices=vertices,
        **dims,
    )
    return vertices


def extract_shells(grid: SparseGrid, sdf: Tensor, attributes: Tensor, levels: Tensor) -> Shells:
    """Slang version of `reference.extract_shells` (validated float32 CUDA inputs)."""
    if grid.num_vertices > _INT32_MAX or grid.num_voxels > _INT32_MAX:
        raise ValueError("the Slang backend indexes vertices and voxels with int32 (< 2^31)")
    dev = sdf.device
    ni, nj, nk = grid.shape
    num_levels = levels.numel()
    sdf_c = sdf.detach().contiguous()
    levels_c = levels.detach().to(torch.float32).contiguous()
    dims = {"I": ni, "J": nj, "K": nk}
    if grid.num_voxels == 0:
        return _empty_shells(grid, sdf, attributes, levels)

    active = torch.empty(grid.num_voxels, dtype=torch.uint8, device=dev)
    _MODULE.launch(
        "mc_classify",
        grid=_grid_for(grid.num_voxels),
        block=(_BLOCK, 1, 1),
        voxels=grid.voxels,
        vertices=grid.vertices,
        vertex_rows=grid.vertex_rows,
        sdf=sdf_c,
        levels=levels_c,
        active=active,
        num_voxels=grid.num_voxels,
        num_levels=num_levels,
        **dims,
    )
    active_index = torch.nonzero(active).reshape(-1)  # sync 1
    num_active = active_index.numel()
    if num_active == 0:
        return _empty_shells(grid, sdf, attributes, levels)

    tri_offsets, tri_edges = _tables(dev)
    slots = num_levels * num_active
    if 2 * slots > _INT32_MAX:
        raise ValueError(f"{num_levels} levels x {num_active} active voxels exceed int32 indices")
    bases = torch.empty(4 * num_active, dtype=torch.int32, device=dev)
    neighbor_masks = torch.empty(num_active, dtype=torch.int32, device=dev)
    codes = torch.empty(slots, dtype=torch.uint8, device=dev)
    owned = torch.empty(slots, dtype=torch.int32, device=dev)
    counts = torch.empty((2, slots), dtype=torch.int64, device=dev)  # vertices, faces per slot
    launch = {"grid": _grid_for(num_active), "block": (_BLOCK, 1, 1)}
    # every launch names each kernel parameter (here and in slang-rasterizer's _slang.py), so
    # the launch calls look alike by design
    _MODULE.launch(
        "mc_count",
        **launch,
        active_index=active_index,
        voxels=grid.voxels,
        voxel_rows=grid.voxel_rows,
        vertices=grid.vertices,
        vertex_rows=grid.vertex_rows,
        sdf=sdf_c,
        levels=levels_c,
        tri_offsets=tri_offsets,
        bases_out=bases,
        neighbor_masks=neighbor_masks,
        codes=codes,
        owned_crossings=owned,
        counts=counts.view(-1),
        num_active=num_active,
        num_levels=num_levels,
        **dims,
    )
    # one flat scan (a scan along dim 1 of a [2, slots] tensor is ~10x slower on CUDA)
    ends = torch.cumsum(counts.view(-1), 0)
    totals = ends[num_active - 1 :: num_active].cpu()  # [2L] running totals per level; sync 2
    zero = torch.zeros(1, dtype=torch.int64)
    vertex_offsets = torch.cat((zero, totals[:num_levels]))
    face_offsets = torch.cat((zero, totals[num_levels:] - totals[num_levels - 1]))
    num_vertices, num_faces = int(vertex_offsets[-1]), int(face_offsets[-1])
    if max(num_vertices, num_faces) > _INT32_MAX:
        raise ValueError(f"{num_vertices} vertices / {num_faces} faces exceed int32 indices")

    edges = torch.empty((num_vertices, 2), dtype=torch.int32, device=dev)
    t = torch.empty(num_vertices, dtype=torch.float32, device=dev)
    positions = torch.empty((num_vertices, 3), dtype=torch.float32, device=dev)
    faces = torch.empty((num_faces, 3), dtype=torch.int32, device=dev)
    face_voxels = torch.empty(num_faces, dtype=torch.int32, device=dev)
    _MODULE.launch(
        "mc_emit",
        **launch,
        active_index=active_index,
        voxels=grid.voxels,
        voxel_rows=grid.voxel_rows,
        bases_in=bases,
        codes=codes,
        owned_crossings=owned,
        neighbor_masks=neighbor_masks,
        counts=counts.view(-1),
        ends=ends,
        sdf=sdf_c,
        levels=levels_c,
        tri_offsets=tri_offsets,
        tri_edges=tri_edges,
        edges=edges.view(-1),
        t_out=t,
        positions=positions.view(-1),
        faces=faces.view(-1),
        face_voxels=face_voxels,
        num_active=num_active,
        num_levels=num_levels,
        **dims,
    )
    vertex_sdf, vertex_attributes = interpolate_pair(sdf, attributes, edges, t)
    # the same Shells as `reference.extract_shells` builds (deliberately spelled out in both)
    return Shells(
        positions=positions,
        faces=faces,
        vertex_offsets=vertex_offsets,
        face_offsets=face_offsets,
        sdf=vertex_sdf,
        attributes=vertex_attributes,
        edges=edges,
        t=t,
        face_voxels=face_voxels,
        levels=levels,
    )
