"""Scene contraction: normalized world space <-> the grid's contracted unit cube [0, 1]^3.

With r = |x|_inf (infinity norm, so level sets are cubes), centre radius R, centre extent E
(the side of the centre cube in signed contracted units [-1, 1]) and arm ratio a:

    c(x) = x * E / R                                   if r <= R   (linear centre)
    c(x) = x / r * (E + (1 - E) * ln(r / R) / (2 a))   if r > R    (logarithmic arms)
    u(x) = (c(x) + 1) / 2

so the world cube [-R, R]^3 fills the centre cube and the far bound r = R e^(2a) maps to the
faces of [0, 1]^3. With a = 0 (bounded scenes) only the linear map is used: points with
r > R fall outside [0, 1]^3. Both maps are continuous at r = R and inverse to each other
inside the far bound. No gradients flow through them (vertex positions carry none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Contraction:
    center_radius: float = 1.5
    """R: world half-size (infinity norm) of the linearly mapped centre."""
    center_extent: float = 1.0
    """E: side of the centre cube in [-1, 1] units (1.0 = no arms)."""
    arm_ratio: float = 0.0
    """a: log-space length of the arms; the far bound is R e^(2a). 0 = bounded scene."""

    def __post_init__(self) -> None:
        if not self.center_radius > 0:
            raise ValueError(f"center_radius must be > 0, got {self.center_radius}")
        if not 0 < self.center_extent <= 1:
            raise ValueError(f"center_extent must be in (0, 1], got {self.center_extent}")
        if self.arm_ratio < 0:
            raise ValueError(f"arm_ratio must be >= 0, got {self.arm_ratio}")
        if self.arm_ratio == 0 and self.center_extent < 1:
            raise ValueError("arm_ratio = 0 (no arms) needs center_extent = 1")

    @property
    def far_bound(self) -> float:
        """World infinity-norm radius that maps onto the faces of [0, 1]^3."""
        return self.center_radius * math.exp(2 * self.arm_ratio)

    @torch.no_grad()
    def contract(self, world: torch.Tensor) -> torch.Tensor:
        """[..., 3] normalized world points -> [..., 3] contracted points in [0, 1]^3."""
        r = world.abs().amax(-1, keepdim=True)
        linear = world * (self.center_extent / self.center_radius)
        if self.arm_ratio == 0:
            return linear * 0.5 + 0.5
        safe_r = r.clamp_min(self.center_radius)
        radius = self.center_extent + (1 - self.center_extent) * torch.log(
            safe_r / self.center_radius
        ) / (2 * self.arm_ratio)
        outer = world / safe_r * radius
        return torch.where(r <= self.center_radius, linear, outer) * 0.5 + 0.5

    @torch.no_grad()
    def uncontract(self, contracted: torch.Tensor) -> torch.Tensor:
        """[..., 3] contracted points -> [..., 3] world points (the inverse of `contract`).

        With arms, points are clipped to [0, 1]^3 first (the far bound is the edge of space).
        """
        if self.arm_ratio == 0:
            return (contracted * 2 - 1) * (self.center_radius / self.center_extent)
        c = contracted.clamp(0, 1) * 2 - 1
        n = c.abs().amax(-1, keepdim=True)
        linear = c * (self.center_radius / self.center_extent)
        safe_n = n.clamp_min(self.center_extent)
        t = (safe_n - self.center_extent) / (1 - self.center_extent)
        r = self.center_radius * torch.exp(2 * self.arm_ratio * t)
        outer = c / safe_n * r
        return torch.where(n <= self.center_extent, linear, outer)
