"""The camera-visibility filter."""

import torch

from meshtryoshka_train.visibility import points_in_view, voxels_in_view


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
