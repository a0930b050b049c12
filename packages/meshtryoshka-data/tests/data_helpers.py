"""Assertions shared by the tests (imported as ``data_helpers``: a unique name, since pytest
runs every package in one process)."""

import numpy as np

from meshtryoshka_data._geometry import project


def assert_close(actual, expected, atol, what=""):
    """np.allclose with a message giving the largest difference and where it is."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    worst = np.unravel_index(np.argmax(diff), diff.shape) if diff.size else ()
    assert diff.max(initial=0) <= atol, f"{what}: max |diff| {diff.max():.3g} at {worst} > {atol}"


def visible_surface_pixels(truth, w2c, intrinsics, width, height, index, from_world=None):
    """Pixels ([K, 2] continuous) and colours ([K, 3] uint8) of the truth's surface points
    that camera ``index`` sees face-on (cos > 0.5) and well inside the image.

    ``from_world`` maps the truth's coordinates into the cameras' frame (default: identity).
    """
    from_world = from_world or (lambda x: x)
    points, center = from_world(truth.points), from_world(truth.sphere_center)
    rotation, translation = w2c[index, :3, :3], w2c[index, :3, 3]
    eye = -rotation.T @ translation
    normals = points - center
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    view = eye - points
    cos = np.einsum("pi,pi->p", normals, view) / np.linalg.norm(view, axis=1)
    pixels, depth = project(points, w2c[index], intrinsics[index])
    keep = (cos > 0.5) & (depth > 0)
    keep &= (pixels >= 1).all(axis=1) & (pixels < [width - 1, height - 1]).all(axis=1)
    return pixels[keep], truth.point_colors[keep]
