"""Assertions shared by the tests (imported as ``data_helpers``: a unique name, since pytest
runs every package in one process)."""

import numpy as np

from meshtryoshka_data._geometry import pixel_rays, project


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


def assert_surface_colours(dataset, truth) -> int:
    """Check a loaded (normalized) dataset against its synthetic truth; returns the number of
    surface points checked.

    Normalizing cameras and points together must leave every projection where it was, and
    the truth's visible surface points must land on pixels of their colour.
    """
    w2c, k = dataset.world_to_camera.double().numpy(), dataset.intrinsics.double().numpy()
    checked = 0
    for index in range(len(dataset)):
        pixels, colors = visible_surface_pixels(
            truth, w2c, k, dataset.width, dataset.height, index, from_world=dataset.from_world
        )
        moved, _ = project(dataset.from_world(truth.points), w2c[index], k[index])
        original, _ = project(truth.points, truth.world_to_camera[index], truth.intrinsics[index])
        assert_close(moved, original, 1e-4, "normalization moved projections")
        columns, rows = np.floor(pixels).astype(int).T
        seen = dataset.images[index].numpy()[rows, columns]
        assert_close(seen, colors, 0.1 * 255, f"colours in image {index}")
        checked += len(pixels)
    return checked


def render_room(world_to_camera, intrinsics, width, height, seed=0, distortion=None):
    """A textured room for structure-from-motion tests: uint8 ``[H, W, 3]``.

    The inside of the box ``[-4, 4] x [-3, 3] x [-2.5, 2.5]`` seen by a pinhole camera (pixel
    centres at +0.5), or through the lens ``distortion``; its walls are covered in sharp-edged
    blobs of random colours over a smooth multi-scale value noise: every patch is unique, so
    SIFT finds and matches many features.
    """
    rays = pixel_rays(intrinsics, width, height, distortion) @ world_to_camera[:3, :3]
    origin = -world_to_camera[:3, :3].T @ world_to_camera[:3, 3]
    half = np.array([4.0, 3.0, 2.5])
    with np.errstate(divide="ignore"):
        exits = (np.sign(rays) * half - origin) / rays  # where each ray leaves each slab
    depth = np.where(np.isfinite(exits) & (exits > 0), exits, np.inf).min(axis=-1)
    points = origin + depth[..., None] * rays
    rng = np.random.default_rng(seed)
    tables = rng.uniform(0, 1, (4, 32, 32, 32, 3))

    def noise(cell, table):
        q = points / cell + 16.0
        low = np.floor(q).astype(int)
        f = q - low
        f = f * f * (3 - 2 * f)
        out = 0.0
        for corner in np.ndindex(2, 2, 2):
            weight = np.prod(np.where(corner, f, 1 - f), axis=-1)[..., None]
            index = (low + corner) % 32
            out = out + weight * table[index[..., 0], index[..., 1], index[..., 2]]
        return out

    colour = 0.15 + 0.7 * noise(1.2, tables[0])
    blobs = noise(0.25, tables[1])
    colour = np.where(blobs[..., :1] > 0.6, noise(0.6, tables[2]), colour)
    spots = noise(0.09, tables[3])
    colour = np.where(spots[..., :1] > 0.68, 1.0 - colour, colour)
    return np.clip(np.rint(colour * 255), 0, 255).astype(np.uint8)
