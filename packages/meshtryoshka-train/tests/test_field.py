"""The field: initialization, visibility, coarse-to-fine transfer, SH growth, extraction."""

import math

import numpy as np
import pytest
import torch

from meshtryoshka_data._geometry import look_at_world_to_camera
from meshtryoshka_train.config import ModelConfig
from meshtryoshka_train.contraction import Contraction
from meshtryoshka_train.field import Field, shell_levels
from meshtryoshka_train.initializers import point_cloud_sdf, sphere_sdf
from meshtryoshka_train.layout import Layout
from meshtryoshka_train.metrics import psnr
from meshtryoshka_train.rendering import render_extraction
from slang_marching_cubes import SparseGrid

BOUNDED = (Layout(), Contraction(1.5, 1.0, 0.0))
UNBOUNDED = (Layout(0.5, arms=True), Contraction(0.6, 0.5, 1.5))
LEVELS = shell_levels([0.9, 0.5, 0.1], 400.0)


def make_field(layout_and_contraction=BOUNDED, center=12, arm=0, initial=None, **kwargs):
    layout, contraction = layout_and_contraction
    return Field.create(
        layout,
        contraction,
        center,
        arm,
        initial or sphere_sdf(0.25),
        kwargs.pop("voxel_filter", None),
        torch.Generator().manual_seed(kwargs.pop("seed", 0)),
        kwargs.pop("sdf_noise", 0.0),
        kwargs.pop("sh_noise", 0.1),
    )


def test_shell_levels_are_logit_over_sharpness_outermost_first():
    levels = shell_levels([0.5, 0.9, 0.1], 400.0)
    assert levels == pytest.approx([math.log(9) / 400, 0.0, -math.log(9) / 400])
    with pytest.raises(ValueError, match="distinct"):
        shell_levels([0.5, 0.5], 400.0)


def test_initialization_is_seeded_and_baked_from_the_sphere():
    a = make_field(sdf_noise=0.01, seed=3)
    b = make_field(sdf_noise=0.01, seed=3)
    c = make_field(sdf_noise=0.01, seed=4)
    assert torch.equal(a.sdf, b.sdf) and torch.equal(a.sh_dc, b.sh_dc)
    assert not torch.equal(a.sdf, c.sdf)
    exact = make_field()
    positions = exact.contracted_vertices()
    expected = (positions - 0.5).norm(dim=-1) - 0.25
    assert torch.allclose(exact.sdf, expected, atol=1e-6)
    noise = a.sdf - expected
    assert 0.008 < float(noise.detach().std()) < 0.012  # init_sdf_noise = 0.01, added once


def test_sphere_is_not_added_again_when_the_resolution_changes():
    # ORIGINAL.md §6 item 2: after n subdivisions its sdf was learned + (n + 1) * sphere.
    field = make_field(center=12)
    for resolution in (16, 24):
        field.apply_remap(field.plan_resample(resolution, 0, LEVELS, 2, None))
    positions = field.contracted_vertices()
    distance = (positions - 0.5).norm(dim=-1)
    outer = distance > 0.3  # where a second sphere would add |u - c| - 0.25 > 0.05
    error = (field.sdf.detach() - (distance - 0.25))[outer].abs().max()
    assert error < 0.01  # trilinear interpolation error of |u - c| at h = 1/12: measured 0.007


@pytest.mark.parametrize("setup", [BOUNDED, UNBOUNDED], ids=["bounded", "unbounded"])
def test_transfer_reproduces_affine_fields_exactly(setup):
    # Every block map is trilinear, so a field affine in contracted space is trilinear in
    # each block's grid coordinates and the transfer (trilinear, or its extrapolation) is exact.
    a = torch.tensor([0.3, -0.7, 0.2])

    def affine(points):
        return points @ a - 0.1

    center, arm = (8, 3) if setup is UNBOUNDED else (12, 0)
    field = make_field(setup, center=center, arm=arm, initial=affine)
    field.grow_sh(1)
    field.sh_bands[0].data = field.contracted_vertices()[:, :, None].expand(-1, 3, 3) * 1.0
    remap = field.plan_resample(center + 4, arm + 2, [0.0], 1, None)
    field.apply_remap(remap)
    positions = field.contracted_vertices()
    assert torch.allclose(field.sdf, affine(positions), atol=1e-5)
    assert torch.allclose(field.sh_bands[0][:, :, 0], positions, atol=1e-5)
    assert field.center_resolution == center + 4 and field.arm_resolution == arm + 2


