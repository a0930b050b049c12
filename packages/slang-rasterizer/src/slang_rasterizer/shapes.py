"""Small mesh and camera builders for examples, tests and benchmarks.

Faces follow the package convention: the right-hand normal ``(v1 - v0) x (v2 - v0)`` points
outward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .types import Cameras, ShellMesh

# a point or direction: three floats
Vec3 = Sequence[float]

__all__ = ["icosphere", "shell_mesh", "look_at", "orbit_cameras"]


def icosphere(
    subdivisions: int, radius: float = 1.0, center: Vec3 = (0.0, 0.0, 0.0)
) -> tuple[Tensor, Tensor]:
    """A sphere as a subdivided icosahedron: 20 * 4^subdivisions faces, vertices on the sphere.

    Returns (positions float32 [N, 3], faces int32 [M, 3]), outward-oriented.
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
        (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
        (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
        (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    p = torch.tensor(verts, dtype=torch.float64)
    p = p / p.norm(dim=1, keepdim=True)
    f = torch.tensor(faces, dtype=torch.int64)
    for _ in range(subdivisions):
        # One new vertex per edge, shared by the two faces of the edge.
        edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        key = edges.min(1).values * p.shape[0] + edges.max(1).values
        unique, inverse = torch.unique(key, return_inverse=True)
        a, b = unique // p.shape[0], unique % p.shape[0]
        mid = p[a] + p[b]
        mid = mid / mid.norm(dim=1, keepdim=True)
        m = inverse.view(3, -1) + p.shape[0]  # midpoints of edges 01, 12, 20
        p = torch.cat([p, mid])
        v0, v1, v2 = f.unbind(1)
        f = torch.cat(
            [
                torch.stack([v0, m[0], m[2]], 1),
                torch.stack([v1, m[1], m[0]], 1),
                torch.stack([v2, m[2], m[1]], 1),
                torch.stack([m[0], m[1], m[2]], 1),
            ]
        )
    p = p * radius + torch.tensor(center, dtype=torch.float64)
    return p.float(), f.int()


def shell_mesh(
    shells: list[tuple[Tensor, Tensor]], device: torch.device | str | None = None
) -> ShellMesh:
    """Concatenate per-shell (positions [N_s, 3], faces [M_s, 3]) lists, outermost first."""
    positions, faces, offsets, base = [], [], [0], 0
    for p, f in shells:
        positions.append(p.float())
        faces.append(f.long() + base)
        offsets.append(offsets[-1] + f.shape[0])
        base += p.shape[0]
    return ShellMesh(
        torch.cat(positions).to(device),
        torch.cat(faces).int().to(device),
        torch.tensor(offsets, dtype=torch.int64, device=device),
    )


def look_at(eye: Vec3, target: Vec3 = (0.0, 0.0, 0.0), up: Vec3 = (0.0, 0.0, 1.0)) -> Tensor:
    """OpenCV world-to-camera float32 [4, 4] of a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that appears up in the image (image +y points down).
    """
    eye = torch.tensor(eye, dtype=torch.float64)
    forward = torch.tensor(target, dtype=torch.float64) - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(-torch.tensor(up, dtype=torch.float64), forward)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    e = torch.eye(4, dtype=torch.float64)
    e[:3, :3] = rot
    e[:3, 3] = -rot @ eye
    return e.float()


def orbit_cameras(
    count: int,
    distance: float,
    image_size: tuple[int, int],
    fov_degrees: float = 40.0,
    elevation_degrees: float = 20.0,
    target: Vec3 = (0.0, 0.0, 0.0),
    device: torch.device | str | None = None,
) -> Cameras:
    """``count`` cameras on a circle around ``target`` (z up), all looking at it."""
    h, w = image_size
    f = 0.5 * w / math.tan(math.radians(fov_degrees) / 2)
    k = torch.tensor([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    el = math.radians(elevation_degrees)
    mats = []
    for i in range(count):
        az = 2 * math.pi * i / count
        eye = (
            target[0] + distance * math.cos(el) * math.cos(az),
            target[1] + distance * math.cos(el) * math.sin(az),
            target[2] + distance * math.sin(el),
        )
        mats.append(look_at(eye, target))
    return Cameras(
        torch.stack(mats).to(device), k.expand(count, 3, 3).contiguous().to(device), (h, w)
    )
