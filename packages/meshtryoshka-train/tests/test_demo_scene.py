"""The bundled demo scene loads and its cameras agree with its rendered silhouettes.

The scene (rendered by Mitsuba 3, scripts/render_demo_scene.py) holds a sphere of radius 0.42
centred at (0, 0, 0.15) and other objects, all inside the unit ball. For every view, the pixel
under the sphere's centre must be opaque and every pixel whose ray misses the unit ball must be
transparent: this checks the JSON's camera convention and the intrinsics against the renderer.
"""

from importlib import resources

import torch

from meshtryoshka_data import load_blender

SPLITS = {"train": 48, "val": 4, "test": 12}


def demo_path():
    return resources.files("meshtryoshka_train") / "demo_scene"


def test_demo_scene_loads_with_the_expected_splits():
    dataset = load_blender(str(demo_path()))
    assert dataset.images.shape[1:] == (96, 96, 4)
    assert {name: len(dataset.splits[name]) for name in SPLITS} == SPLITS


def test_silhouettes_match_the_known_geometry():
    dataset = load_blender(str(demo_path()))
    height, width = dataset.images.shape[1:3]
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3).double()
    for index in range(dataset.images.shape[0]):
        w2c = dataset.world_to_camera[index].double()
        k = dataset.intrinsics[index].double()
        alpha = dataset.images[index, ..., 3]
        centre = w2c[:3, :3] @ torch.tensor([0.0, 0.0, 0.15], dtype=torch.float64) + w2c[:3, 3]
        u, v, _ = (k @ centre) / centre[2]
        assert alpha[int(v), int(u)] == 255, f"view {index}: sphere centre is not opaque"
        c2w = torch.linalg.inv(w2c)
        directions = (c2w[:3, :3] @ torch.linalg.solve(k, pixels.T)).T
        directions = directions / directions.norm(dim=-1, keepdim=True)
        origin = c2w[:3, 3]
        closest = origin - (directions @ origin)[:, None] * directions
        misses = (closest.norm(dim=-1) > 1.0).reshape(height, width)
        assert misses.any()
        assert alpha[misses].max() == 0, f"view {index}: opaque pixel outside the unit ball"
