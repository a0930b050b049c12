"""`Shells`: the output of `extract_shells`, and small mesh helpers (PLY export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from slang_kernel_runtime.cache import write_atomic

__all__ = ["Shells", "write_ply", "read_ply"]


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


def _array(name: str, value: object, what: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype in (torch.float16, torch.bfloat16) else value).numpy()
    if isinstance(value, np.ndarray):
        return value
    raise ValueError(f"{name} must be {what} tensor or array, got {value!r:.80}")


def write_ply(
    path: str | Path,
    positions: Tensor | np.ndarray,
    faces: Tensor | np.ndarray,
    colors: Tensor | np.ndarray | None = None,
) -> None:
    """Write a triangle mesh as a binary little-endian PLY file, atomically (a temporary file
    next to ``path``, renamed into place).

    Args:
        path: output file.
        positions: float ``[N, 3]`` vertex positions (tensor or NumPy array), stored as float32.
        faces: integer ``[M, 3]`` vertex indices in ``[0, N)``, stored as int32.
        colors: optional uint8 ``[N, 3]`` RGB per vertex (properties ``red green blue``).
    """
    pos = _array("positions", positions, "a float [N, 3]")
    tri = _array("faces", faces, "an integer [M, 3]")
    if pos.ndim != 2 or pos.shape[1] != 3 or not np.issubdtype(pos.dtype, np.floating):
        raise ValueError(f"positions must be a float [N, 3] tensor or array, got {positions!r:.80}")
    if tri.ndim != 2 or tri.shape[1] != 3 or not np.issubdtype(tri.dtype, np.integer):
        raise ValueError(f"faces must be an integer [M, 3] tensor or array, got {faces!r:.80}")
    if tri.size and (tri.min() < 0 or tri.max() >= len(pos)):
        raise ValueError(f"faces must index [0, {len(pos)}), got [{tri.min()}, {tri.max()}]")
    fields = [("p", "<f4", (3,))]
    properties = "property float x\nproperty float y\nproperty float z\n"
    if colors is not None:
        rgb = _array("colors", colors, f"a uint8 [{len(pos)}, 3]")
        if rgb.shape != (len(pos), 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"colors must be a uint8 [{len(pos)}, 3] tensor or array, got {colors!r:.80}"
            )
        fields.append(("c", "u1", (3,)))
        properties += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pos)}\n{properties}"
        f"element face {len(tri)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vertex = np.zeros(len(pos), dtype=fields)  # packed: 12 bytes, 15 with colors
    vertex["p"] = pos
    if colors is not None:
        vertex["c"] = rgb
    face_rec = np.zeros(len(tri), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["v"] = tri
    data = b"".join((header.encode("ascii"), vertex.tobytes(), face_rec.tobytes()))
    write_atomic(Path(path), data)  # never a half-written file


_PLY_TYPES = {"float": "<f4", "uchar": "u1"}


def read_ply(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read back a file written by `write_ply`: ``(positions float32 [N,3], faces int32 [M,3])``
    (vertex colors, if any, are skipped)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").split("\n")
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    first = header.index(next(h for h in header if h.startswith("element vertex"))) + 1
    fields = []
    for line in header[first:]:
        if not line.startswith("property "):
            break
        _, kind, name = line.split()
        fields.append((name, _PLY_TYPES[kind]))
    vertex = np.frombuffer(data, dtype=fields, count=nv, offset=end)
    pos = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1).astype(np.float32)
    rec = np.frombuffer(
        data, dtype=[("n", "u1"), ("v", "<i4", (3,))], count=nf, offset=end + vertex.nbytes
    )
    return torch.from_numpy(pos), torch.from_numpy(rec["v"].copy())
