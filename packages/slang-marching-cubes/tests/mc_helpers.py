"""Fields, grids and mesh checks shared by the tests.

Imported as ``mc_helpers``: a unique name, since pytest runs every package in one process.
"""

from __future__ import annotations

import math

import torch

from slang_marching_cubes import SparseGrid


def sphere_sdf(points: torch.Tensor, radius: float = 0.3, center=(0.5, 0.5, 0.5)) -> torch.Tensor:
    return (points - torch.tensor(center, dtype=points.dtype)).norm(dim=-1) - radius


def torus_sdf(points: torch.Tensor, major: float = 0.25, minor: float = 0.1) -> torch.Tensor:
    p = points - 0.5
    ring = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - major
    return torch.sqrt(ring**2 + p[:, 2] ** 2) - minor


def band_grid(n: int, sdf_fn, width: float) -> SparseGrid:
    """Dense-shape grid holding only the voxels whose centre is within ``width`` of the zero set."""
    idx = torch.arange(n, dtype=torch.float64)
    centres = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1).reshape(-1, 3)
    centres = (centres + 0.5) / n
    keep = sdf_fn(centres).abs() < width
    return SparseGrid.from_dense(keep.reshape(n, n, n))


def mesh_stats(positions: torch.Tensor, faces: torch.Tensor) -> tuple[float, float]:
    """(area, signed enclosed volume) of a triangle mesh, in float64."""
    p = positions.double()
    f = faces.long()
    v0, v1, v2 = p[f[:, 0]], p[f[:, 1]], p[f[:, 2]]
    area = 0.5 * torch.linalg.cross(v1 - v0, v2 - v0).norm(dim=-1).sum()
    volume = (v0 * torch.linalg.cross(v1, v2)).sum() / 6
    return float(area), float(volume)


def directed_edges(faces: torch.Tensor) -> torch.Tensor:
    f = faces.long()
    return torch.cat((f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]))


def edge_use(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Undirected edges [E, 2] (sorted ends) and how many faces use each."""
    e = directed_edges(faces).sort(dim=1).values
    return torch.unique(e, dim=0, return_counts=True)


def assert_closed_oriented_manifold(faces: torch.Tensor, num_vertices: int) -> None:
    """Every edge in exactly two faces, once in each direction; every vertex used."""
    d = directed_edges(faces)
    key = d[:, 0] * num_vertices + d[:, 1]
    rev = d[:, 1] * num_vertices + d[:, 0]
    assert torch.unique(key).numel() == key.numel(), "a directed edge occurs twice"
    assert bool(torch.isin(rev, key).all()), "an edge is used by one face only (hole/crack)"
    assert torch.unique(faces.long()).numel() == num_vertices, "unreferenced vertices"


def euler_characteristic(faces: torch.Tensor, num_vertices: int) -> int:
    edges, _ = edge_use(faces)
    return num_vertices - edges.shape[0] + faces.shape[0]


def random_sparse_grid(shape, fraction: float, seed: int, clusters: int = 0) -> SparseGrid:
    """Random occupancy: ``fraction`` of voxels, optionally grown from a few blobs."""
    gen = torch.Generator().manual_seed(seed)
    occ = torch.rand(shape, generator=gen) < fraction
    return SparseGrid.from_dense(occ)


def smooth_random_field(points: torch.Tensor, seed: int, dtype=torch.float64) -> torch.Tensor:
    """A smooth random field (sum of a few random sinusoids) with many level-set components."""
    gen = torch.Generator().manual_seed(seed)
    freq = torch.randn(6, 3, generator=gen, dtype=torch.float64) * 5
    phase = torch.rand(6, generator=gen, dtype=torch.float64) * 2 * math.pi
    p = points.double()
    return torch.sin(p @ freq.T + phase).sum(-1).to(dtype) * 0.05
