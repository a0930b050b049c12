"""Pure-PyTorch reference implementation: the specification the Slang kernels are tested against.

Vectorized (no Python loop over voxels), CPU and CUDA, float32 and float64. The public entry
points are `slang_marching_cubes.extract_shells` and `slang_marching_cubes.sdf_regularizers`,
which validate their inputs and dispatch here or to the Slang backend.

Edge ownership. An edge is shared by up to 4 voxels; its mesh vertex (one per level) is created
by the occupied voxel with the smallest linear id among them, its *owner*. Only edges of
occupied voxels can have an owner, so no vertex is created that no face uses. A voxel's edge
slot ``e = 4*axis + 2*da + db`` is shared with the voxels at offsets ``(da - a', db - b')`` in
the two other axes, where ``(a', b')`` is the slot of the same edge in that voxel; the smallest
id is the lexicographically largest ``(a', b')``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import _table
from ._lattice import CHUNK, lin, unlin
from .shells import Shells

if TYPE_CHECKING:  # the grid module dispatches to this one: no import back at run time
    from .grid import SparseGrid

__all__ = [
    "grid_vertices",
    "corner_laplacians",
    "extract_shells",
    "sdf_regularizers",
    "interpolate_vertices",
    "interpolate_pair",
]


def grid_vertices(
    voxels: Tensor, voxel_rows: Tensor, shape: tuple[int, int, int], chunk: int = CHUNK
) -> Tensor:
    """Reference of the `SparseGrid` vertex list: sorted unique lattice ids of every corner of
    the sorted unique ``voxels`` (int64 ``[Nvox]``; ``voxel_rows`` int64 ``[I*J + 1]``, the start
    of each ``(i, j)`` row), built slab by slab.

    A slab of lattice planes ``i in [a, b)`` needs the voxels with ``i in [a-1, b)``; slabs are
    sized to about ``chunk`` voxels so the transient ``[8 * chunk]`` candidate list stays small.
    """
    ni, nj, nk = shape
    vdims = (ni + 1, nj + 1, nk + 1)
    if voxels.numel() == 0:
        return voxels.new_empty(0)
    starts = voxel_rows[::nj].tolist()  # start of each plane i in [0, I], the end included
    out, a = [], 0
    while a <= ni:
        b = a + 1
        while b <= ni and starts[min(b, ni)] - starts[max(a - 1, 0)] < chunk:
            b += 1
        lo, hi = starts[max(a - 1, 0)], starts[min(b, ni)]
        if hi > lo:
            coords = unlin(voxels[lo:hi], shape)
            offsets = torch.tensor(
                list(itertools.product((0, 1), repeat=3)), device=voxels.device, dtype=torch.int64
            )
            corners = (coords[:, None, :] + offsets[None]).reshape(-1, 3)
            corners = corners[(corners[:, 0] >= a) & (corners[:, 0] < b)]
            out.append(torch.unique(lin(corners, vdims)))
        a = b
    return torch.cat(out) if out else voxels.new_empty(0)


def _owner_candidates() -> list[list[tuple[tuple[int, int, int], int]]]:
    """Per edge slot: the 4 voxels sharing it as (offset, slot there), in owner priority order."""
    out = []
    for e in range(12):
        axis, da, db = e // 4, (e >> 1) & 1, e & 1
        others = [a for a in range(3) if a != axis]
        cands = []
        for a2, b2 in ((1, 1), (1, 0), (0, 1), (0, 0)):
            off = [0, 0, 0]
            off[others[0]], off[others[1]] = da - a2, db - b2
            cands.append((tuple(off), 4 * axis + 2 * a2 + b2))
        out.append(cands)
    return out


OWNER_CANDIDATES = _owner_candidates()
#: the 18 neighbour offsets that share an edge with a voxel; bit (di+1)*9 + (dj+1)*3 + (dk+1)
NEIGHBOR_OFFSETS = [o for o in itertools.product((-1, 0, 1), repeat=3) if 0 in o and o != (0, 0, 0)]


def neighbor_bit(off: tuple[int, int, int]) -> int:
    return (off[0] + 1) * 9 + (off[1] + 1) * 3 + (off[2] + 1)


def neighbor_masks(grid: SparseGrid, index: Tensor) -> Tensor:
    """int64 ``[n]``: bit ``neighbor_bit(off)`` set iff the voxel at ``off`` from voxel
    ``grid.voxels[index]`` is occupied (18 edge-sharing offsets, plus bit 13 for itself)."""
    coords = unlin(grid.voxels[index], grid.shape)
    offs = torch.tensor(NEIGHBOR_OFFSETS, device=grid.device)
    found = grid.find_voxels(coords[:, None, :] + offs) >= 0  # [n, 18]
    bits = torch.tensor([1 << neighbor_bit(o) for o in NEIGHBOR_OFFSETS], device=grid.device)
    return (found.long() * bits).sum(-1) | (1 << 13)


def owned_and_owner(masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """From neighbour masks ``[n]``: ``owned`` bool ``[n, 12]`` (this voxel owns the edge),
    ``owner_offset`` int64 ``[n, 12, 3]`` and ``owner_slot`` int64 ``[n, 12]`` of the owner."""
    n = masks.numel()
    owned = torch.zeros((n, 12), dtype=torch.bool, device=masks.device)
    owner_offset = torch.zeros((n, 12, 3), dtype=torch.int64, device=masks.device)
    owner_slot = torch.zeros((n, 12), dtype=torch.int64, device=masks.device)
    for e, cands in enumerate(OWNER_CANDIDATES):
        found = torch.zeros(n, dtype=torch.bool, device=masks.device)
        for off, slot in cands:  # first occupied candidate in priority order is the owner
            here = ~found & (((masks >> neighbor_bit(off)) & 1) == 1)
            owner_offset[here, e] = torch.tensor(off, device=masks.device)
            owner_slot[here, e] = slot
            if off == (0, 0, 0):
                owned[:, e] = here
            found |= here
    return owned, owner_offset, owner_slot


#: grids with at most this many voxels also keep the reference extraction's edge-ownership
#: tables (about 70 bytes per voxel) between calls; the index tables are always kept
CACHE_VOXELS = 1 << 20


def _static_tables(grid: SparseGrid) -> dict[str, Tensor]:
    """Per-grid cache of the index tables every call needs (they depend on the grid only).

    Training extracts and regularizes the same grid at every step; the binary searches that
    build these tables would otherwise dominate the reference's time (and, at a few million
    voxels, a good part of a GPU training step's). The corner and neighbour tables are kept
    compactly (int32, at most 59 bytes per voxel) for every grid; the ownership tables only
    for grids of at most `CACHE_VOXELS` voxels. The cache is keyed on the identity and version
    of the grid's id tensors, so an in-place edit invalidates it.
    """
    key = (
        grid.voxels.data_ptr(),
        grid.voxels._version,
        grid.vertices.data_ptr(),
        grid.vertices._version,
    )
    cached = getattr(grid, "_reference_tables", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    tables: dict[str, Tensor] = {}
    grid._reference_tables = (key, tables)
    return tables


def _gather(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for an int32/int64 `index` of any shape into dim 0 of ``values [V, ...]``.

    Through ``index_select``, whose backward adds with atomics (``index_add_``); autograd of
    advanced indexing sorts the indices instead (``index_put_(accumulate=True)``), which took
    9 ms of a 23 ms training step at 128^3 on an H200.
    """
    flat = values.index_select(0, index.reshape(-1))
    return flat.reshape(*index.shape, *values.shape[1:])