def test_surface_rule_keeps_the_dilated_zero_level_voxels_within_the_old_occupancy():
    """The original's rule: zero-level faces only, dilated, intersected with the old grid."""
    field = make_field(center=12)
    old = field.grids[0]
    # Give the field a second, inner level set that only the "shells" rule would keep.
    inner_only = field.sdf.detach() < -0.2
    remap = field.plan_resample(24, 0, LEVELS, 1, None, rule="surface")
    new = remap.grids[0]
    parents = new.voxel_coords() // 2
    assert bool((old.find_voxels(parents) >= 0).all())  # occupancy can only shrink
    surface = field.extract([0.0], with_sh=False)
    marked = torch.zeros(old.num_voxels, dtype=torch.bool)
    marked[surface.face_voxels[0]] = True
    expected = old.prune(marked).dilate(1)
    expected = expected.prune(torch.isin(expected.voxels, old.voxels)).resample((24, 24, 24))
    assert torch.equal(new.voxels, expected.voxels)
    assert bool(inner_only.any())

    def nothing(block, grid):  # the filter is applied once, at creation, under this rule
        return torch.zeros(grid.num_voxels, dtype=torch.bool)

    again = field.plan_resample(24, 0, LEVELS, 1, nothing, rule="surface")
    assert torch.equal(again.grids[0].voxels, new.voxels)
    with pytest.raises(ValueError, match="rule must be"):
        field.plan_resample(24, 0, LEVELS, 1, None, rule="band")


def test_resampling_keeps_the_shell_band_and_can_grow_past_the_old_occupancy():
    full = make_field(center=12)
    # Start from the voxels within one voxel of the zero level set only.
    grid = full.grids[0]
    centres = (grid.voxel_coords().float() + 0.5) / 12
    near_surface = ((centres - 0.5).norm(dim=-1) - 0.25).abs() < 1.0 / 12
    band = grid.prune(near_surface)
    field = Field(
        BOUNDED[0],
        BOUNDED[1],
        12,
        0,
        [band],
        full.sdf[grid.find_vertices(band.vertex_coords())],
        full.sh_dc[grid.find_vertices(band.vertex_coords())],
    )
    field.apply_remap(field.plan_resample(24, 0, LEVELS, 1, None, rule="shells"))
    new = field.grids[0]
    # Each new voxel's old parent (24 / 12 = 2 new voxels per old one, per axis).
    parents = new.voxel_coords() // 2
    outside_old = band.find_voxels(parents) < 0
    assert bool(outside_old.any())  # grown by the dilation (the original could only shrink)
    centres = (new.voxel_coords().float() + 0.5) / 24
    distance = ((centres - 0.5).norm(dim=-1) - 0.25).abs()
    # ... but only within the box dilation (1 old voxel) of a voxel holding a face.
    assert float(distance.max()) < (1 + 1) * math.sqrt(3) / 12
    assert field.extract([0.0], with_sh=False).num_faces > 0


def test_unseen_voxels_stay_empty_after_every_resampling():
    def left_half(block, grid):  # a "camera" that sees only contracted x <= 0.6
        centres = (grid.voxel_coords().float() + 0.5) / torch.tensor(grid.shape)
        return centres[:, 0] <= 0.6

    field = make_field(center=12, voxel_filter=left_half)
    for resolution in (16, 24, 40):
        remap = field.plan_resample(resolution, 0, LEVELS, 4, left_half, rule="shells")
        field.apply_remap(remap)
        grid = field.grids[0]
        upper_x = (grid.voxel_coords()[:, 0].float() + 1) / resolution
        assert float(upper_x.max()) <= 0.6 + 1.0 / resolution
        assert grid.num_voxels > 0


def test_no_surface_keeps_every_voxel():
    field = make_field(center=8, initial=lambda p: torch.ones(p.shape[0]))
    field.apply_remap(field.plan_resample(16, 0, LEVELS, 1, None))
    assert field.grids[0].num_voxels == 16**3


def test_a_fading_prior_is_blended_and_must_be_baked_before_resampling():
    field = make_field(center=8, sdf_noise=0.01)
    field.prior = torch.full_like(field.sdf.detach(), 0.2)
    field.prior_weight = 0.25
    expected = 0.75 * field.sdf.detach() + 0.25 * 0.2
    torch.testing.assert_close(field.signed_distance().detach(), expected)
    with pytest.raises(ValueError, match="bake_prior"):
        field.apply_remap(field.plan_resample(12, 0, LEVELS, 1, None))
    field.bake_prior()
    assert field.prior is None and torch.equal(field.sdf.detach(), expected)
    field.apply_remap(field.plan_resample(12, 0, LEVELS, 1, None))


def test_growing_sh_keeps_the_values_and_adds_zero_bands():
    field = make_field()
    before = field.sh.detach().clone()
    added = field.grow_sh(2)
    assert [name for name, _ in added] == ["sh_band1", "sh_band2"]
    assert field.sh.shape == (field.num_vertices, 9, 3)
    assert torch.equal(field.sh[:, :1], before)
    assert not field.sh[:, 1:].any()
    assert field.grow_sh(1) == []  # never shrinks


