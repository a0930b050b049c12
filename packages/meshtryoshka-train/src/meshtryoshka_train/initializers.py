"""Initial signed distances, evaluated once at the grid vertices (contracted units).

Both are baked into the learnable sdf when the field is created and never applied again (the
original added the sphere again at every subdivision, ORIGINAL.md §6 item 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["fade_weight", "point_cloud_sdf", "sphere_sdf", "subsample_points"]


def sphere_sdf(radius: float, center: tuple[float, float, float] = (0.5, 0.5, 0.5)):
    """``u -> |u - center| - radius``: a sphere in the contracted cube (negative inside)."""
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")

    def sdf(points: Tensor) -> Tensor:
        c = torch.tensor(center, dtype=points.dtype, device=points.device)
        return (points - c).norm(dim=-1) - radius

    return sdf


def point_cloud_sdf(points: Tensor, radius: float, budget: int = 1 << 24) -> Callable:
    """``u -> min_p |u - p| - radius``: the union of balls around ``points [P, 3]`` (contracted).

    Distances are computed directly (no ``|a|^2 + |b|^2 - 2ab`` shortcut, which loses
    precision) for chunks of query points, about `budget` point pairs at a time. With no
    points, every value is +1 (empty space).
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {list(points.shape)}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")

    def sdf(query: Tensor) -> Tensor:
        if points.shape[0] == 0:
            return torch.ones(query.shape[0], dtype=query.dtype, device=query.device)
        cloud = points.to(device=query.device, dtype=query.dtype)
        out = torch.empty(query.shape[0], dtype=query.dtype, device=query.device)
        chunk = max(1, budget // cloud.shape[0])
        for start in range(0, query.shape[0], chunk):
            q = query[start : start + chunk]
            out[start : start + chunk] = torch.cdist(
                q, cloud, compute_mode="donot_use_mm_for_euclid_dist"
            ).amin(1)
        return out - radius

    return sdf


def fade_weight(step: int, freeze: int, blend: int) -> float:
    """Weight of a fading prior at `step`: 1 for the first `freeze` steps, then linear to 0
    over `blend` steps (``1 - (step - freeze) / blend``), then 0 (the original's schedule)."""
    if step < freeze:
        return 1.0
    if blend <= 0 or step >= freeze + blend:
        return 0.0
    return 1.0 - (step - freeze) / blend


def subsample_points(points: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """At most `count` of ``points [P, 3]``, drawn without replacement with `generator`."""
    if points.shape[0] <= count:
        return points
    chosen = torch.randperm(points.shape[0], generator=generator)[:count]
    return points[chosen.to(points.device)]