def _voxel_corners(grid: SparseGrid) -> Tensor:
    """int32 ``[Nvox, 8]`` `SparseGrid.voxel_corners` of every voxel (cached)."""
    tables = _static_tables(grid)
    if "corners" not in tables:
        tables["corners"] = grid.voxel_corners().to(torch.int32)
    return tables["corners"]


def _positive_neighbors(grid: SparseGrid) -> Tensor:
    """int32 ``[Nvox, 3]`` index of the +i, +j, +k face neighbours, -1 if absent (cached)."""
    tables = _static_tables(grid)
    if "positive_neighbors" not in tables:
        neighbors = grid.voxel_neighbors()[:, 1::2]
        tables["positive_neighbors"] = neighbors.to(torch.int32).contiguous()
    return tables["positive_neighbors"]


def _corner_plus_neighbors(grid: SparseGrid) -> tuple[Tensor, Tensor]:
    """The grid vertices one step beyond each voxel's +xyz corner along +i, +j, +k (lattice
    ``(i+2, j+1, k+1)`` etc.), cached: int32 ``[Nvox, 3]`` vertex index (0 where none exists, so
    that it can be gathered with) and bool ``[Nvox, 3]``, whether it exists."""
    tables = _static_tables(grid)
    if "corner_plus" not in tables:
        offsets = torch.tensor([[2, 1, 1], [1, 2, 1], [1, 1, 2]], device=grid.device)
        found = grid.find_vertices(grid.voxel_coords()[:, None, :] + offsets)
        tables["corner_plus_present"] = found >= 0
        tables["corner_plus"] = found.clamp(min=0).to(torch.int32)
    return tables["corner_plus"], tables["corner_plus_present"]


