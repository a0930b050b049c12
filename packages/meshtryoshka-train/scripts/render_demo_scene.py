"""Render the bundled demo scene with Mitsuba 3 (an independent, physically based renderer).

    pip install mitsuba==3.9.1      # development-only; the product never imports it
    python packages/meshtryoshka-train/scripts/render_demo_scene.py

Writes a NeRF-synthetic-format scene (transforms_{train,val,test}.json + RGBA PNGs) into
``src/meshtryoshka_train/demo_scene/``: a small still life (a checkered sphere, a box and a
torus on a low pedestal) inside the unit ball, lit by a constant environment and a sun,
rendered from cameras on a sphere around it with a transparent background. The committed
images are this script's output; rerun it only to change the scene.

Camera convention written to the JSON: NeRF-synthetic `transform_matrix` = OpenGL
camera-to-world (+x right, +y up, looking along -z). Mitsuba's sensor frame is +x left, +y up,
looking along +z, so OpenGL camera-to-world = Mitsuba to_world @ diag(-1, 1, -1, 1).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
from mitsuba_scenes import torus_mesh, transform, write_blender_split, write_ply

OUT = Path(__file__).resolve().parents[1] / "src" / "meshtryoshka_train" / "demo_scene"
SPLITS = {"train": 48, "val": 4, "test": 12}
SIZE = 96
FOV_X_DEGREES = 40.0
CAMERA_DISTANCE = 2.7
SPP = 128


# Points on a sphere from (elevation, azimuth), as tests-integration/mitsuba_photos.py places
# its cameras (the packages' scripts and the integration tests do not import each other).
def camera_positions(count: int, seed: int) -> np.ndarray:
    """`count` positions on the upper part of a sphere (elevation 10..70 degrees), spread evenly."""
    rng = np.random.default_rng(seed)
    golden = math.pi * (3 - math.sqrt(5))
    positions = []
    for i in range(count):
        elevation = math.radians(10 + 60 * (i + 0.5) / count)
        azimuth = golden * i * 7 + rng.uniform(0, 0.2)
        positions.append(
            CAMERA_DISTANCE
            * np.array(
                [
                    math.cos(elevation) * math.cos(azimuth),
                    math.cos(elevation) * math.sin(azimuth),
                    math.sin(elevation),
                ]
            )
        )
    return np.array(positions)


def scene_dict(mi, torus_ply: Path):
    T = mi.ScalarTransform4f
    return {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": 4, "hide_emitters": True},
        "environment": {"type": "constant", "radiance": {"type": "rgb", "value": 0.6}},
        "sun": {
            "type": "directional",
            "direction": [-0.4, -0.3, -1.0],
            "irradiance": {"type": "rgb", "value": 2.2},
        },
        "sphere": {
            "type": "sphere",
            "center": [0.0, 0.0, 0.15],
            "radius": 0.42,
            "bsdf": {
                "type": "diffuse",
                "reflectance": {
                    "type": "checkerboard",
                    "color0": {"type": "rgb", "value": [0.85, 0.25, 0.15]},
                    "color1": {"type": "rgb", "value": [0.95, 0.8, 0.3]},
                    "to_uv": T().scale([4.0, 2.0, 1.0]),
                },
            },
        },
        "box": {
            "type": "cube",
            "to_world": T().translate([0.45, -0.45, -0.2]).rotate([0, 0, 1], 30).scale(0.2),
            "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.15, 0.35, 0.8]}},
        },
        "torus": {
            "type": "ply",
            "filename": str(torus_ply),
            "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.2, 0.7, 0.3]}},
        },
        "pedestal": {
            "type": "cylinder",
            "p0": [0.0, 0.0, -0.5],
            "p1": [0.0, 0.0, -0.4],
            "radius": 0.75,
            "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.6, 0.6, 0.55]}},
        },
        "pedestal_top": {
            "type": "disk",
            "to_world": T().translate([0.0, 0.0, -0.4]).scale(0.75),
            "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.6, 0.6, 0.55]}},
        },
    }


def render(out: Path, spp: int) -> None:
    import mitsuba as mi

    mi.set_variant("scalar_rgb")
    # stood up (90 degrees about x) beside the sphere
    torus = torus_mesh(0.28, 0.08, segments=64, rings=24)
    torus = torus.transformed(transform((-0.5, -0.3, -0.06), rotate_x=90))
    with tempfile.TemporaryDirectory() as folder:
        torus_ply = Path(folder) / "torus.ply"
        write_ply(torus_ply, torus)
        scene = mi.load_dict(scene_dict(mi, torus_ply))

    out.mkdir(parents=True, exist_ok=True)
    for seed, (split, count) in enumerate(SPLITS.items()):
        positions = camera_positions(count, seed)
        write_blender_split(mi, scene, out, split, positions, FOV_X_DEGREES, SIZE, spp, seed * 1000)
        print(f"{split}: {count} images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--spp", type=int, default=SPP)
    args = parser.parse_args()
    render(args.out, args.spp)


if __name__ == "__main__":
    main()
