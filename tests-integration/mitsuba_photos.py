"""Photos of a textured still life rendered with Mitsuba 3, for the structure-from-motion test.

    pip install mitsuba==3.9.1      # development only; the packages never import it
    python tests-integration/mitsuba_photos.py OUT_DIR

writes ``OUT_DIR/photo_000.png`` ... (320x240, RGB, black background) and nothing else: the
camera poses stay with the caller (:func:`render_photos` returns them), so structure from
motion sees only the pixels. The scene: two spheres, three boxes and a slab floating around
the origin inside the unit ball-ish region a demo-size grid covers, their surfaces coloured
per vertex with sharp-edged random spots over smooth value noise (every patch unique, which
SIFT needs), lit by a constant environment (hidden) and a sun. 36 cameras on two rings
(elevation -10 and +20 degrees, 18 each, the second turned by half a step) at distance 2.7,
looking at the origin with +z up, horizontal field of view 60 degrees.

Mitsuba's sensor frame is +x left, +y up, +z forward: OpenCV camera-to-world =
``to_world @ diag(-1, -1, 1, 1)``. The film's pixel centres are at +0.5 and the principal point
is the image centre, as in our convention.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 320, 240
FOV_X_DEGREES = 60.0
DISTANCE = 2.7
RINGS_DEGREES = (-10.0, 20.0)
PER_RING = 18
SAMPLES = 16
#: bump when anything above or below changes what is rendered (the test's cache key)
VERSION = 1


def intrinsics() -> np.ndarray:
    """float64 [3, 3]: the cameras' pixel intrinsics."""
    focal = WIDTH / 2 / math.tan(math.radians(FOV_X_DEGREES) / 2)
    return np.array([[focal, 0.0, WIDTH / 2], [0.0, focal, HEIGHT / 2], [0.0, 0.0, 1.0]])


# Points on a sphere from (elevation, azimuth), like render_demo_scene.py's cameras (the tests
# do not import the package's scripts).
def camera_positions() -> np.ndarray:
    """float64 [36, 3]: the camera centres, ring by ring interleaved (photo i is ring i % 2)."""
    positions = []
    for i in range(len(RINGS_DEGREES) * PER_RING):
        ring, step = i % len(RINGS_DEGREES), i // len(RINGS_DEGREES)
        elevation = math.radians(RINGS_DEGREES[ring])
        azimuth = 2 * math.pi * (step + 0.5 * ring) / PER_RING
        positions.append(
            DISTANCE
            * np.array(
                [
                    math.cos(elevation) * math.cos(azimuth),
                    math.cos(elevation) * math.sin(azimuth),
                    math.sin(elevation),
                ]
            )
        )
    return np.array(positions)


