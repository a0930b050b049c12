"""The camera-visibility filter."""

import itertools

import torch

from meshtryoshka_train.visibility import grid_voxels_in_view, points_in_view, voxels_in_view
from slang_marching_cubes import SparseGrid


def camera_looking_down_z(distance: float):
    """A camera at (0, 0, -distance) looking along +z, 100x80 pixels, focal 50."""
    w2c = torch.eye(4)
    w2c[2, 3] = distance
    k = torch.tensor([[50.0, 0, 50.0], [0, 50.0, 40.0], [0, 0, 1]])
    return w2c[None], k[None]


def test_points_in_front_inside_the_image_are_seen():
    w2c, k = camera_looking_down_z(2.0)
    points = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # centre of the image, depth 2
            [1.9, 0.0, 0.0],  # x = 50 + 50 * 1.9 / 2 = 97.5: inside
            [2.1, 0.0, 0.0],  # x = 102.5: outside the 100-pixel width
            [0.0, 1.7, 0.0],  # y = 40 + 50 * 1.7 / 2 = 82.5: outside the 80-pixel height
            [0.0, 0.0, -2.5],  # behind the camera
            [0.0, 0.0, -1.95],  # in front but nearer than near = 0.1
        ]
    )
    seen = points_in_view(points, w2c, k, (80, 100), near=0.1)[:, 0]
    assert seen.tolist() == [True, True, False, False, False, False]


def test_chunking_does_not_change_the_result():
    w2c, k = camera_looking_down_z(3.0)
    points = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    full = points_in_view(points, w2c, k, (80, 100), near=0.1)
    chunked = points_in_view(points, w2c, k, (80, 100), near=0.1, chunk=7)
    assert torch.equal(full, chunked)


def test_voxel_needs_all_corners_in_one_camera():
    corners = torch.ones(3, 8, 2, dtype=torch.bool)
    corners[1, 0, 0] = False  # camera 1 still sees all corners of voxel 1
    corners[2, 0, 0] = False
    corners[2, 1, 1] = False  # no camera sees all corners of voxel 2
    assert voxels_in_view(corners).tolist() == [True, True, False]
    assert voxels_in_view(corners, threshold=2).tolist() == [True, False, False]


# --- grid_voxels_in_view: the trainer's filter, against an analytic frustum ----------------------

SIZE = 100  # square 100 x 100 images, principal point at the centre


def cameras_looking_along_z(focal, *positions):
    """Cameras at `positions` looking along +z (identity rotation)."""
    w2c = torch.eye(4).repeat(len(positions), 1, 1)
    w2c[:, :3, 3] = -torch.tensor(positions)
    k = torch.tensor([[focal, 0, SIZE / 2], [0, focal, SIZE / 2], [0, 0, 1]])
    return w2c, k.repeat(len(positions), 1, 1)


def to_world(unit):
    """Grid unit coordinates [0, 1]^3 -> the world cube [-2, 2]^3."""
    return unit * 4 - 2


def seen_by(corner, camera, focal, near):
    """The frustum written out: depth >= near and the offset within half the image / focal."""
    depth = corner[2] - camera[2]
    half = SIZE / 2 * depth / focal
    x, y = abs(corner[0] - camera[0]), abs(corner[1] - camera[1])
    return depth >= near and x <= half and y <= half


def expected_voxels(grid, positions, focal, near, min_cameras):
    """For each voxel: whether at least `min_cameras` cameras see all 8 of its corners."""
    result = []
    for coords in grid.voxel_coords().tolist():
        corners = [
            [(c + o) / d * 4 - 2 for c, o, d in zip(coords, offset, grid.shape, strict=True)]
            for offset in itertools.product((0, 1), repeat=3)
        ]
        seeing = sum(all(seen_by(c, p, focal, near) for c in corners) for p in positions)
        result.append(seeing >= min_cameras)
    return result


def test_grid_voxels_in_view_is_the_frustum_and_the_near_plane():
    """A dense 8^3 grid over [-2, 2]^3 and cameras 6 in front of its centre, 0.25 apart (no
    corner lies on a frustum plane); `min_cameras` of them must see a voxel."""
    grid = SparseGrid.from_dense(torch.ones(8, 8, 8, dtype=torch.bool), backend="reference")
    positions = [(0.0, 0.0, -6.0), (0.25, 0.0, -6.0)]
    w2c, k = cameras_looking_along_z(140.0, *positions)
    counts = {}
    for near in (0.1, 4.2):  # 4.2: the voxels of the first slab (z in [-2, -1.5]) are too near
        for min_cameras in (1, 2):
            seen = grid_voxels_in_view(
                grid, to_world, w2c, k, (SIZE, SIZE), near=near, min_cameras=min_cameras
            )
            assert seen.tolist() == expected_voxels(grid, positions, 140.0, near, min_cameras)
            counts[near, min_cameras] = int(seen.sum())
    assert 0 < counts[0.1, 2] < counts[0.1, 1] < grid.num_voxels
    assert 0 < counts[4.2, 2] < counts[4.2, 1] < counts[0.1, 1]
    first_slab = grid.voxel_coords()[:, 2] == 0
    assert grid_voxels_in_view(grid, to_world, w2c, k, (SIZE, SIZE), near=0.1)[first_slab].any()
    assert not grid_voxels_in_view(grid, to_world, w2c, k, (SIZE, SIZE), near=4.2)[first_slab].any()


def test_grid_voxels_in_view_needs_one_camera_to_see_every_corner():
    """Two cameras side by side: voxel (1, 0, 0) (x in [0, 2]) has its x = 0 corners in view of
    the left camera only and its x = 2 corners in view of the right one only; it is not seen."""
    grid = SparseGrid.from_dense(torch.ones(2, 2, 4, dtype=torch.bool), backend="reference")
    positions = [(-2.0, 0.0, -6.0), (3.0, 0.0, -6.0)]
    w2c, k = cameras_looking_along_z(90.0, *positions)
    left, right = positions
    for z in (-2.0, -1.0):  # the voxel's two depths
        assert seen_by([0, -2, z], left, 90.0, 0.1) and not seen_by([0, -2, z], right, 90.0, 0.1)
        assert seen_by([2, -2, z], right, 90.0, 0.1) and not seen_by([2, -2, z], left, 90.0, 0.1)
    seen = grid_voxels_in_view(grid, to_world, w2c, k, (SIZE, SIZE), near=0.1, chunk=5)
    assert seen.tolist() == expected_voxels(grid, positions, 90.0, 0.1, 1)
    assert seen.any() and not seen[grid.voxel_coords().tolist().index([1, 0, 0])]


def test_grid_voxels_in_view_of_an_empty_grid_is_empty():
    grid = SparseGrid.from_coords((4, 4, 4), torch.zeros(0, 3, dtype=torch.int64))
    w2c, k = cameras_looking_along_z(90.0, (0.0, 0.0, -6.0))
    seen = grid_voxels_in_view(grid, to_world, w2c, k, (SIZE, SIZE), near=0.1)
    assert seen.shape == (0,) and seen.dtype == torch.bool
