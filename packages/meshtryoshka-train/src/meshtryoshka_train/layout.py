"""How the grid tiles the contracted cube: one centre block, plus six arms for unbounded scenes.

Every block is a `SparseGrid` over its own unit cube ``[0, 1]^3`` (grid axis ``a`` is unit
coordinate ``a``), mapped into the contracted cube ``[0, 1]^3`` by a trilinear map of its 8
corners. With signed contracted coordinates ``c = 2u - 1`` and the centre extent ``E``:

- **centre**, shape ``(C, C, C)``: ``c = E (2x - 1)``, the cube ``|c|_inf <= E``;
- **arm (d, s)** for axis ``d`` and side ``s = +-1``, shape ``(A, C, C)``: unit coordinates
  ``(rho, alpha, beta)`` along (radial, first tangent axis, second tangent axis), the two
  tangent axes being the other two axes in increasing order. With ``n = E + (1 - E) rho``:
  ``c_d = s n``, ``c_t1 = n (2 alpha - 1)``, ``c_t2 = n (2 beta - 1)``. The arm is the frustum
  ``|c|_inf >= E`` where ``|c_d|`` is the largest coordinate and has the sign ``s``; the
  contraction maps the infinity-norm radius ``n`` logarithmically to world space.

Both maps are linear along every grid edge, so a marching-cubes vertex mapped through them is
exactly the marching-cubes vertex of the mapped lattice. Blocks meet conformingly: the
centre/arm interface has ``(C+1)^2`` common vertices, two neighbouring arms share a diagonal
face of ``(A+1) (C+1)`` vertices.

**Shared vertices are identified exactly by integer keys**, never by rounding positions: a
lattice point is ``c = n(r) m / C`` with radial level ``r`` (0 for the centre and the arms'
inner faces, ``n(0) = E``) and an integer direction ``m`` in ``[-C, C]^3`` (centre:
``m = 2 i - C``; arm: ``m_d = s C``, ``m_t = 2 i_t - C``). Two lattice points of any blocks
coincide iff their ``(r, m)`` are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Block", "Layout"]


@dataclass(frozen=True)
class Block:
    """One structured block: the centre (``axis == -1``) or the arm along ``axis`` on ``sign``."""

    axis: int = -1
    sign: int = 0

    @property
    def is_center(self) -> bool:
        return self.axis < 0

    @property
    def name(self) -> str:
        if self.is_center:
            return "center"
        return f"arm{'-+'[self.sign > 0]}{'xyz'[self.axis]}"

    @property
    def tangent_axes(self) -> tuple[int, int]:
        first, second = (a for a in range(3) if a != self.axis)
        return first, second

    @property
    def flips_orientation(self) -> bool:
        """True when the map to contracted space has a negative Jacobian determinant.

        The arm's Jacobian in the axis order (d, t1, t2) is lower triangular with diagonal
        ``(s (1 - E), 2 n, 2 n)``; reordering the rows to (x, y, z) multiplies the determinant
        by the sign of the permutation (d, t1, t2). Faces of a flipping block are re-wound so
        that their normals keep pointing toward increasing sdf.
        """
        if self.is_center:
            return False
        permutation_sign = -1 if self.axis == 1 else 1  # (1, 0, 2) is odd; (0,1,2), (2,0,1) even
        return self.sign * permutation_sign < 0

    def shape(self, center: int, arm: int) -> tuple[int, int, int]:
        """Voxels per grid axis: ``(C, C, C)`` for the centre, ``(A, C, C)`` for an arm."""
        return (center, center, center) if self.is_center else (arm, center, center)

    def to_contracted(self, unit: Tensor, extent: float) -> Tensor:
        """``[..., 3]`` block unit coordinates -> ``[..., 3]`` contracted coordinates in [0, 1]."""
        if self.is_center:
            return 0.5 + extent * (unit - 0.5)
        radius = extent + (1.0 - extent) * unit[..., 0]
        signed = torch.empty_like(unit)
        signed[..., self.axis] = self.sign * radius
        t1, t2 = self.tangent_axes
        signed[..., t1] = radius * (2 * unit[..., 1] - 1)
        signed[..., t2] = radius * (2 * unit[..., 2] - 1)
        return signed * 0.5 + 0.5

    def keys(self, lattice: Tensor, center: int, arm: int) -> Tensor:
        """int64 ``[V]`` exact identity keys of lattice points ``[V, 3]`` (see the module doc)."""
        lattice = lattice.long()
        if self.is_center:
            radial = torch.zeros_like(lattice[:, 0])
            direction = 2 * lattice - center
        else:
            radial = lattice[:, 0]
            direction = torch.empty_like(lattice)
            direction[:, self.axis] = self.sign * center
            t1, t2 = self.tangent_axes
            direction[:, t1] = 2 * lattice[:, 1] - center
            direction[:, t2] = 2 * lattice[:, 2] - center
        base = 2 * center + 1
        digits = direction + center  # in [0, 2C]
        return ((radial * base + digits[:, 0]) * base + digits[:, 1]) * base + digits[:, 2]


@dataclass(frozen=True)
class Layout:
    """The blocks of a scene: the centre alone (bounded) or the centre plus six arms."""

    center_extent: float = 1.0
    arms: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.center_extent <= 1:
            raise ValueError(f"center_extent must be in (0, 1], got {self.center_extent}")
        if self.arms == (self.center_extent == 1.0):
            raise ValueError(
                "a layout with arms needs center_extent < 1 and one without needs 1.0, got "
                f"arms={self.arms}, center_extent={self.center_extent}"
            )

    @property
    def blocks(self) -> list[Block]:
        """The centre first, then the arms (-x, +x, -y, +y, -z, +z)."""
        blocks = [Block()]
        if self.arms:
            blocks += [Block(axis, sign) for axis in range(3) for sign in (-1, 1)]
        return blocks

    def key_limit(self, center: int, arm: int) -> int:
        """One more than the largest key (to check it fits in int64)."""
        return (arm + 1) * (2 * center + 1) ** 3