def _value_noise(points: np.ndarray, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colours [P, 3] in [0, 1] of 3-D points: a random lattice of spacing
    ``cell``, interpolated with smoothstep weights."""
    table = rng.uniform(0.0, 1.0, (64, 64, 64, 3))
    q = points / cell + 32.0
    low = np.floor(q).astype(np.int64)
    f = q - low
    f = f * f * (3 - 2 * f)
    out = np.zeros((len(points), 3))
    for corner in np.ndindex(2, 2, 2):
        weight = np.prod(np.where(corner, f, 1 - f), axis=-1)
        index = (low + corner) % 64
        out += weight[:, None] * table[index[:, 0], index[:, 1], index[:, 2]]
    return out


def vertex_colours(points: np.ndarray, seed: int) -> np.ndarray:
    """float32 [P, 3]: spots of 0.012-0.05 units with random (dark or bright) colours on
    every 50th vertex, over value noise of 0.4-unit cells."""
    rng = np.random.default_rng(seed)
    colours = 0.45 + 0.5 * (_value_noise(points, 0.4, rng) - 0.5)
    count = len(points) // 50
    centres = points[rng.choice(len(points), count, replace=False)]
    radii = rng.uniform(0.012, 0.05, count)
    spot_colours = rng.uniform(0, 1, (count, 3)) * rng.choice([0.25, 1.6], count)[:, None]
    for start in range(0, len(points), 4096):
        chunk = slice(start, start + 4096)
        distance = np.linalg.norm(points[chunk, None] - centres[None], axis=-1) / radii
        inside = distance < 1
        nearest = np.argmin(np.where(inside, distance, np.inf), axis=1)
        hit = inside.any(axis=1)
        colours[chunk][hit] = spot_colours[nearest[hit]]
    return np.clip(colours, 0.03, 0.97).astype(np.float32)


def uv_sphere(center, radius: float, segments: int):
    """(vertices [V, 3], faces [F, 3]) of a sphere with ``segments`` around and half as many
    from pole to pole."""
    rows = segments // 2 + 1
    theta = np.linspace(0, np.pi, rows)
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1)
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(segments), indexing="ij")
    a, b = i * segments + j, i * segments + (j + 1) % segments
    c, d = b + segments, a + segments
    faces = np.concatenate([np.stack([a, d, c], -1), np.stack([a, c, b], -1)]).reshape(-1, 3)
    return np.asarray(center) + radius * unit.reshape(-1, 3), faces


def box(center, half_size, rotation: np.ndarray, cells: int = 48):
    """(vertices, faces) of a box, each face a ``cells x cells`` grid (for vertex colours)."""
    grid = np.linspace(-1, 1, cells + 1)
    u, v = np.meshgrid(grid, grid, indexing="ij")
    vertices, faces = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            others = [k for k in range(3) if k != axis]
            side = np.zeros((cells + 1, cells + 1, 3))
            side[..., axis], side[..., others[0]], side[..., others[1]] = sign, u, v
            base = sum(len(x) for x in vertices)
            vertices.append(side.reshape(-1, 3))
            i, j = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
            a = base + i * (cells + 1) + j
            quads = [(a, a + 1, a + cells + 2), (a, a + cells + 2, a + cells + 1)]
            faces += [np.stack(tri, -1).reshape(-1, 3) for tri in quads]
    points = np.concatenate(vertices) * np.asarray(half_size)
    return points @ rotation.T + np.asarray(center), np.concatenate(faces)


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(degrees)
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def shapes() -> dict:
    """name -> (vertices, faces) of the still life."""
    return {
        "sphere": uv_sphere([0.0, 0.0, 0.0], 0.4, 192),
        "ball": uv_sphere([-0.5, 0.75, -0.25], 0.25, 128),
        "small_ball": uv_sphere([0.55, 0.7, 0.4], 0.18, 128),
        "cube": box(
            [0.8, -0.5, -0.3], [0.22] * 3, rotation([0, 0, 1], 30) @ rotation([1, 0, 0], 20)
        ),
        "brick": box([-0.7, -0.6, 0.35], [0.15, 0.25, 0.18], rotation([0, 1, 1], 40)),
        "slab": box([0.05, -0.2, -0.85], [0.5, 0.5, 0.08], rotation([0, 0, 1], 10)),
    }


def render_photos(out: str | Path, samples: int = SAMPLES) -> np.ndarray:
    """Render the 36 photos into ``out`` (created); returns their true OpenCV world-to-camera
    matrices, float64 [36, 4, 4], photo ``i`` first. Writes nothing but the photos."""
    import mitsuba as mi

    mi.set_variant("scalar_rgb")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene = {
        "type": "scene",
        "integrator": {"type": "direct", "hide_emitters": True},
        "environment": {"type": "constant", "radiance": {"type": "rgb", "value": 0.7}},
        "sun": {
            "type": "directional",
            "direction": [-0.4, -0.3, -1.0],
            "irradiance": {"type": "rgb", "value": 1.5},
        },
    }
    material = {
        "type": "twosided",
        "bsdf": {
            "type": "diffuse",
            "reflectance": {"type": "mesh_attribute", "name": "vertex_color"},
        },
    }
    for seed, (name, (vertices, faces)) in enumerate(shapes().items()):
        mesh = mi.Mesh(name, len(vertices), len(faces), has_vertex_normals=False)
        parameters = mi.traverse(mesh)
        parameters["vertex_positions"] = vertices.astype(np.float32).ravel()
        parameters["faces"] = faces.astype(np.uint32).ravel()
        parameters.update()
        mesh.add_attribute("vertex_color", 3, vertex_colours(vertices, 10 * seed).ravel())
        mesh.set_bsdf(mi.load_dict(material))
        scene[name] = mesh
    scene = mi.load_dict(scene)
    world_to_camera = []
    for index, eye in enumerate(camera_positions()):
        to_world = mi.ScalarTransform4f().look_at(
            origin=eye.tolist(), target=[0.0, 0.0, 0.0], up=[0.0, 0.0, 1.0]
        )
        sensor = mi.load_dict(
            {
                "type": "perspective",
                "fov": FOV_X_DEGREES,
                "fov_axis": "x",
                "to_world": to_world,
                "film": {
                    "type": "hdrfilm",
                    "width": WIDTH,
                    "height": HEIGHT,
                    "pixel_format": "rgb",
                    "rfilter": {"type": "box"},
                },
                "sampler": {"type": "multijitter", "sample_count": samples},
            }
        )
        linear = np.clip(np.array(mi.render(scene, sensor=sensor, seed=index))[..., :3], 0, 1)
        srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
        Image.fromarray((srgb * 255 + 0.5).astype(np.uint8)).save(out / f"photo_{index:03d}.png")
        camera_to_world = np.array(to_world.matrix, dtype=np.float64).reshape(4, 4)
        camera_to_world = camera_to_world @ np.diag([-1.0, -1.0, 1.0, 1.0])
        world_to_camera.append(np.linalg.inv(camera_to_world))
    return np.stack(world_to_camera)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the photos (created)")
    parser.add_argument("--samples", type=int, default=SAMPLES, help="samples per pixel")
    args = parser.parse_args()
    render_photos(args.out, args.samples)
    print(f"wrote {len(camera_positions())} photos to {args.out}")


if __name__ == "__main__":
    main()
