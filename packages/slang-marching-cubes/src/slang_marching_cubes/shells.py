"""`Shells`: the output of `extract_shells`, and small mesh helpers (PLY export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["Shells", "write_ply"]


@dataclass
class Shells:
    """Independent triangle meshes, one per level, concatenated shell after shell.

    Shell ``l`` owns vertices ``vertex_offsets[l]:vertex_offsets[l+1]`` and faces
    ``face_offsets[l]:face_offsets[l+1]``; its faces index only its own vertices (global indices
    into `positions`). Within a shell, vertices are ordered by (voxel owning the edge, edge slot)
    and faces by (voxel, table order), so both backends give the same order.

    Attributes:
        positions: float32 ``[N, 3]``, vertex positions in the grid's ``[0, 1]^3`` (no gradient).
        faces: int32 ``[M, 3]``, counter-clockwise seen from the side of increasing sdf: the
            right-hand normal ``(v1 - v0) x (v2 - v0)`` points toward increasing sdf (outward).
        vertex_offsets: int64 ``[L + 1]`` on the CPU, CSR ranges of each shell's vertices.
        face_offsets: int64 ``[L + 1]`` on the CPU, CSR ranges of each shell's faces.
        sdf: ``[N]`` (the dtype of the grid sdf), ``(1 - t) s_a + t s_b`` with a detached ``t``:
            equal to the shell's level, differentiable w.r.t. the two grid values.
        attributes: ``[N, F]``, ``(1 - t) c_a + t c_b``, differentiable.
        edges: int32 ``[N, 2]``, grid-vertex indices ``(a, b)`` of each vertex's edge (``a`` the
            lower end).
        t: ``[N]``, the detached interpolation weight ``clamp((l - s_a) / (s_b - s_a), 0, 1)``.
        face_voxels: int32 ``[M]``, index in ``grid.voxels`` of the voxel each face lies in.
        levels: ``[L]``, the strictly decreasing levels (shell 0 is the outermost).
    """

    positions: Tensor
    faces: Tensor
    vertex_offsets: Tensor
    face_offsets: Tensor
    sdf: Tensor
    attributes: Tensor
    edges: Tensor
    t: Tensor
    face_voxels: Tensor
    levels: Tensor

    @property
    def num_levels(self) -> int:
        return self.levels.numel()

    def shell(self, level: int) -> tuple[Tensor, Tensor]:
        """``(positions [n, 3], faces [m, 3])`` of shell ``level``, faces re-indexed from 0."""
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level must be in [0, {self.num_levels}), got {level}")
        v0, v1 = (int(x) for x in self.vertex_offsets[level : level + 2])
        f0, f1 = (int(x) for x in self.face_offsets[level : level + 2])
        return self.positions[v0:v1], self.faces[f0:f1] - v0


def write_ply(path: str | Path, positions: Tensor, faces: Tensor) -> None:
    """Write a triangle mesh as a binary little-endian PLY file.

    Args:
        path: output file.
        positions: float ``[N, 3]`` vertex positions.
        faces: integer ``[M, 3]`` vertex indices in ``[0, N)``.
    """
    if not isinstance(positions, Tensor) or positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be a float [N, 3] tensor, got {positions!r:.80}")
    if not isinstance(faces, Tensor) or faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be an integer [M, 3] tensor, got {faces!r:.80}")
    if faces.dtype.is_floating_point:
        raise ValueError(f"faces must be an integer [M, 3] tensor, got {faces.dtype}")
    pos = positions.detach().to("cpu", torch.float32).numpy()
    tri = faces.detach().to("cpu", torch.int32).numpy()
    if tri.size and (tri.min() < 0 or tri.max() >= len(pos)):
        raise ValueError(f"faces must index [0, {len(pos)}), got [{tri.min()}, {tri.max()}]")
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(pos)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(tri)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face_rec = np.zeros(len(tri), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["v"] = tri
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(pos.astype("<f4").tobytes())
        f.write(face_rec.tobytes())


def read_ply(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read back a file written by `write_ply`: ``(positions float32 [N,3], faces int32 [M,3])``."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").split("\n")
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    pos = np.frombuffer(data, dtype="<f4", count=3 * nv, offset=end).reshape(nv, 3)
    rec = np.frombuffer(
        data, dtype=[("n", "u1"), ("v", "<i4", (3,))], count=nf, offset=end + 12 * nv
    )
    return torch.from_numpy(pos.copy()), torch.from_numpy(rec["v"].copy())
