"""Render the scenes of the quality benchmark (``benchmarks/bench_quality.py``) with Mitsuba 3.

    pip install mitsuba==3.9.1      # development-only; the product never imports it
    python packages/meshtryoshka-train/scripts/render_quality_scenes.py [--out datasets/quality]

Writes, under ``--out`` (default ``datasets/quality``, git-ignored; the images are not
committed, rerun this script to make them, about 2-4 minutes per scene on 2 cores):

- five objects in the NeRF-synthetic layout (``transforms_{train,val,test}.json`` + RGBA PNGs,
  200x200, 100 train / 4 val / 25 test views on the upper hemisphere at distance 4.03, field
  of view 39.6 degrees, transparent background, objects within a radius of about 1.2), each
  stressing one thing: ``texture`` (high-frequency colour cells and printed-text stripes),
  ``glossy`` (a gold conductor and a red plastic reflecting a structured environment),
  ``thin`` (a stool with thin legs and rungs, a thin wire ring), ``hollow`` (a bowl and a
  thick-walled cup: concave insides), ``multi`` (seven separate objects);
- one unbounded scene in the COLMAP / Mip-NeRF 360 layout, ``garden`` (``images/`` at
  240x160, ``sparse/0`` with PINHOLE cameras and a point cloud sampled on the visible
  geometry): a still life on a table in a garden of trees, a tiled ground to the horizon and
  a visible sky; 120 views on a ring around the table (llffhold 8: 15 test views).

A scene whose folder already holds a ``.complete`` marker is skipped (the cache); each scene
is rendered into a temporary folder and renamed when complete, so a cut-short run leaves
nothing half-written. ``--scenes`` picks some.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from mitsuba_scenes import (
    Part,
    Scene,
    box_mesh,
    cells_texture,
    checker_texture,
    cylinder_mesh,
    diffuse,
    environment_map,
    hemisphere_positions,
    lathe_mesh,
    look_at,
    noise_texture,
    opencv_camera_to_world,
    render_view,
    segment_mesh,
    sphere_mesh,
    stripes_texture,
    to_mitsuba,
    to_srgb8,
    torus_mesh,
    transform,
    write_blender_split,
)

OBJECT_SPLITS = {"train": 100, "val": 4, "test": 25}
OBJECT_SIZE = 200
OBJECT_FOV_X = math.degrees(0.6911112070083618)  # NeRF-synthetic's camera_angle_x
OBJECT_DISTANCE = 4.0311  # NeRF-synthetic's camera distance
OBJECT_SCALE = 1.25  # the scenes below are built within radius ~0.9; NeRF-synthetic's fill ~1.2
GARDEN_SIZE = (240, 160)
GARDEN_VIEWS = 120
GARDEN_FOV_X = 62.0
SPP = 64


# ------------------------------------------------------------------------------ objects


def texture_scene(rng) -> Scene:
    return Scene(
        parts=[
            Part(
                sphere_mesh(0.6).transformed(transform((0.0, -0.15, 0.1))), diffuse(texture="cells")
            ),
            Part(
                box_mesh((0.55, 0.55, 0.55)).transformed(
                    transform((0.45, 0.55, -0.25), rotate_z=25)
                ),
                diffuse(texture="print"),
            ),
            Part(
                cylinder_mesh(0.28, -0.7, 0.0).transformed(transform((-0.6, 0.5, 0.0))),
                diffuse(texture="fine"),
            ),
        ],
        environment=environment_map(rng),
        textures={
            "cells": cells_texture(rng, (96, 48)),
            "print": stripes_texture(rng),
            "fine": cells_texture(rng, (64, 24), pixels_per_cell=2),
        },
    )


def glossy_scene(rng) -> Scene:
    return Scene(
        parts=[
            Part(
                torus_mesh(0.45, 0.17).transformed(transform((-0.2, 0.25, 0.1), rotate_x=60)),
                {
                    "type": "twosided",
                    "bsdf": {"type": "roughconductor", "material": "Au", "alpha": 0.12},
                },
            ),
            Part(
                sphere_mesh(0.42).transformed(transform((0.45, -0.35, -0.1))),
                {
                    "type": "twosided",
                    "bsdf": {
                        "type": "roughplastic",
                        "alpha": 0.08,
                        "diffuse_reflectance": {"type": "rgb", "value": [0.7, 0.08, 0.06]},
                    },
                },
            ),
            Part(
                box_mesh((1.6, 1.6, 0.12)).transformed(transform((0.0, 0.0, -0.62))),
                diffuse(texture="tiles"),
            ),
        ],
        environment=environment_map(rng),
        textures={"tiles": checker_texture((0.8, 0.8, 0.78), (0.25, 0.3, 0.4), squares=6)},
    )


def thin_scene(rng) -> Scene:
    wood = diffuse((0.55, 0.33, 0.15))
    parts = [
        Part(cylinder_mesh(0.55, 0.15, 0.23), diffuse(texture="seat")),
    ]
    corners = [(0.33, 0.33), (-0.33, 0.33), (-0.33, -0.33), (0.33, -0.33)]
    for x, y in corners:
        parts.append(Part(segment_mesh((1.35 * x, 1.35 * y, -0.95), (x, y, 0.16), 0.035), wood))
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):
        s = 1.17  # the legs' spread at the rungs' height
        parts.append(
            Part(segment_mesh((s * x0, s * y0, -0.45), (s * x1, s * y1, -0.45), 0.02), wood)
        )
    parts.append(
        Part(
            torus_mesh(0.3, 0.02, rings=16).transformed(transform((0.0, 0.0, 0.55), rotate_x=90)),
            diffuse((0.15, 0.2, 0.7)),
        )
    )
    parts.append(Part(segment_mesh((0.0, 0.0, 0.23), (0.0, 0.0, 0.25), 0.02), wood))
    return Scene(
        parts=parts,
        environment=environment_map(rng),
        textures={"seat": noise_texture(rng, (0.7, 0.5, 0.3), 0.25, blur=1)},
    )


def hollow_scene(rng) -> Scene:
    angles = np.linspace(-math.pi / 2, 0.0, 24)
    outer = np.stack([0.7 * np.cos(angles), 0.7 * np.sin(angles)], 1)
    inner = np.stack([0.64 * np.cos(angles[::-1]), 0.64 * np.sin(angles[::-1])], 1)
    bowl = np.concatenate([[(1e-4, -0.7)], outer[1:], [(0.67, 0.02)], inner[:-1], [(1e-4, -0.64)]])
    cup = np.array(
        [
            (1e-4, -0.45),
            (0.3, -0.45),
            (0.3, 0.35),
            (0.33, 0.37),
            (0.26, 0.37),
            (0.25, 0.33),
            (0.25, -0.38),
            (1e-4, -0.38),
        ]
    )
    return Scene(
        parts=[
            Part(
                lathe_mesh(bowl, 96).transformed(transform((-0.35, -0.1, 0.05))),
                diffuse(texture="glaze"),
            ),
            Part(
                lathe_mesh(cup, 64).transformed(transform((0.6, 0.45, -0.15))),
                diffuse(texture="band"),
            ),
        ],
        environment=environment_map(rng),
        textures={
            "glaze": noise_texture(rng, (0.85, 0.75, 0.55), 0.2, blur=2),
            "band": checker_texture((0.9, 0.9, 0.9), (0.1, 0.4, 0.6), squares=10, pixels=8),
        },
    )


def multi_scene(rng) -> Scene:
    cone = np.array([(1e-4, -0.25), (0.22, -0.25), (1e-4, 0.3)])
    parts = [
        Part(sphere_mesh(0.25).transformed(transform((0.7, 0.5, 0.3))), diffuse(texture="check")),
        Part(
            sphere_mesh(0.18).transformed(transform((-0.8, -0.4, -0.2))), diffuse((0.9, 0.8, 0.2))
        ),
        Part(
            box_mesh((0.35, 0.35, 0.35)).transformed(
                transform((-0.5, 0.6, 0.1), rotate_z=35, rotate_x=20)
            ),
            diffuse((0.15, 0.4, 0.85)),
        ),
        Part(
            box_mesh((0.5, 0.2, 0.3)).transformed(transform((0.3, -0.7, -0.4), rotate_z=-20)),
            diffuse(texture="cells"),
        ),
        Part(
            lathe_mesh(cone, 48).transformed(transform((0.0, 0.0, -0.1))), diffuse((0.2, 0.7, 0.3))
        ),
        Part(
            torus_mesh(0.22, 0.07).transformed(transform((0.75, -0.2, -0.45), rotate_x=30)),
            diffuse((0.85, 0.35, 0.1)),
        ),
        Part(
            cylinder_mesh(0.12, -0.3, 0.3).transformed(transform((-0.1, -0.8, 0.45))),
            diffuse((0.6, 0.2, 0.6)),
        ),
    ]
    return Scene(
        parts=parts,
        environment=environment_map(rng),
        textures={
            "check": checker_texture((0.95, 0.95, 0.9), (0.8, 0.1, 0.1)),
            "cells": cells_texture(rng, (16, 8), pixels_per_cell=8),
        },
    )


OBJECTS = {
    "texture": texture_scene,
    "glossy": glossy_scene,
    "thin": thin_scene,
    "hollow": hollow_scene,
    "multi": multi_scene,
}

# ------------------------------------------------------------------------------ unbounded


def garden_scene(rng) -> Scene:
    table_top = np.array([(1e-4, 0.72), (0.7, 0.72), (0.7, 0.78), (1e-4, 0.78)])
    vase = np.array(
        [
            (1e-4, 0.78),
            (0.1, 0.78),
            (0.16, 0.9),
            (0.12, 1.08),
            (0.07, 1.15),
            (0.09, 1.22),
            (0.06, 1.22),
            (1e-4, 1.05),
        ]
    )
    parts = [
        Part(
            lathe_mesh(np.array([(1e-4, 0.0), (30.0, 0.0), (30.0, -0.1), (1e-4, -0.1)]), 128),
            diffuse(texture="ground"),
        ),
        Part(lathe_mesh(table_top, 64), diffuse(texture="wood")),
        Part(cylinder_mesh(0.06, 0.0, 0.72), diffuse((0.3, 0.2, 0.12))),
        Part(
            lathe_mesh(vase, 48).transformed(transform((0.15, 0.1, 0.0))), diffuse(texture="vase")
        ),
        Part(
            sphere_mesh(0.12).transformed(transform((-0.3, 0.15, 0.9))), diffuse((0.85, 0.2, 0.1))
        ),
        Part(
            box_mesh((0.2, 0.25, 0.15)).transformed(transform((-0.15, -0.35, 0.855), rotate_z=30)),
            diffuse(texture="print"),
        ),
    ]
    for k in range(11):
        angle = 2 * math.pi * k / 11 + rng.uniform(-0.2, 0.2)
        distance = rng.uniform(5.0, 9.0)
        x, y = distance * math.cos(angle), distance * math.sin(angle)
        height = rng.uniform(1.5, 2.5)
        parts.append(
            Part(
                cylinder_mesh(0.15, 0.0, height).transformed(transform((x, y, 0.0))),
                diffuse(texture="bark"),
            )
        )
        parts.append(
            Part(
                sphere_mesh(rng.uniform(0.7, 1.1)).transformed(transform((x, y, height + 0.4))),
                diffuse(texture="leaves"),
            )
        )
    return Scene(
        parts=parts,
        environment=environment_map(rng, 512, 256, sky=True),
        show_environment=True,
        textures={
            "ground": np.tile(
                checker_texture((0.35, 0.5, 0.2), (0.45, 0.55, 0.25), squares=8), (8, 8, 1)
            )
            * noise_texture(rng, (1.0, 1.0, 1.0), 0.3, size=1024, blur=1),
            "wood": noise_texture(rng, (0.6, 0.4, 0.2), 0.3, blur=1),
            "vase": cells_texture(rng, (24, 12), pixels_per_cell=6),
            "print": stripes_texture(rng, 256, 256, 40),
            "bark": noise_texture(rng, (0.35, 0.25, 0.15), 0.5, blur=0),
            "leaves": noise_texture(rng, (0.2, 0.5, 0.15), 0.6, blur=1),
        },
    )


def write_garden(mi, scene: Scene, loaded, out: Path, spp: int) -> None:
    """``images/`` (JPEG), ``sparse/0`` (binary COLMAP: PINHOLE, poses, points)."""
    from PIL import Image

    from meshtryoshka_data import (
        ColmapCamera,
        ColmapImage,
        ColmapModel,
        ColmapPoints,
        write_colmap_model,
    )
    from meshtryoshka_data._geometry import rigid_inverse, rotation_to_quaternion

    rng = np.random.default_rng(7)
    width, height = GARDEN_SIZE
    focal = 0.5 * width / math.tan(math.radians(GARDEN_FOV_X) / 2)
    target = np.array([0.0, 0.0, 0.85])
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, w2cs = {}, []
    for index in range(GARDEN_VIEWS):
        angle = 2 * math.pi * index / GARDEN_VIEWS + rng.uniform(-0.02, 0.02)
        radius = rng.uniform(2.4, 3.2)
        origin = np.array(
            [radius * math.cos(angle), radius * math.sin(angle), rng.uniform(1.0, 1.9)]
        )
        aim = target + rng.normal(0.0, 0.15, 3)
        to_world = look_at(mi, origin, aim)
        rgba = render_view(mi, loaded, to_world, GARDEN_FOV_X, width, height, spp, 1000 + index)
        name = f"frame_{index:03d}.jpg"
        Image.fromarray(to_srgb8(rgba, alpha=False), "RGB").save(
            out / "images" / name, quality=95, subsampling=0
        )
        w2c = rigid_inverse(opencv_camera_to_world(mi, to_world))
        w2cs.append(w2c)
        images[index + 1] = ColmapImage(
            image_id=index + 1,
            qvec=rotation_to_quaternion(w2c[:3, :3]),
            tvec=w2c[:3, 3].copy(),
            camera_id=1,
            name=name,
        )
    # The sparse points: surface samples within 12 units, seen in front of >= 3 cameras.
    meshes = [part.mesh for part in scene.parts]
    areas = np.array([min(m.area(), 150.0) for m in meshes])  # the ground: its central part
    counts = np.maximum((20000 * areas / areas.sum()).astype(int), 50)
    points = np.concatenate(
        [m.sample(int(c) * 3, rng) for m, c in zip(meshes, counts, strict=True)]
    )
    points = points[np.linalg.norm(points[:, :2], axis=1) < 12.0]
    seen = np.zeros(len(points), dtype=int)
    for w2c in w2cs:
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        in_front = cam[:, 2] > 0.1
        x = cam[:, 0] / np.maximum(cam[:, 2], 1e-9) * focal + width / 2
        y = cam[:, 1] / np.maximum(cam[:, 2], 1e-9) * focal + height / 2
        seen += in_front & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    points = points[seen >= 3][:20000]
    points = points + rng.normal(0.0, 0.003, points.shape)
    model = ColmapModel(
        cameras={
            1: ColmapCamera(1, "PINHOLE", width, height, (focal, focal, width / 2, height / 2))
        },
        images=images,
        points=ColmapPoints(
            ids=np.arange(1, len(points) + 1, dtype=np.int64),
            xyz=points,
            rgb=np.full((len(points), 3), 128, dtype=np.uint8),
            error=np.full(len(points), 0.5),
        ),
    )
    write_colmap_model(out / "sparse" / "0", model, file_format="bin")


# ------------------------------------------------------------------------------ driver


def render_scene(name: str, out_root: Path, spp: int) -> None:
    import mitsuba as mi

    final = out_root / name
    if (final / ".complete").is_file():
        print(f"{name}: cached in {final}")
        return
    mi.set_variant("scalar_rgb")
    started = time.perf_counter()
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "garden":
        scene = garden_scene(rng)
    else:
        scene = OBJECTS[name](rng)
        for part in scene.parts:
            part.mesh = part.mesh.transformed(transform(scale=OBJECT_SCALE))
    out_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_root))
    try:
        with tempfile.TemporaryDirectory() as assets:
            loaded = to_mitsuba(mi, scene, Path(assets))
            if name == "garden":
                write_garden(mi, scene, loaded, work, spp)
            else:
                seed = 0
                for split, count in OBJECT_SPLITS.items():
                    positions = hemisphere_positions(
                        count, OBJECT_DISTANCE, np.random.default_rng(seed)
                    )
                    write_blender_split(
                        mi,
                        loaded,
                        work,
                        split,
                        positions,
                        OBJECT_FOV_X,
                        OBJECT_SIZE,
                        spp,
                        seed * 1000,
                    )
                    seed += 1
        (work / ".complete").write_text("ok\n")
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work)
    print(f"{name}: rendered in {time.perf_counter() - started:.0f} s -> {final}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("datasets/quality"))
    parser.add_argument("--spp", type=int, default=SPP)
    parser.add_argument("--scenes", nargs="*", default=[*OBJECTS, "garden"])
    args = parser.parse_args()
    for name in args.scenes:
        if name not in OBJECTS and name != "garden":
            parser.error(f"unknown scene {name!r}; choose from {[*OBJECTS, 'garden']}")
        render_scene(name, args.out, args.spp)


if __name__ == "__main__":
    main()
