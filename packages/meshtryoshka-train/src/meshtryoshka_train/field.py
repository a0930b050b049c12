"""The scene: signed distance and SH colour per grid vertex, on the blocks of a `Layout`.

The learnable values live on the *global* vertices (the union of every block's grid vertices,
shared ones once): ``sdf [V]`` and SH ``[V, n_sh, 3]`` stored as the degree-0 coefficients
``sh_dc [V, 1, 3]`` plus one tensor per higher band ``l`` (``[V, 2l+1, 3]``), so that a new
band is a new parameter with fresh optimizer state. ``global_index[b]`` maps block ``b``'s grid
vertices to global vertices (None for the single block of a bounded scene: the identity).

Units: grid and shell positions are in the contracted cube ``[0, 1]^3``; signed distances are
in contracted units; `Extraction.positions` are in (normalized) world space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from slang_marching_cubes import SparseGrid, extract_shells, sdf_regularizers
from slang_rasterizer import ShellMesh

from .contraction import Contraction
from .layout import Block, Layout

__all__ = ["Extraction", "Field", "Remap", "shell_levels"]

#: a voxel mask: (block, grid) -> bool [grid.num_voxels], True where the voxel may be occupied
VoxelFilter = Callable[[Block, SparseGrid], Tensor]


def shell_levels(cdf_levels: Sequence[float], sharpness: float) -> list[float]:
    """Signed-distance levels ``logit(p) / k`` of the CDF levels, strictly decreasing."""
    levels = sorted((math.log(p / (1 - p)) / sharpness for p in cdf_levels), reverse=True)
    if any(b >= a for a, b in zip(levels[:-1], levels[1:], strict=False)):
        raise ValueError(f"shell levels must be distinct, got {levels}")
    return levels


@dataclass
class Extraction:
    """The shells of the field, ready to render.

    Attributes:
        positions: float32 ``[N, 3]`` world-space vertex positions (no gradient).
        faces: int32 ``[M, 3]``, normals toward increasing sdf.
        face_offsets: int64 ``[L + 1]`` on the field's device, faces of shell ``l`` are
            ``faces[face_offsets[l]:face_offsets[l + 1]]``.
        sdf: ``[N]`` vertex signed distance (differentiable, equals the shell's level).
        sh: ``[N, n_sh, 3]`` vertex SH coefficients (differentiable), or None.
        face_voxels: per block, int64 ``[M_b]`` index (into that block's ``grid.voxels``) of
            the voxel of each of its faces (repeats included: no sort or host sync per step).
    """

    positions: Tensor
    faces: Tensor
    face_offsets: Tensor
    sdf: Tensor
    sh: Tensor | None
    face_voxels: list[Tensor]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def mesh(self) -> ShellMesh:
        # marching-cubes output of a finite field (extract checks it): valid by construction,
        # so none of the value checks (host syncs) of ShellMesh
        return ShellMesh(self.positions, self.faces, self.face_offsets, check_values=False)


class Field:
    """Signed distance and SH per global grid vertex over the blocks of a layout.

    Build with `Field.create` (a fresh, initialized field) or `Field.from_state`.
    """

    def __init__(
        self,
        layout: Layout,
        contraction: Contraction,
        center_resolution: int,
        arm_resolution: int,
        grids: list[SparseGrid],
        sdf: Tensor,
        sh_dc: Tensor,
        sh_bands: Sequence[Tensor] = (),
    ):
        if len(grids) != len(layout.blocks):
            raise ValueError(f"grids must hold {len(layout.blocks)} grids, got {len(grids)}")
        self.layout = layout
        self.contraction = contraction
        self.center_resolution = center_resolution
        self.arm_resolution = arm_resolution
        self.grids = grids
        self.global_index, num_vertices = _global_index(
            layout, grids, center_resolution, arm_resolution
        )
        if sdf.shape != (num_vertices,):
            raise ValueError(f"sdf must be [{num_vertices}], got {list(sdf.shape)}")
        if sh_dc.shape != (num_vertices, 1, 3):
            raise ValueError(f"sh_dc must be [{num_vertices}, 1, 3], got {list(sh_dc.shape)}")
        self.sdf = sdf.detach().clone().requires_grad_()
        #: a fading prior: while set, shells and regularizers see `signed_distance()`
        self.prior: Tensor | None = None
        self.prior_weight = 0.0
        self.sh_dc = sh_dc.detach().clone().requires_grad_()
        self.sh_bands = []
        for band, values in enumerate(sh_bands, start=1):
            if values.shape != (num_vertices, 2 * band + 1, 3):
                raise ValueError(
                    f"SH band {band} must be [{num_vertices}, {2 * band + 1}, 3], "
                    f"got {list(values.shape)}"
                )
            self.sh_bands.append(values.detach().clone().requires_grad_())

    # ------------------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        layout: Layout,
        contraction: Contraction,
        center_resolution: int,
        arm_resolution: int,
        initial_sdf: Callable[[Tensor], Tensor],
        voxel_filter: VoxelFilter | None,
        generator: torch.Generator,
        sdf_noise: float,
        sh_noise: float,
        device: torch.device | str = "cpu",
        backend: str = "auto",
    ) -> Field:
        """A field over every voxel that passes `voxel_filter`, its values baked once.

        ``sdf = initial_sdf(contracted vertex positions [V, 3]) + sdf_noise * N(0, 1)`` and
        ``sh_dc = sh_noise * N(0, 1)``; the noise is drawn on the CPU from `generator`, so a
        seed gives the same field on every device. `backend` builds the grids (and every grid
        made from them) with the reference or the Slang kernels.
        """
        grids = []
        for block in layout.blocks:
            grid = SparseGrid.full(
                block.shape(center_resolution, arm_resolution), device=device, backend=backend
            )
            if voxel_filter is not None:
                grid = grid.prune(voxel_filter(block, grid))
            grids.append(grid)
        index, num_vertices = _global_index(layout, grids, center_resolution, arm_resolution)
        positions = torch.zeros(num_vertices, 3, device=device)
        for block, grid, idx in reversed(list(zip(layout.blocks, grids, index, strict=True))):
            contracted = block.to_contracted(grid.vertex_positions(), layout.center_extent)
            positions[_all(idx, grid.num_vertices, device)] = contracted
        sdf = initial_sdf(positions).float()
        noise = torch.randn(num_vertices, generator=generator) * sdf_noise
        sh_dc = torch.randn(num_vertices, 1, 3, generator=generator) * sh_noise
        return cls(
            layout,
            contraction,
            center_resolution,
            arm_resolution,
            grids,
            sdf + noise.to(device),
            sh_dc.to(device),
        )

    # ------------------------------------------------------------------------------ values
    @property
    def device(self) -> torch.device:
        return self.sdf.device

    @property
    def num_vertices(self) -> int:
        return self.sdf.shape[0]

    @property
    def num_voxels(self) -> int:
        return sum(grid.num_voxels for grid in self.grids)

    @property
    def sh_degree(self) -> int:
        return len(self.sh_bands)

    @property
    def sh(self) -> Tensor:
        """``[V, (degree + 1)^2, 3]`` SH coefficients (differentiable)."""
        return torch.cat([self.sh_dc, *self.sh_bands], dim=1)

    def parameters(self) -> list[tuple[str, Tensor]]:
        """(name, tensor) of every learnable tensor: sdf, sh_dc, sh_band1, ..."""
        named = [("sdf", self.sdf), ("sh_dc", self.sh_dc)]
        return named + [(f"sh_band{b}", t) for b, t in enumerate(self.sh_bands, start=1)]

    def grow_sh(self, degree: int) -> list[tuple[str, Tensor]]:
        """Add zero-valued SH bands up to `degree` (values unchanged); returns the new ones."""
        if not 0 <= degree <= 3:
            raise ValueError(f"degree must be in 0..3, got {degree}")
        added = []
        while self.sh_degree < degree:
            band = self.sh_degree + 1
            values = torch.zeros(self.num_vertices, 2 * band + 1, 3, device=self.device)
            self.sh_bands.append(values.requires_grad_())
            added.append((f"sh_band{band}", self.sh_bands[-1]))
        return added

    def signed_distance(self) -> Tensor:
        """``[V]`` the signed distance the shells and regularizers use: the learnable `sdf`,
        or ``(1 - w) sdf + w prior`` while a prior fades out (``w = prior_weight``; the
        original's point-cloud initializer)."""
        if self.prior is None:
            return self.sdf
        return (1.0 - self.prior_weight) * self.sdf + self.prior_weight * self.prior

    def bake_prior(self) -> None:
        """Make the blended `signed_distance` the learnable sdf and drop the prior."""
        if self.prior is not None:
            with torch.no_grad():
                self.sdf.copy_(self.signed_distance())
            self.prior = None

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for _, t in self.parameters())

    def block_values(self, values: Tensor, block: int) -> Tensor:
        """Rows of per-global-vertex `values` for block `block`'s grid vertices (by
        ``index_select``: its backward adds with atomics, where indexing's sorts)."""
        index = self.global_index[block]
        return values if index is None else values.index_select(0, index)

    def contracted_vertices(self) -> Tensor:
        """float32 ``[V, 3]`` global vertex positions in the contracted cube."""
        out = torch.zeros(self.num_vertices, 3, device=self.device)
        for b in reversed(range(len(self.grids))):
            block, grid = self.layout.blocks[b], self.grids[b]
            idx = _all(self.global_index[b], grid.num_vertices, self.device)
            out[idx] = block.to_contracted(grid.vertex_positions(), self.layout.center_extent)
        return out

    # ------------------------------------------------------------------------------ shells
    def extract(
        self,
        levels: Sequence[float],
        *,
        with_sh: bool = True,
        backend: str = "auto",
    ) -> Extraction:
        """Marching cubes of every block at `levels` (strictly decreasing), merged.

        Vertices on an edge shared by two blocks are merged (identified by the global ids of
        the edge's ends and the shell), so the meshes are watertight across block interfaces.
        """
        sh = self.sh.flatten(1) if with_sh else None
        sdf = self.signed_distance()
        n_sh = self.sh_dc.shape[1] + sum(t.shape[1] for t in self.sh_bands)
        parts = []
        for b, (block, grid) in enumerate(zip(self.layout.blocks, self.grids, strict=True)):
            attributes = None if sh is None else self.block_values(sh, b)
            shells = extract_shells(
                grid,
                self.block_values(sdf, b),
                attributes,
                levels,
                backend=backend,
            )
            parts.append((block, shells))
        if len(parts) == 1:
            block, shells = parts[0]
            contracted = block.to_contracted(shells.positions, self.layout.center_extent)
            faces, face_offsets = shells.faces, shells.face_offsets
            sdf, attributes = shells.sdf, shells.attributes
        else:
            contracted, faces, face_offsets, sdf, attributes = self._merge(parts, len(levels))
        world = self.contraction.uncontract(contracted)
        face_voxels = [shells.face_voxels.long() for _, shells in parts]
        return Extraction(
            positions=world.float().contiguous(),
            faces=faces,
            face_offsets=face_offsets.to(self.device),
            sdf=sdf,
            sh=None if sh is None else attributes.reshape(-1, n_sh, 3),
            face_voxels=face_voxels,
        )

    def _merge(self, parts, num_levels: int):
        """Concatenate the blocks' shells (contracted positions), merging shared-edge vertices."""
        device = self.device
        keys, positions, sdf, attributes = [], [], [], []
        faces_by_shell: list[list[Tensor]] = [[] for _ in range(num_levels)]
        limit = self.num_vertices
        if num_levels * limit * limit >= 2**63:
            raise ValueError(f"too many vertices ({limit}) to key shell vertices in int64")
        offset = 0
        for b, (block, shells) in enumerate(parts):
            n = shells.positions.shape[0]
            ends = self.global_index[b][shells.edges.long()]
            low, high = ends.amin(1), ends.amax(1)
            counts = (shells.vertex_offsets[1:] - shells.vertex_offsets[:-1]).to(device)
            level = torch.repeat_interleave(torch.arange(num_levels, device=device), counts)
            keys.append((level * limit + low) * limit + high)
            positions.append(block.to_contracted(shells.positions, self.layout.center_extent))
            sdf.append(shells.sdf)
            attributes.append(shells.attributes)
            faces = shells.faces.long() + offset
            if block.flips_orientation:
                faces = faces[:, [0, 2, 1]]
            for level_index in range(num_levels):
                f0, f1 = (int(x) for x in shells.face_offsets[level_index : level_index + 2])
                faces_by_shell[level_index].append(faces[f0:f1])
            offset += n
        key = torch.cat(keys)
        unique, inverse = torch.unique(key, return_inverse=True)
        order = torch.arange(key.shape[0], device=device)
        first = torch.full((unique.shape[0],), key.shape[0], dtype=torch.long, device=device)
        first = first.scatter_reduce(0, inverse, order, "amin")
        per_shell = [torch.cat(f) for f in faces_by_shell]
        counts = torch.tensor([f.shape[0] for f in per_shell], dtype=torch.long)
        face_offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        faces = inverse[torch.cat(per_shell)].to(torch.int32)
        return (
            torch.cat(positions)[first],
            faces.reshape(-1, 3),
            face_offsets,
            torch.cat(sdf).index_select(0, first),
            torch.cat(attributes).index_select(0, first),
        )

    def regularizers(self, curvature: str = "laplacian") -> dict[str, Tensor]:
        """Eikonal (+/-) and curvature terms, voxel-weighted means over the blocks.

        Each block's terms are computed in its own grid coordinates (``[0, 1]^3`` per block);
        for a bounded scene that is the contracted cube, where the sdf is a distance.

        curvature: ``"laplacian"`` (the original's operator): the squared discrete Laplacian
            of the grid values at each voxel's +xyz corner, in grid units, as returned by
            `sdf_regularizers`. ``"gradient"``: `sdf_regularizers`' resolution-independent
            value (about ``|Hessian|^2 / 3``) times ``h^4``, ``h`` the block's voxel size
            (geometric mean over the axes), which puts it on the grid-unit scale of the
            Laplacian so that the same weight means about the same thing.
        """
        total = {"eikonal_pos": 0.0, "eikonal_neg": 0.0, "curvature": 0.0}
        voxels = max(self.num_voxels, 1)
        sdf = self.signed_distance()
        for b, grid in enumerate(self.grids):
            if grid.num_voxels == 0:
                continue
            terms = sdf_regularizers(
                grid,
                self.block_values(sdf, b),
                curvature=curvature,
                check_finite=False,
            )
            if curvature == "gradient":
                voxel_size = math.prod(1.0 / d for d in grid.shape) ** (1.0 / 3.0)
                terms["curvature"] = terms["curvature"] * voxel_size**4
            for name in total:
                total[name] = total[name] + terms[name] * (grid.num_voxels / voxels)
        return {
            name: value if isinstance(value, Tensor) else self.sdf.new_zeros(())
            for name, value in total.items()
        }

    # ------------------------------------------------------------------------------ resampling
    @torch.no_grad()
    def plan_resample(
        self,
        center_resolution: int,
        arm_resolution: int,
        levels: Sequence[float],
        dilation: int,
        voxel_filter: VoxelFilter | None,
        backend: str = "auto",
        rule: str = "surface",
    ) -> Remap:
        """The grids at a new resolution, and how to carry per-vertex values onto them.

        Per block, `rule` ``"surface"`` (the original's): keep the voxels that hold a face of
        the zero level set, dilate them by `dilation` voxels (at the old resolution), intersect
        with the old occupancy and subdivide to the new shape (occupancy can only shrink;
        `levels` and `voxel_filter` are not used). ``"shells"``: keep the voxels that hold a
        face of any of `levels`, dilate, subdivide, and drop the voxels that `voxel_filter`
        rejects (unseen space stays empty; occupancy may grow by the dilation). Either way, if
        no face exists anywhere every voxel is kept (the grid is only subdivided). Nothing
        changes until `apply_remap`.
        """
        if rule not in ("surface", "shells"):
            raise ValueError(f"rule must be 'surface' or 'shells', got {rule!r}")
        surface = rule == "surface"
        extraction = self.extract([0.0] if surface else levels, with_sh=False, backend=backend)
        keep_all = extraction.num_faces == 0
        new_grids = []
        for b, (block, grid) in enumerate(zip(self.layout.blocks, self.grids, strict=True)):
            if keep_all:
                kept = grid
            else:
                mask = torch.zeros(grid.num_voxels, dtype=torch.bool, device=self.device)
                mask[extraction.face_voxels[b]] = True
                kept = grid.prune(mask).dilate(dilation)
                if surface:
                    kept = kept.prune(torch.isin(kept.voxels, grid.voxels))
            new = kept.resample(block.shape(center_resolution, arm_resolution))
            if voxel_filter is not None and not surface:
                new = new.prune(voxel_filter(block, new))
            new_grids.append(new)
        return Remap(self, center_resolution, arm_resolution, new_grids, dilation + 2)

    def apply_remap(self, remap: Remap, moved: Sequence[Tensor] | None = None) -> None:
        """Move to the remap's grids, transferring sdf and SH (new tensors, same degree).

        `moved`: the parameters already carried over (``remap.apply_many`` of the tensors of
        `parameters`, in order), to share one transfer with the optimizer's moments.
        """
        if self.prior is not None:
            raise ValueError("bake_prior() before resampling a field with a fading prior")
        names = [name for name, _ in self.parameters()]
        if moved is None:
            moved = remap.apply_many([t.detach() for _, t in self.parameters()])
        if len(moved) != len(names):
            raise ValueError(f"moved must hold {len(names)} tensors, got {len(moved)}")
        self.center_resolution = remap.center_resolution
        self.arm_resolution = remap.arm_resolution
        self.grids = remap.grids
        self.global_index = remap.global_index
        values = dict(zip(names, moved, strict=True))
        self.sdf = values["sdf"].requires_grad_()
        self.sh_dc = values["sh_dc"].requires_grad_()
        self.sh_bands = [values[f"sh_band{b}"].requires_grad_() for b in range(1, len(names) - 1)]

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "center_extent": self.layout.center_extent,
            "arms": self.layout.arms,
            "center_resolution": self.center_resolution,
            "arm_resolution": self.arm_resolution,
            "grids": [(grid.shape, grid.voxels.cpu()) for grid in self.grids],
            "sdf": self.sdf.detach().cpu(),
            "sh_dc": self.sh_dc.detach().cpu(),
            "sh_bands": [t.detach().cpu() for t in self.sh_bands],
            "prior": None if self.prior is None else self.prior.cpu(),
            "prior_weight": self.prior_weight,
        }

    @classmethod
    def from_state(
        cls,
        state: dict,
        contraction: Contraction,
        device: torch.device | str = "cpu",
        backend: str = "auto",
    ) -> Field:
        layout = Layout(state["center_extent"], state["arms"])
        grids = [
            SparseGrid(shape, voxels.to(device), backend=backend)
            for shape, voxels in state["grids"]
        ]
        field = cls(
            layout,
            contraction,
            state["center_resolution"],
            state["arm_resolution"],
            grids,
            state["sdf"].to(device),
            state["sh_dc"].to(device),
            [t.to(device) for t in state["sh_bands"]],
        )
        if state.get("prior") is not None:
            field.prior = state["prior"].to(device)
            field.prior_weight = float(state["prior_weight"])
        return field


class Remap:
    """New grids for a field and the transfer of per-vertex values onto them.

    ``apply(values [V_old, ...]) -> [V_new, ...]``: each block's new grid vertices take the
    trilinear interpolant of the old block grid (`SparseGrid.transfer`: exact for fields
    linear in position; vertices just outside the old occupancy extrapolate the nearest old
    voxel's trilinear polynomial). A vertex shared by several blocks takes the first block's
    value (the centre's). Use it for the parameters and for the optimizer's moments alike.
    """

    def __init__(
        self,
        field: Field,
        center_resolution: int,
        arm_resolution: int,
        grids: list[SparseGrid],
        max_radius: int,
    ):
        self.old_grids = field.grids
        self.old_index = field.global_index
        self.old_num_vertices = field.num_vertices
        self.center_resolution = center_resolution
        self.arm_resolution = arm_resolution
        self.grids = grids
        self.global_index, self.num_vertices = _global_index(
            field.layout, grids, center_resolution, arm_resolution
        )
        self.max_radius = max_radius
        self.device = field.device

    def apply(self, values: Tensor) -> Tensor:
        return self.apply_many([values])[0]

    def apply_many(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """`apply` to several ``[V_old, ...]`` tensors at once (one neighbour search)."""
        for t in tensors:
            if t.shape[0] != self.old_num_vertices:
                raise ValueError(
                    f"values must have {self.old_num_vertices} rows, got {list(t.shape)}"
                )
        flat = torch.cat([t.reshape(t.shape[0], -1).float() for t in tensors], dim=1)
        out = flat.new_zeros(self.num_vertices, flat.shape[1])
        for b in reversed(range(len(self.grids))):
            old, new = self.old_grids[b], self.grids[b]
            if new.num_vertices == 0:
                continue
            source = flat if self.old_index[b] is None else flat[self.old_index[b]]
            values = old.transfer(source, new, max_radius=self.max_radius)
            out[_all(self.global_index[b], new.num_vertices, self.device)] = values
        results, start = [], 0
        for t in tensors:
            width = math.prod(t.shape[1:])
            results.append(
                out[:, start : start + width].reshape(-1, *t.shape[1:]).to(t.dtype).contiguous()
            )
            start += width
        return results


def _all(index: Tensor | None, count: int, device) -> Tensor:
    return torch.arange(count, device=device) if index is None else index


def _global_index(
    layout: Layout, grids: Sequence[SparseGrid], center: int, arm: int
) -> tuple[list[Tensor | None], int]:
    """Per block, the global vertex id of each grid vertex (None: identity), and the count."""
    if len(grids) == 1:
        return [None], grids[0].num_vertices
    if layout.key_limit(center, arm) >= 2**62:
        raise ValueError(f"resolution {center} (arms {arm}) is too large for int64 vertex keys")
    keys = [
        block.keys(grid.vertex_coords(), center, arm)
        for block, grid in zip(layout.blocks, grids, strict=True)
    ]
    unique, inverse = torch.unique(torch.cat(keys), return_inverse=True)
    index, start = [], 0
    for k in keys:
        index.append(inverse[start : start + k.shape[0]])
        start += k.shape[0]
    return index, unique.shape[0]
