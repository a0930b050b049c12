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
import json
import math
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "meshtryoshka_train" / "demo_scene"
SPLITS = {"train": 48, "val": 4, "test": 12}
SIZE = 96
FOV_X_DEGREES = 40.0
CAMERA_DISTANCE = 2.7
SPP = 128


def torus_mesh(major: float, minor: float, segments: int = 64, rings: int = 24):
    """A torus around the z axis as (vertices [N, 3], faces [M, 3]) with outward normals."""
    u = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    v = np.linspace(0, 2 * np.pi, rings, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    x = (major + minor * np.cos(vv)) * np.cos(uu)
    y = (major + minor * np.cos(vv)) * np.sin(uu)
    z = minor * np.sin(vv)
    vertices = np.stack([x, y, z], -1).reshape(-1, 3)
    faces = []
    for i in range(segments):
        for j in range(rings):
            a = i * rings + j
            b = ((i + 1) % segments) * rings + j
            c = ((i + 1) % segments) * rings + (j + 1) % rings
            d = i * rings + (j + 1) % rings
            faces += [(a, b, c), (a, c, d)]
    return vertices.astype(np.float32), np.array(faces, dtype=np.uint32)


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


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


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


def opengl_camera_to_world(mi, origin: np.ndarray) -> np.ndarray:
    to_world = mi.ScalarTransform4f().look_at(
        origin=origin.tolist(), target=[0.0, 0.0, 0.0], up=[0.0, 0.0, 1.0]
    )
    mitsuba = np.array(to_world.matrix, dtype=np.float64).reshape(4, 4)
    return mitsuba @ np.diag([-1.0, 1.0, -1.0, 1.0])


def render(out: Path, spp: int) -> None:
    import mitsuba as mi
    from PIL import Image

    mi.set_variant("scalar_rgb")
    torus_vertices, torus_faces = torus_mesh(0.28, 0.08)
    rotation = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32)  # stand it up
    torus_vertices = torus_vertices @ rotation.T + np.array([-0.5, -0.3, -0.06], np.float32)
    with tempfile.TemporaryDirectory() as folder:
        torus_ply = Path(folder) / "torus.ply"
        write_ply(torus_ply, torus_vertices, torus_faces)
        scene = mi.load_dict(scene_dict(mi, torus_ply))

    out.mkdir(parents=True, exist_ok=True)
    seed = 0
    for split, count in SPLITS.items():
        (out / split).mkdir(exist_ok=True)
        frames = []
        for index, origin in enumerate(camera_positions(count, seed)):
            c2w = opengl_camera_to_world(mi, origin)
            sensor = mi.load_dict(
                {
                    "type": "perspective",
                    "fov": FOV_X_DEGREES,
                    "fov_axis": "x",
                    "to_world": mi.ScalarTransform4f().look_at(
                        origin=origin.tolist(), target=[0.0, 0.0, 0.0], up=[0.0, 0.0, 1.0]
                    ),
                    "film": {
                        "type": "hdrfilm",
                        "width": SIZE,
                        "height": SIZE,
                        "pixel_format": "rgba",
                        "rfilter": {"type": "box"},
                    },
                    "sampler": {"type": "independent", "sample_count": spp},
                }
            )
            image = np.array(mi.render(scene, sensor=sensor, seed=seed * 1000 + index))
            alpha = np.clip(image[..., 3:4], 0, 1)
            # The film's colour is premultiplied by coverage; PNG wants straight alpha.
            linear = np.clip(image[..., :3] / np.maximum(alpha, 1e-6), 0, 1)
            srgb = np.where(
                linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055
            )
            rgba = np.concatenate([np.where(alpha > 1e-6, srgb, 0.0), alpha], -1)
            name = f"r_{index}"
            Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(
                out / split / f"{name}.png", optimize=True
            )
            frames.append({"file_path": f"./{split}/{name}", "transform_matrix": c2w.tolist()})
        seed += 1
        document = {"camera_angle_x": math.radians(FOV_X_DEGREES), "frames": frames}
        (out / f"transforms_{split}.json").write_text(json.dumps(document, indent=1))
        print(f"{split}: {count} images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--spp", type=int, default=SPP)
    args = parser.parse_args()
    render(args.out, args.spp)


if __name__ == "__main__":
    main()