def _ownership(grid: SparseGrid, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For voxels ``grid.voxels[index]``: ``owned`` bool ``[n, 12]``, the owner's edge slot
    int64 ``[n, 12]`` and the owner's voxel index int64 ``[n, 12]`` (into ``grid.voxels``).

    Computed for every voxel once per grid and cached when the grid is small enough
    (`CACHE_VOXELS`), else for the given voxels only (at every call).
    """
    tables = _static_tables(grid)
    if "owned" in tables:  # stored compactly: int8 slots, int32 voxel indices
        slot, voxel = tables["owner_slot"][index].long(), tables["owner_voxel"][index].long()
        return tables["owned"][index], slot, voxel
    cache = grid.num_voxels <= CACHE_VOXELS
    if cache:
        index_all = torch.arange(grid.num_voxels, device=grid.device)
    else:
        index_all = index
    owned, owner_offset, owner_slot = owned_and_owner(neighbor_masks(grid, index_all))
    own_coords = unlin(grid.voxels[index_all], grid.shape)[:, None, :] + owner_offset
    owner_voxel = grid.find_voxels(own_coords)  # [n, 12]
    if not cache:
        return owned, owner_slot, owner_voxel
    tables["owned"] = owned
    tables["owner_slot"] = owner_slot.to(torch.int8)
    tables["owner_voxel"] = owner_voxel.to(torch.int32)
    return owned[index], owner_slot[index], owner_voxel[index]


def _tables(device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    offsets = torch.from_numpy(_table.TRI_OFFSETS).long().to(device)
    tris = torch.from_numpy(_table.TRI_EDGES).long().to(device)
    edge_corners = torch.from_numpy(_table.EDGE_CORNERS).long().to(device)
    corner_offsets = torch.from_numpy(_table.CORNER_OFFSETS).long().to(device)
    return offsets, tris, edge_corners, corner_offsets


class _InterpolateVertices(torch.autograd.Function):
    """``(1 - t) values[a] + t values[b]`` with ``t`` a constant; backward by index_add_."""

    @staticmethod
    def forward(ctx, values: Tensor, a: Tensor, b: Tensor, t: Tensor) -> Tensor:
        ctx.save_for_backward(a, b, t)
        ctx.num = values.shape[0]
        tt = t.reshape(-1, *([1] * (values.dim() - 1)))
        return torch.lerp(values[a.long()], values[b.long()], tt)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b, t = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        grad = grad.contiguous()
        tt = t.reshape(-1, *([1] * (grad.dim() - 1)))
        out = grad.new_zeros((ctx.num, *grad.shape[1:]))
        out.index_add_(0, a.long(), grad * (1 - tt))
        out.index_add_(0, b.long(), grad * tt)
        return out, None, None, None


def interpolate_vertices(values: Tensor, edges: Tensor, t: Tensor) -> Tensor:
    """``(1 - t) values[a] + t values[b]`` for ``edges [N, 2] = (a, b)`` and a constant ``t [N]``.

    ``values`` is ``[V, ...]``; the result ``[N, ...]`` is differentiable w.r.t. ``values`` only.
    This is how `Shells.sdf` and `Shells.attributes` are made from the grid values.
    """
    return _InterpolateVertices.apply(values, edges[:, 0], edges[:, 1], t.detach().to(values.dtype))


def interpolate_pair(
    first: Tensor, second: Tensor, edges: Tensor, t: Tensor
) -> tuple[Tensor, Tensor]:
    """`interpolate_vertices` of two value arrays with the same edges and ``t`` (the vertex sdf
    and attributes of `extract_shells`)."""
    return interpolate_vertices(first, edges, t), interpolate_vertices(second, edges, t)


def _empty_shells(grid: SparseGrid, sdf: Tensor, attributes: Tensor, levels: Tensor) -> Shells:
    dev = sdf.device
    num_levels = levels.numel()
    zeros = torch.zeros(num_levels + 1, dtype=torch.int64)
    empty_idx = torch.zeros((0, 2), dtype=torch.int32, device=dev)
    empty_t = sdf.new_zeros(0)
    return Shells(
        positions=torch.zeros((0, 3), dtype=torch.float32, device=dev),
        faces=torch.zeros((0, 3), dtype=torch.int32, device=dev),
        vertex_offsets=zeros,
        face_offsets=zeros.clone(),
        sdf=interpolate_vertices(sdf, empty_idx, empty_t),
        attributes=interpolate_vertices(attributes, empty_idx, empty_t),
        edges=empty_idx,
        t=empty_t,
        face_voxels=torch.zeros(0, dtype=torch.int32, device=dev),
        levels=levels,
    )


def extract_shells(grid: SparseGrid, sdf: Tensor, attributes: Tensor, levels: Tensor) -> Shells:
    """Reference for `slang_marching_cubes.extract_shells` (inputs already validated).

    Args:
        grid: the sparse grid.
        sdf: float32/float64 ``[V]`` grid values, indexed like ``grid.vertices``.
        attributes: ``[V, F]`` (same dtype), interpolated like ``sdf``.
        levels: ``[L]`` strictly decreasing, same dtype and device as ``sdf``.
    """
    dev = sdf.device
    num_levels = levels.numel()
    tri_offsets, tri_edges, edge_corners, corner_offsets = _tables(dev)
    if grid.num_voxels == 0:
        return _empty_shells(grid, sdf, attributes, levels)

    # 1. classify every voxel at every level: code bit c set iff corner c is >= level
    corners = _voxel_corners(grid)  # [Nvox, 8]
    values = _gather(sdf, corners)  # [Nvox, 8]
    above = values[None] >= levels[:, None, None]  # [L, Nvox, 8]
    codes = (above.long() << torch.arange(8, device=dev)).sum(-1)  # [L, Nvox]
    active_mask = ((codes != 0) & (codes != 255)).any(0)
    active = torch.nonzero(active_mask).reshape(-1)  # grid voxel index of active voxels
    if active.numel() == 0:
        return _empty_shells(grid, sdf, attributes, levels)
    codes = codes[:, active]  # [L, A]
    corners = corners[active].long()  # [A, 8]
    num_active = active.numel()

    # 2. crossings and ownership of the 12 edges of each active voxel
    ca, cb = edge_corners[:, 0], edge_corners[:, 1]
    crossing = ((codes[..., None] >> ca) & 1) != ((codes[..., None] >> cb) & 1)  # [L, A, 12]
    owned, owner_slot, own_voxel = _ownership(grid, active)  # [A, 12] each
    created = crossing & owned  # [L, A, 12]

    # 3. vertices, ordered by (level, voxel, slot)
    lvl, vox, slot = torch.nonzero(created, as_tuple=True)
    counts = created.sum((1, 2))  # [L]
    vertex_offsets = torch.zeros(num_levels + 1, dtype=torch.int64)
    vertex_offsets[1:] = torch.cumsum(counts.cpu(), 0)
    a = corners[vox, ca[slot]]
    b = corners[vox, cb[slot]]
    sa, sb = sdf[a], sdf[b]
    lv = levels[lvl]
    denom = sb - sa
    safe = torch.where(denom == 0, torch.ones_like(denom), denom)
    t = torch.where(denom == 0, torch.full_like(sa, 0.5), ((lv - sa) / safe).clamp(0, 1)).detach()
    lower = unlin(grid.vertices[a], grid.vertex_shape)  # lattice coords of the lower end
    axis = slot // 4
    step = torch.nn.functional.one_hot(axis, 3).to(torch.float32) * t.to(torch.float32)[:, None]
    dims = torch.tensor(grid.shape, dtype=torch.float32, device=dev)
    positions = (lower.to(torch.float32) + step) / dims
    edges = torch.stack((a, b), dim=1).to(torch.int32)

    # vertex id of every crossing edge (owned or not) through its owner: [L, A, 12]
    vid = torch.full(created.shape, -1, dtype=torch.int64, device=dev)
    vid[lvl, vox, slot] = torch.arange(lvl.numel(), device=dev)
    # owners of crossing edges are active: their index in `active` (others: any valid index)
    active_index = torch.zeros(grid.num_voxels, dtype=torch.int64, device=dev)
    active_index[active] = torch.arange(num_active, device=dev)
    own_active = active_index[own_voxel]

    # 4. faces, ordered by (level, voxel, table order)
    ntri = tri_offsets[codes + 1] - tri_offsets[codes]  # [L, A]
    face_counts = ntri.sum(1)
    face_offsets = torch.zeros(num_levels + 1, dtype=torch.int64)
    face_offsets[1:] = torch.cumsum(face_counts.cpu(), 0)
    flat = ntri.reshape(-1)
    cell = torch.repeat_interleave(torch.arange(flat.numel(), device=dev), flat)  # (l, a) per face
    first = torch.cumsum(flat, 0) - flat
    rank = torch.arange(cell.numel(), device=dev) - first[cell]
    f_level, f_vox = cell // num_active, cell % num_active
    f_slots = tri_edges[tri_offsets[codes.reshape(-1)[cell]] + rank]  # [M, 3] edge slots
    o_act = own_active[f_vox[:, None], f_slots]  # [M, 3]
    o_slot = owner_slot[f_vox[:, None], f_slots]
    faces = vid[f_level[:, None], o_act, o_slot].to(torch.int32)

    vertex_sdf, vertex_attributes = interpolate_pair(sdf, attributes, edges, t)
    # the same Shells as `_slang.extract_shells` builds (deliberately spelled out in both)
    return Shells(
        positions=positions,
        faces=faces,
        vertex_offsets=vertex_offsets,
        face_offsets=face_offsets,
        sdf=vertex_sdf,
        attributes=vertex_attributes,
        edges=edges,
        t=t,
        face_voxels=active[f_vox].to(torch.int32),
        levels=levels,
    )


def voxel_gradients(grid: SparseGrid, sdf: Tensor) -> Tensor:
    """``[Nvox, 3]`` gradient of each voxel's trilinear interpolant at its centre, in
    ``[0, 1]^3`` units: ``d/dx_a = dims[a] * mean over the 4 edges along a of (s_hi - s_lo)``."""
    return _centre_gradients(grid, _gather(sdf, _voxel_corners(grid)))


def _centre_gradients(grid: SparseGrid, corner_values: Tensor) -> Tensor:
    """`voxel_gradients` from the ``[Nvox, 8]`` values at the voxels' corners."""
    # corner c sits at offset (c>>2&1, c>>1&1, c&1): v[n, i, j, k]; plain slices, so that the
    # backward adds into the corners without indexing
    v = corner_values.reshape(-1, 2, 2, 2)
    dims = torch.tensor(grid.shape, dtype=v.dtype, device=v.device)
    grads = (
        (v[:, 1] - v[:, 0]).mean((1, 2)),
        (v[:, :, 1] - v[:, :, 0]).mean((1, 2)),
        (v[:, :, :, 1] - v[:, :, :, 0]).mean((1, 2)),
    )
    return torch.stack(grads, dim=-1) * dims


def corner_laplacians(grid: SparseGrid, sdf: Tensor) -> Tensor:
    """``[Nvox]`` discrete Laplacian of the grid values at each voxel's +xyz corner ``c``.

    ``L = sum over the n neighbours c +- e_a that are grid vertices of (s_nb - s_c)``: the
    three ``c - e_a`` are corners of the voxel and always exist, the three ``c + e_a`` exist
    when some occupied voxel has them as a corner, so ``3 <= n <= 6``. Grid units (no division
    by ``h^2``).
    """
    return _corner_laplacians(grid, sdf, _gather(sdf, _voxel_corners(grid)))


def _corner_laplacians(grid: SparseGrid, sdf: Tensor, corner_values: Tensor) -> Tensor:
    """`corner_laplacians` given the ``[Nvox, 8]`` values at the voxels' corners too."""
    v = corner_values  # corner c at offset (c>>2&1, c>>1&1, c&1)
    center = v[:, 7]
    laplacian = v[:, 3] + v[:, 5] + v[:, 6] - 3 * center  # the -i, -j, -k neighbours
    plus, present = _corner_plus_neighbors(grid)
    values = _gather(sdf, plus) - center[:, None]
    return laplacian + torch.where(present, values, 0.0).sum(-1)


def sdf_regularizers(
    grid: SparseGrid, sdf: Tensor, curvature: str = "gradient"
) -> dict[str, Tensor]:
    """Reference for `slang_marching_cubes.sdf_regularizers` (see its docstring)."""
    zero = sdf.sum() * 0  # keeps the graph (and the dtype/device) for empty grids
    if grid.num_voxels == 0:
        return {"eikonal_pos": zero, "eikonal_neg": zero, "curvature": zero}
    corner_values = _gather(sdf, _voxel_corners(grid))  # one gather for both terms
    g = _centre_gradients(grid, corner_values)  # [Nvox, 3]
    norm = torch.linalg.vector_norm(g, dim=-1)
    eikonal_pos = torch.relu(norm - 1).square().mean()
    eikonal_neg = torch.relu(1 - norm).square().mean()
    if curvature == "laplacian":
        laplacian = _corner_laplacians(grid, sdf, corner_values).square().mean()
        return {"eikonal_pos": eikonal_pos, "eikonal_neg": eikonal_neg, "curvature": laplacian}
    nb = _positive_neighbors(grid)  # +i, +j, +k neighbours [Nvox, 3]
    terms = []
    for axis in range(3):
        has = torch.nonzero(nb[:, axis] >= 0).reshape(-1)
        diff = (_gather(g, nb[has, axis]) - _gather(g, has)) * grid.shape[axis]  # / h_axis
        terms.append(diff.square().sum(-1))
    pairs = torch.cat(terms)
    curvature = pairs.mean() if pairs.numel() else zero
    return {"eikonal_pos": eikonal_pos, "eikonal_neg": eikonal_neg, "curvature": curvature}
