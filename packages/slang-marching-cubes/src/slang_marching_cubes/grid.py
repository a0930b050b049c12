"""`SparseGrid`: the occupied voxels of an (I, J, K) grid over the unit cube, stored sparsely.

Indexing conventions (used everywhere in the package):

- Voxel ``(i, j, k)``, ``0 <= i < I`` etc., spans ``[i/I, (i+1)/I] x [j/J, (j+1)/J] x
  [k/K, (k+1)/K]``; its linear id is ``(i*J + j)*K + k``.
- Grid vertex ``(i, j, k)``, ``0 <= i <= I`` etc., sits at ``(i/I, j/J, k/K)``; its linear id on
  the ``(I+1) x (J+1) x (K+1)`` lattice is ``(i*(J+1) + j)*(K+1) + k``.
- A grid vertex exists iff it is a corner of an occupied voxel. Per-vertex values (sdf,
  attributes) are user tensors whose first dimension follows ``grid.vertices``.
- Corner ``c`` of a voxel is the vertex at offset ``(c >> 2 & 1, c >> 1 & 1, c & 1)``.

Storage is two sorted, unique int64 id lists (voxels, vertices) plus two small per-row tables
(start of each ``(i, j)`` row in the lists, ``O(I*J)`` entries). Nothing is stored per vertex at
full resolution, and voxel corner/neighbour indices are computed on demand (binary search), so
a 2048^3 grid with 1% of its voxels occupied in a surface band takes about 1.4 GB
(see `SparseGrid.nbytes` and `estimate_nbytes`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from slang_kernel_runtime import BACKENDS, Backend

from . import reference
from ._lattice import CHUNK, check_shape, describe, lin, lookup, row_starts, unlin
from .compilation import KERNELS

__all__ = ["SparseGrid", "estimate_nbytes"]


def grid_vertices(
    voxels: Tensor, voxel_rows: Tensor, shape: tuple[int, int, int], backend: Backend
) -> Tensor:
    """The sorted vertex list of a grid: ``reference.grid_vertices`` in PyTorch, or its Slang
    version on CUDA, as `resolve_backend` decides for ``backend``."""
    if KERNELS.resolve_backend(backend, voxels.device, None, "voxels") == "slang":
        from . import _slang

        return _slang.grid_vertices(voxels, voxel_rows, shape)
    return reference.grid_vertices(voxels, voxel_rows, shape)


class SparseGrid:
    """Occupied voxels of an ``(I, J, K)`` grid over ``[0, 1]^3`` and the vertices they use.

    Build with `from_dense`, `from_packed`, `from_coords`, `from_ids` or `full`; the constructor
    itself takes the sorted unique int64 voxel ids. All tensors live on ``voxels.device``.

    Attributes:
        shape: ``(I, J, K)``, the number of voxels along each axis.
        voxels: int64 ``[Nvox]``, sorted unique linear voxel ids ``(i*J + j)*K + k``.
        vertices: int64 ``[V]``, sorted unique linear lattice ids ``(i*(J+1) + j)*(K+1) + k`` of
            every corner of an occupied voxel. Per-vertex parameters are indexed like this list.
        backend: ``"auto"``, ``"reference"`` or ``"slang"``: what builds the vertex list of this
            grid and of the grids made from it (`prune`, `dilate`, `resample`, `to`): the
            reference in PyTorch, or on CUDA the sort-free Slang builder (same result), as
            `slang_marching_cubes.resolve_backend` decides. ``"slang"`` on a CPU grid raises.
    """

    def __init__(
        self,
        shape: Sequence[int],
        voxels: Tensor,
        *,
        backend: Backend = "auto",
        _vertices: Tensor | None = None,
    ) -> None:
        self.shape = check_shape(shape)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto', 'reference' or 'slang', got {backend!r}")
        if not isinstance(voxels, Tensor) or voxels.dtype != torch.int64 or voxels.dim() != 1:
            raise ValueError(f"voxels must be an int64 [Nvox] tensor, got {describe(voxels)}")
        if voxels.numel():
            if bool((voxels[1:] <= voxels[:-1]).any()):
                raise ValueError("voxels must be sorted and unique (use SparseGrid.from_ids)")
            if int(voxels[0]) < 0 or int(voxels[-1]) >= math.prod(self.shape):
                raise ValueError(f"voxels must be ids in [0, {math.prod(self.shape)})")
        self.backend = backend
        self.voxels = voxels.contiguous()
        ni, nj, nk = self.shape
        self.voxel_rows = row_starts(self.voxels, ni * nj, nk)  # int64 [I*J + 1]
        if _vertices is None:
            _vertices = grid_vertices(self.voxels, self.voxel_rows, self.shape, backend)
        self.vertices = _vertices
        self.vertex_rows = row_starts(self.vertices, (ni + 1) * (nj + 1), nk + 1)  # [(I+1)(J+1)+1]

    # ----------------------------------------------------------------------------- builders
    @classmethod
    def from_ids(
        cls, shape: Sequence[int], ids: Tensor, *, backend: Backend = "auto"
    ) -> SparseGrid:
        """Grid whose occupied voxels have the given linear ids (any order, repeats allowed)."""
        shape = check_shape(shape)
        if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point:
            raise ValueError(f"ids must be an integer [N] tensor, got {describe(ids)}")
        ids = torch.unique(ids.long())
        if ids.numel() and (int(ids[0]) < 0 or int(ids[-1]) >= math.prod(shape)):
            raise ValueError(f"ids must lie in [0, {math.prod(shape)}) for shape {shape}")
        return cls(shape, ids, backend=backend)

    @classmethod
    def from_coords(
        cls, shape: Sequence[int], coords: Tensor, *, backend: Backend = "auto"
    ) -> SparseGrid:
        """Grid whose occupied voxels are the integer ``coords [N, 3]`` (i, j, k)."""
        shape = check_shape(shape)
        if (
            not isinstance(coords, Tensor)
            or coords.dim() != 2
            or coords.shape[1] != 3
            or coords.dtype.is_floating_point
        ):
            raise ValueError(f"coords must be an integer [N, 3] tensor, got {describe(coords)}")
        coords = coords.long()
        bad = (coords < 0) | (coords >= torch.tensor(shape, device=coords.device))
        if bool(bad.any()):
            raise ValueError(f"coords must lie in [0, {shape}) per axis")
        return cls.from_ids(shape, lin(coords, shape), backend=backend)

    @classmethod
    def from_dense(cls, occupancy: Tensor, *, backend: Backend = "auto") -> SparseGrid:
        """Grid from a dense boolean occupancy ``[I, J, K]`` (True = occupied)."""
        if (
            not isinstance(occupancy, Tensor)
            or occupancy.dtype != torch.bool
            or occupancy.dim() != 3
        ):
            raise ValueError(
                f"occupancy must be a bool [I, J, K] tensor, got {describe(occupancy)}"
            )
        shape = check_shape(occupancy.shape, "occupancy.shape")
        ids = torch.nonzero(occupancy.reshape(-1)).reshape(-1)
        return cls(shape, ids, backend=backend)

    @classmethod
    def full(
        cls, shape: Sequence[int], device: torch.device | str = "cpu", *, backend: Backend = "auto"
    ) -> SparseGrid:
        """Grid with every voxel occupied."""
        shape = check_shape(shape)
        return cls(shape, torch.arange(math.prod(shape), device=device), backend=backend)

    @classmethod
    def from_packed(
        cls, bits: Tensor, shape: Sequence[int], *, backend: Backend = "auto"
    ) -> SparseGrid:
        """Grid from packed occupancy bits: uint8 ``[ceil(I*J*K / 8)]``.

        Bit ``b`` (least significant first) of byte ``n`` is the voxel with linear id ``8n + b``
        (numpy's ``packbits(..., bitorder="little")`` of the flattened occupancy).
        """
        shape = check_shape(shape)
        n = math.prod(shape)
        if (
            not isinstance(bits, Tensor)
            or bits.dtype != torch.uint8
            or bits.dim() != 1
            or bits.numel() != (n + 7) // 8
        ):
            raise ValueError(
                f"bits must be a uint8 [{(n + 7) // 8}] tensor for shape {shape}, "
                f"got {describe(bits)}"
            )
        byte_ids = torch.nonzero(bits).reshape(-1)
        values = bits[byte_ids].long()
        shifts = torch.arange(8, device=bits.device)
        set_bits = (values[:, None] >> shifts) & 1
        ids = (byte_ids[:, None] * 8 + shifts)[set_bits.bool()]
        if ids.numel() and int(ids[-1]) >= n:
            raise ValueError("bits has bits set past the last voxel")
        return cls(shape, ids, backend=backend)

    # ----------------------------------------------------------------------------- exports
    @property
    def device(self) -> torch.device:
        return self.voxels.device

    @property
    def num_voxels(self) -> int:
        return self.voxels.numel()

    @property
    def num_vertices(self) -> int:
        return self.vertices.numel()

    @property
    def vertex_shape(self) -> tuple[int, int, int]:
        """``(I+1, J+1, K+1)``, the shape of the vertex lattice."""
        return (self.shape[0] + 1, self.shape[1] + 1, self.shape[2] + 1)

    @property
    def nbytes(self) -> int:
        """Bytes held by the grid's tensors."""
        tensors = (self.voxels, self.vertices, self.voxel_rows, self.vertex_rows)
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str) -> SparseGrid:
        """The same grid (and backend) on another device."""
        voxels, vertices = self.voxels.to(device), self.vertices.to(device)
        return SparseGrid(self.shape, voxels, backend=self.backend, _vertices=vertices)

    def to_dense(self) -> Tensor:
        """bool ``[I, J, K]`` occupancy."""
        out = torch.zeros(math.prod(self.shape), dtype=torch.bool, device=self.device)
        out[self.voxels] = True
        return out.reshape(self.shape)

    def to_packed(self) -> Tensor:
        """uint8 ``[ceil(I*J*K / 8)]`` packed occupancy, the inverse of `from_packed`."""
        n = math.prod(self.shape)
        out = torch.zeros((n + 7) // 8, dtype=torch.int64, device=self.device)
        out.index_add_(0, self.voxels // 8, torch.ones_like(self.voxels) << (self.voxels % 8))
        return out.to(torch.uint8)

    def voxel_coords(self) -> Tensor:
        """int64 ``[Nvox, 3]`` integer coordinates ``(i, j, k)`` of the occupied voxels."""
        return unlin(self.voxels, self.shape)

    def vertex_coords(self) -> Tensor:
        """int64 ``[V, 3]`` lattice coordinates ``(i, j, k)`` of the grid vertices."""
        return unlin(self.vertices, self.vertex_shape)

    def vertex_positions(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``[V, 3]`` vertex positions ``(i/I, j/J, k/K)`` in ``[0, 1]^3``."""
        dims = torch.tensor(self.shape, dtype=dtype, device=self.device)
        return self.vertex_coords().to(dtype) / dims

    def find_voxels(self, coords: Tensor) -> Tensor:
        """int64 ``[...]`` index into `voxels` of each voxel ``coords [..., 3]``, -1 if absent."""
        return lookup(self.voxels, coords.long(), self.shape)

    def find_vertices(self, coords: Tensor) -> Tensor:
        """int64 ``[...]`` index into `vertices` of lattice ``coords [..., 3]``, -1 if absent."""
        return lookup(self.vertices, coords.long(), self.vertex_shape)

    def voxel_corners(self, start: int = 0, stop: int | None = None) -> Tensor:
        """int32 ``[n, 8]`` vertex indices of the corners of voxels ``start:stop``.

        Computed on demand (binary search); corner ``c`` is at offset ``(c>>2&1, c>>1&1, c&1)``.
        """
        coords = unlin(self.voxels[start:stop], self.shape)
        offsets = torch.tensor(
            list(itertools.product((0, 1), repeat=3)), device=self.device, dtype=torch.int64
        )
        return self.find_vertices(coords[:, None, :] + offsets).to(torch.int32)

    def voxel_neighbors(self) -> Tensor:
        """int64 ``[Nvox, 6]`` index of the face neighbours ``(-i, +i, -j, +j, -k, +k)``, -1 if
        unoccupied or outside the grid."""
        offsets = torch.tensor(
            [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]],
            device=self.device,
        )
        return self.find_voxels(self.voxel_coords()[:, None, :] + offsets)

    # ----------------------------------------------------------------------------- editing
    def prune(self, keep: Tensor, *, backend: Backend | None = None) -> SparseGrid:
        """Grid of the voxels where ``keep`` (bool ``[Nvox]``) is True; ``backend``: of the new
        grid (default: this grid's)."""
        if (
            not isinstance(keep, Tensor)
            or keep.dtype != torch.bool
            or keep.shape != (self.num_voxels,)
        ):
            raise ValueError(
                f"keep must be a bool [{self.num_voxels}] tensor, got {describe(keep)}"
            )
        if keep.device != self.device:
            raise ValueError(f"keep must be on {self.device}, got {keep.device}")
        return SparseGrid(self.shape, self.voxels[keep], backend=backend or self.backend)

    def dilate(self, k: int = 1, *, backend: Backend | None = None) -> SparseGrid:
        """Grid grown by ``k`` voxels in the Chebyshev (box) sense, clipped to the grid;
        ``backend``: of the new grid (default: this grid's)."""
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be an int >= 0, got {k!r}")
        ids = self.voxels
        for axis in range(3):  # a box dilation is separable: one axis after the other
            coords = unlin(ids, self.shape)
            parts = []
            for d in range(-k, k + 1):
                c = coords.clone()
                c[:, axis] += d
                c = c[(c[:, axis] >= 0) & (c[:, axis] < self.shape[axis])]
                parts.append(lin(c, self.shape))
            ids = torch.unique(torch.cat(parts))
        return SparseGrid(self.shape, ids, backend=backend or self.backend)

    def resample(self, shape: Sequence[int], *, backend: Backend | None = None) -> SparseGrid:
        """Grid at a larger (or equal) resolution covering the same region.

        A new voxel is occupied iff it overlaps (with positive volume) an occupied old voxel.
        Exact integer arithmetic, so any ratio works (128 -> 192, 256 -> 320, ...). Transfer
        per-vertex values to the new grid with `transfer`. ``backend``: of the new grid (default:
        this grid's).
        """
        new = check_shape(shape)
        if any(n < o for n, o in zip(new, self.shape, strict=True)):
            raise ValueError(f"shape must be >= the current shape {self.shape} per axis, got {new}")
        coords = self.voxel_coords()
        ranges = []
        for axis in range(3):
            old_n, new_n = self.shape[axis], new[axis]
            lo = coords[:, axis] * new_n // old_n  # first new voxel overlapping old voxel o
            hi = ((coords[:, axis] + 1) * new_n + old_n - 1) // old_n  # one past the last
            ranges.append((lo, hi, -(-new_n // old_n) + 1))
        parts = []
        for di, dj, dk in itertools.product(*(range(r[2]) for r in ranges)):
            c = torch.stack((ranges[0][0] + di, ranges[1][0] + dj, ranges[2][0] + dk), dim=1)
            ok = (c[:, 0] < ranges[0][1]) & (c[:, 1] < ranges[1][1]) & (c[:, 2] < ranges[2][1])
            parts.append(lin(c[ok], new))
        ids = torch.unique(torch.cat(parts)) if parts else self.voxels.new_empty(0)
        return SparseGrid(new, ids, backend=backend or self.backend)

    def transfer(self, values: Tensor, target: SparseGrid, max_radius: int = 8) -> Tensor:
        """Per-vertex ``values [V, ...]`` of this grid, evaluated at ``target``'s vertices.

        Each target vertex ``p`` takes the trilinear interpolant of the occupied voxel of this
        grid that is nearest to ``p`` (the voxel containing ``p`` whenever it is occupied;
        otherwise the trilinear polynomial of a neighbour is extrapolated). A field that is
        linear in position is therefore reproduced exactly on any target grid. Voxels are
        searched up to ``max_radius`` cells away; a target vertex farther than that from every
        occupied voxel raises ValueError. Returns ``[V_target, ...]`` in ``values.dtype``.
        Not differentiable in the grid geometry; gradients do flow to ``values``.
        """
        if not isinstance(target, SparseGrid):
            raise ValueError(f"target must be a SparseGrid, got {type(target).__name__}")
        if (
            not isinstance(values, Tensor)
            or values.dim() < 1
            or values.shape[0] != self.num_vertices
        ):
            raise ValueError(
                f"values must be a [{self.num_vertices}, ...] tensor, got {describe(values)}"
            )
        if not values.dtype.is_floating_point:
            raise ValueError(f"values must be floating point, got {values.dtype}")
        if values.device != self.device or target.device != self.device:
            raise ValueError(f"values and target must be on {self.device}")
        out = values.new_zeros((target.num_vertices, *values.shape[1:]))
        if target.num_vertices == 0:
            return out
        if self.num_voxels == 0:
            raise ValueError("cannot transfer values from an empty grid")
        for start in range(0, target.num_vertices, CHUNK // 8):
            stop = min(start + CHUNK // 8, target.num_vertices)
            out[start:stop] = self._transfer_chunk(values, target, start, stop, max_radius)
        return out

    def _transfer_chunk(
        self, values: Tensor, target: SparseGrid, start: int, stop: int, max_radius: int
    ) -> Tensor:
        dev = self.device
        tdims = torch.tensor(target.shape, device=dev)
        sdims = torch.tensor(self.shape, device=dev)
        tcoords = unlin(target.vertices[start:stop], target.vertex_shape)
        # position in units of this grid's voxels: q = tcoords * sdims / tdims (exact rational)
        num = tcoords * sdims  # q = num / tdims
        cell = torch.minimum(num // tdims, sdims - 1)
        q = num.double() / tdims.double()
        n = stop - start
        best_voxel = torch.full((n,), -1, dtype=torch.int64, device=dev)
        best_dist = torch.full((n,), math.inf, dtype=torch.float64, device=dev)
        for radius in range(1, max_radius + 1):
            todo = torch.nonzero(best_voxel < 0).reshape(-1)
            if todo.numel() == 0:
                break
            rng = range(-radius, radius + 1)
            for off in itertools.product(rng, rng, rng):
                if radius > 1 and max(abs(o) for o in off) < radius:
                    continue  # searched at a smaller radius
                c = cell[todo] + torch.tensor(off, device=dev)
                vox = self.find_voxels(c)
                box_lo = c.double()
                dist = (
                    ((box_lo - q[todo]).clamp(min=0) + (q[todo] - box_lo - 1).clamp(min=0))
                    .square()
                    .sum(-1)
                )
                better = (vox >= 0) & (dist < best_dist[todo])
                best_voxel[todo] = torch.where(better, vox, best_voxel[todo])
                best_dist[todo] = torch.where(better, dist, best_dist[todo])
        if bool((best_voxel < 0).any()):
            raise ValueError(
                f"target has vertices more than max_radius={max_radius} voxels away from every "
                "occupied voxel of this grid"
            )
        vcoords = unlin(self.voxels[best_voxel], self.shape)
        u = (q - vcoords.double()).to(values.dtype)  # local coordinates, may leave [0, 1]
        result = 0
        for c in range(8):
            off = torch.tensor([(c >> 2) & 1, (c >> 1) & 1, c & 1], device=dev)
            idx = self.find_vertices(vcoords + off)
            w = torch.where(off.bool(), u, 1 - u).prod(-1)
            w = w.reshape(-1, *([1] * (values.dim() - 1)))
            result = result + w * values[idx]
        return result


def estimate_nbytes(shape: Sequence[int], num_voxels: int, num_vertices: int) -> int:
    """Bytes a `SparseGrid` holds for the given counts (ids int64, row tables int64)."""
    ni, nj, _ = check_shape(shape)
    return 8 * (num_voxels + num_vertices + (ni * nj + 1) + ((ni + 1) * (nj + 1) + 1))