def test_state_round_trip():
    field = make_field(UNBOUNDED, center=6, arm=3)
    field.grow_sh(1)
    again = Field.from_state(field.state_dict(), UNBOUNDED[1])
    for (name, a), (other, b) in zip(field.parameters(), again.parameters(), strict=True):
        assert name == other and torch.equal(a, b)
    assert [g.shape for g in again.grids] == [g.shape for g in field.grids]
    assert all(
        torch.equal(a.voxels, b.voxels) for a, b in zip(field.grids, again.grids, strict=True)
    )


def _edge_counts(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts of undirected and of directed edges of a triangle list."""
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).long()
    undirected = directed.sort(dim=1).values
    _, count_undirected = torch.unique(undirected, dim=0, return_counts=True)
    _, count_directed = torch.unique(directed, dim=0, return_counts=True)
    return count_undirected, count_directed


def test_shells_are_watertight_and_outward_across_the_centre_arm_interface():
    # A sphere of radius 0.3 around the centre of the contracted cube pokes through all six
    # faces of the centre cube (half-side 0.25) into the arms.
    field = make_field(UNBOUNDED, center=8, arm=6, initial=sphere_sdf(0.3))
    extraction = field.extract(LEVELS)
    contracted = UNBOUNDED[1].contract(extraction.positions.double())
    signed = (contracted * 2 - 1).abs().amax(-1)
    assert bool(((signed - 0.5).abs() < 1e-4).any())  # vertices on the interface
    assert bool((signed > 0.55).any()) and bool((signed < 0.45).any())  # in both
    for level in range(len(LEVELS)):
        f0, f1 = extraction.face_offsets[level : level + 2].tolist()
        faces = extraction.faces[f0:f1]
        undirected, directed = _edge_counts(faces)
        assert bool((undirected == 2).all())  # closed: every edge has exactly two faces
        assert bool((directed == 1).all())  # consistently oriented
        v = extraction.positions.double()[faces.long()]  # world space
        volume = torch.linalg.det(v).sum() / 6
        assert volume > 0  # normals point outward (toward increasing sdf)
    # The vertices are unique: merged across blocks, not duplicated.
    assert torch.unique(extraction.positions, dim=0).shape[0] == extraction.positions.shape[0]


def test_layout_keys_identify_exactly_the_coincident_vertices():
    layout, _ = UNBOUNDED
    center, arm = 6, 4
    keys, positions = [], []
    for block in layout.blocks:
        grid = SparseGrid.full(block.shape(center, arm))
        keys.append(block.keys(grid.vertex_coords(), center, arm))
        positions.append(block.to_contracted(grid.vertex_positions(torch.float64), 0.5))
    keys, positions = torch.cat(keys), torch.cat(positions)
    unique, inverse = torch.unique(keys, return_inverse=True)
    first = torch.zeros(unique.shape[0], 3, dtype=torch.float64).index_copy_(
        0, inverse.flip(0), positions.flip(0)
    )
    assert torch.allclose(positions, first[inverse], atol=1e-12)  # same key: same point
    distinct = torch.cdist(first, first) + torch.eye(first.shape[0]) * 10
    assert float(distinct.min()) > 1e-6  # different keys: different points
    # Conforming tiling: the 7 blocks' vertices cover the cube's corners and centre face.
    assert unique.shape[0] == first.shape[0]


def test_block_orientation_flag_matches_the_jacobian_sign():
    layout, _ = UNBOUNDED
    unit = torch.tensor([[0.3, 0.4, 0.6]], dtype=torch.float64)
    for block in layout.blocks:
        jacobian = torch.autograd.functional.jacobian(
            lambda x, block=block: block.to_contracted(x, 0.5)[0], unit
        )[:, 0, :]
        assert (torch.linalg.det(jacobian) < 0) == block.flips_orientation, block.name


def test_point_cloud_initializer_is_a_union_of_balls():
    points = torch.tensor([[0.2, 0.2, 0.2], [0.8, 0.5, 0.5]])
    sdf = point_cloud_sdf(points, 0.05, budget=1)
    query = torch.tensor([[0.2, 0.2, 0.3], [0.5, 0.5, 0.5], [0.8, 0.5, 0.5]])
    assert torch.allclose(sdf(query), torch.tensor([0.05, 0.25, -0.05]), atol=1e-6)


def two_cameras(focal: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``([2, 4, 4], [2, 3, 3])``: two cameras looking at the origin from different sides,
    for square images of `size` pixels."""
    eyes = [np.array([4.0, 0.5, 1.0]), np.array([0.3, -3.5, 2.0])]
    world_to_camera = torch.tensor(
        np.stack([look_at_world_to_camera(e, np.zeros(3), np.array([0, 0, 1.0])) for e in eyes]),
        dtype=torch.float32,
    )
    half = size / 2
    intrinsics = torch.tensor([[focal, 0, half], [0, focal, half], [0, 0, 1]]).expand(2, 3, 3)
    return world_to_camera, intrinsics


def test_render_is_nearly_unchanged_across_a_resolution_step():
    # Colours linear in position (transferred exactly) and a sphere: rendering before and
    # after a step 16 -> 24 differs only where the finer marching cubes moves the silhouette.
    field = make_field(center=16)
    positions = field.contracted_vertices()
    field.sh_dc = ((positions - 0.5) * 2)[:, None, :].contiguous().requires_grad_()
    world_to_camera, intrinsics = two_cameras(focal=40.0, size=32)
    model = ModelConfig(backend="reference")

    def render():
        with torch.no_grad():
            extraction = field.extract(LEVELS, backend="reference")
            image, _ = render_extraction(
                extraction, world_to_camera, intrinsics, (32, 32), torch.ones(2, 3), model,
                ssaa=2, near=0.1,
            )  # fmt: skip
        return image

    before = render()
    field.apply_remap(field.plan_resample(24, 0, LEVELS, 2, None))
    after = render()
    assert float(psnr(after, before).min()) > 35.0  # measured 40-45 dB
    assert float((after - before).abs().mean()) < 0.005  # measured 0.0012


def test_render_extraction_takes_one_background_colour_or_one_per_image():
    field = make_field(center=12)
    world_to_camera, intrinsics = two_cameras(focal=20.0, size=16)
    model = ModelConfig(backend="reference")
    with torch.no_grad():
        extraction = field.extract(LEVELS, backend="reference")

        def render(background):
            return render_extraction(
                extraction, world_to_camera, intrinsics, (16, 16), background, model,
                ssaa=1, near=0.1,
            )[0]  # fmt: skip

        colour = torch.tensor([0.2, 0.5, 0.9])
        one = render(colour)
        assert torch.equal(one, render(colour.expand(2, 3)))
        corner = one[:, :, 0, 0]  # nothing is drawn there: the background shows
        assert torch.allclose(corner, colour.expand(2, 3))
        apart = render(torch.stack([colour, 1 - colour]))
        assert torch.equal(apart[0], one[0]) and not torch.equal(apart[1], one[1])


def test_gradient_curvature_is_scaled_to_grid_units():
    from slang_marching_cubes import sdf_regularizers

    coarse, fine = make_field(center=12), make_field(center=24)
    for field in (coarse, fine):
        size = 1.0 / field.grids[0].shape[0]
        plain = sdf_regularizers(field.grids[0], field.sdf.detach())["curvature"]
        scaled = field.regularizers("gradient")["curvature"]
        assert float(scaled.detach()) == pytest.approx(float(plain) * size**4, rel=1e-5)
    # A smooth field: the plain term is nearly resolution independent, the scaled one ~ h^4.
    ratio = float(fine.regularizers("gradient")["curvature"].detach()) / float(
        coarse.regularizers("gradient")["curvature"].detach()
    )
    assert 0.03 < ratio < 0.1  # (1/2)^4 = 0.0625
    # Per-vertex noise of a fixed size costs about the same at both resolutions.
    noisy = [make_field(center=n, sdf_noise=0.01, seed=1) for n in (12, 24)]
    values = [float(f.regularizers("gradient")["curvature"].detach()) for f in noisy]
    assert 0.5 < values[1] / values[0] < 2.0


def test_laplacian_curvature_is_the_original_unscaled_operator():
    from slang_marching_cubes import sdf_regularizers

    field = make_field(center=12, sdf_noise=0.01, seed=2)
    plain = sdf_regularizers(field.grids[0], field.sdf.detach(), curvature="laplacian")
    assert float(field.regularizers()["curvature"].detach()) == pytest.approx(
        float(plain["curvature"]), rel=1e-6
    )  # "laplacian" is the default, with no resolution scaling
    # Per-vertex noise e adds about (n + n^2) e^2 per voxel at any resolution (n neighbours).
    added = []
    for n in (12, 24):
        noisy = make_field(center=n, sdf_noise=0.01, seed=1).regularizers()["curvature"]
        clean = make_field(center=n, sdf_noise=0.0, seed=1).regularizers()["curvature"]
        added.append(float((noisy - clean).detach()))
    assert 0.8 < added[1] / added[0] < 1.25
    assert 12e-4 < added[0] < 42e-4  # e^2 = 1e-4 times n + n^2: 12 (n = 3) ... 42 (n = 6)
