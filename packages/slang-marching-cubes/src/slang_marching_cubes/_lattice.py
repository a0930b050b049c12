"""Index arithmetic of the voxel and vertex lattices, shared by the grid and both backends.

Conventions: see `slang_marching_cubes.grid`. Linear ids are int64; a lattice of ``dims = (I, J,
K)`` numbers ``(i, j, k)`` as ``(i*J + j)*K + k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: voxels processed at once by the chunked builders (bounds transient memory)
CHUNK = 1 << 20


def check_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, int, int]:
    """``shape`` as 3 positive ints, or a ValueError naming ``name``."""
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{name} must be 3 positive ints (I, J, K), got {shape!r}") from None
    if len(out) != 3 or any(s <= 0 for s in out) or any(int(s) != s for s in shape):
        raise ValueError(f"{name} must be 3 positive ints (I, J, K), got {tuple(shape)!r}")
    if (out[0] + 1) * (out[1] + 1) * (out[2] + 1) >= 2**62:
        raise ValueError(f"{name} {out} is too large for int64 vertex ids")
    return out  # type: ignore[return-value]


def lin(coords: Tensor, dims: tuple[int, int, int]) -> Tensor:
    """Linear ids of integer ``coords [..., 3]`` on a lattice of ``dims``."""
    return (coords[..., 0] * dims[1] + coords[..., 1]) * dims[2] + coords[..., 2]


def unlin(ids: Tensor, dims: tuple[int, int, int]) -> Tensor:
    """Integer coordinates ``[..., 3]`` of linear ``ids`` on a lattice of ``dims``."""
    k = ids % dims[2]
    ij = ids // dims[2]
    return torch.stack((ij // dims[1], ij % dims[1], k), dim=-1)


def lookup(sorted_ids: Tensor, coords: Tensor, dims: tuple[int, int, int]) -> Tensor:
    """Index of each coordinate triple in ``sorted_ids`` (a lattice of ``dims``), or -1."""
    inside = ((coords >= 0) & (coords < torch.tensor(dims, device=coords.device))).all(-1)
    ids = lin(coords.clamp(min=0), dims)
    if sorted_ids.numel() == 0:
        return torch.full(ids.shape, -1, dtype=torch.int64, device=ids.device)
    pos = torch.searchsorted(sorted_ids, ids).clamp(max=sorted_ids.numel() - 1)
    found = inside & (sorted_ids[pos] == ids)
    return torch.where(found, pos, torch.full_like(pos, -1))


def row_starts(ids: Tensor, rows: int, row_len: int) -> Tensor:
    """int64 [rows + 1]: start of each row (ids // row_len) in the sorted id list."""
    bounds = torch.arange(rows + 1, device=ids.device, dtype=torch.int64) * row_len
    return torch.searchsorted(ids, bounds)


def describe(x: object) -> str:
    """A tensor as "float32 [3, 4] on cpu", anything else as its type's name (for messages)."""
    if isinstance(x, Tensor):
        return f"{str(x.dtype).replace('torch.', '')} {list(x.shape)} on {x.device}"
    return type(x).__name__
