"""Test scenes rendered with Mitsuba 3, an independent physically based renderer.

Shared by ``render_demo_scene.py`` (the bundled demo) and ``render_quality_scenes.py`` (the
scenes of ``benchmarks/bench_quality.py``). Development-only: ``pip install mitsuba==3.9.1``;
the product never imports Mitsuba.

Every object is a triangle mesh built here in numpy (with texture coordinates), written as a
binary PLY and handed to Mitsuba, so the same geometry can also be sampled for a sparse point
cloud (COLMAP scenes). The world is z-up.

Camera conventions: Mitsuba's sensor frame is +x left, +y up, looking along +z. So OpenGL
camera-to-world (NeRF-synthetic ``transform_matrix``: +x right, +y up, looking along -z) is
Mitsuba ``to_world @ diag(-1, 1, -1, 1)``, and OpenCV camera-to-world (+x right, +y down,
looking along +z; COLMAP stores its inverse) is ``to_world @ diag(-1, -1, 1, 1)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------- meshes


@dataclass
class TriMesh:
    """A triangle mesh: ``vertices [N, 3]``, ``faces [M, 3]`` (uint32), ``uv [N, 2]``."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray

    def transformed(self, matrix: np.ndarray) -> TriMesh:
        """The mesh moved by a 4x4 affine ``matrix``."""
        moved = self.vertices @ matrix[:3, :3].T + matrix[:3, 3]
        return TriMesh(moved.astype(np.float32), self.faces, self.uv)

    def area(self) -> float:
        a, b, c = (self.vertices[self.faces[:, i]].astype(np.float64) for i in range(3))
        return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` points uniformly distributed over the surface, float64 ``[count, 3]``."""
        a, b, c = (self.vertices[self.faces[:, i]].astype(np.float64) for i in range(3))
        areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
        face = rng.choice(len(areas), size=count, p=areas / areas.sum())
        r1, r2 = rng.random(count), rng.random(count)
        s = np.sqrt(r1)
        w0, w1, w2 = 1 - s, s * (1 - r2), s * r2
        return w0[:, None] * a[face] + w1[:, None] * b[face] + w2[:, None] * c[face]


def lathe_mesh(profile: np.ndarray, segments: int = 64, closed_loop: bool = False) -> TriMesh:
    """The surface swept by the ``(radius, z)`` polyline ``profile [P, 2]`` around the z axis.

    ``uv = (angle / 2 pi, position along the profile)``; the seam's vertices are duplicated so
    the texture coordinates stay continuous. ``closed_loop`` joins the last profile point to
    the first (a torus from a circle).
    """
    profile = np.asarray(profile, dtype=np.float64)
    if closed_loop:
        profile = np.concatenate([profile, profile[:1]])
    count = len(profile)
    angles = np.linspace(0.0, 2 * math.pi, segments + 1)
    radius, height = profile[:, 0], profile[:, 1]
    x = radius[None, :] * np.cos(angles)[:, None]
    y = radius[None, :] * np.sin(angles)[:, None]
    z = np.broadcast_to(height[None, :], x.shape)
    vertices = np.stack([x, y, z], -1).reshape(-1, 3)
    u = np.broadcast_to((angles / (2 * math.pi))[:, None], x.shape)
    v = np.broadcast_to(np.linspace(0.0, 1.0, count)[None, :], x.shape)
    uv = np.stack([u, v], -1).reshape(-1, 2)
    i, j = np.meshgrid(np.arange(segments), np.arange(count - 1), indexing="ij")
    a = (i * count + j).ravel()
    b = ((i + 1) * count + j).ravel()
    faces = np.concatenate([np.stack([a, b, b + 1], 1), np.stack([a, b + 1, a + 1], 1)])
    return TriMesh(vertices.astype(np.float32), faces.astype(np.uint32), uv.astype(np.float32))


def sphere_mesh(radius: float, rings: int = 48, segments: int = 96) -> TriMesh:
    theta = np.linspace(-math.pi / 2, math.pi / 2, rings + 1)
    return lathe_mesh(np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1), segments)


def torus_mesh(major: float, minor: float, segments: int = 96, rings: int = 32) -> TriMesh:
    """A torus around the z axis."""
    phi = np.linspace(0.0, 2 * math.pi, rings, endpoint=False)
    circle = np.stack([major + minor * np.cos(phi), minor * np.sin(phi)], 1)
    return lathe_mesh(circle, segments, closed_loop=True)


def cylinder_mesh(radius: float, z0: float, z1: float, segments: int = 48) -> TriMesh:
    """A closed cylinder (capped at both ends) along z from ``z0`` to ``z1``."""
    tiny = 1e-4 * radius
    profile = [(tiny, z0), (radius, z0), (radius, z1), (tiny, z1)]
    return lathe_mesh(np.array(profile), segments)


def box_mesh(size: tuple[float, float, float]) -> TriMesh:
    """An axis-aligned box centred at the origin; each face has its own [0, 1]^2 texture."""
    half = np.asarray(size, dtype=np.float64) / 2
    vertices, faces, uv = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u_axis, v_axis = [a for a in range(3) if a != axis]
            corners = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u_axis], p[v_axis] = (
                    sign * half[axis],
                    du * half[u_axis],
                    dv * half[v_axis],
                )
                corners.append(p)
            base = len(vertices)
            vertices += corners
            uv += [(0, 0), (1, 0), (1, 1), (0, 1)]
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return TriMesh(
        np.array(vertices, np.float32), np.array(faces, np.uint32), np.array(uv, np.float32)
    )


def segment_mesh(p0, p1, radius: float, segments: int = 24) -> TriMesh:
    """A capped cylinder of ``radius`` from point ``p0`` to point ``p1``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    mesh = cylinder_mesh(radius, 0.0, length, segments)
    z = axis / length
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([x, y, z], 1)
    matrix[:3, 3] = p0
    return mesh.transformed(matrix)


def transform(
    translate=(0.0, 0.0, 0.0), rotate_z: float = 0.0, rotate_x: float = 0.0, scale: float = 1.0
) -> np.ndarray:
    """4x4 affine: scale, then rotate about x, then about z (degrees), then translate."""
    cz, sz = math.cos(math.radians(rotate_z)), math.sin(math.radians(rotate_z))
    cx, sx = math.cos(math.radians(rotate_x)), math.sin(math.radians(rotate_x))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
    rx = np.array([[1.0, 0, 0], [0, cx, -sx], [0, sx, cx]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ rx * scale
    matrix[:3, 3] = translate
    return matrix


def write_ply(path: Path, mesh: TriMesh) -> None:
    """Binary little-endian PLY with ``x y z u v`` per vertex."""
    header = "\n".join(
        [
            "ply",
            "format binary_little_endian 1.0",
            f"element vertex {len(mesh.vertices)}",
            "property float x",
            "property float y",
            "property float z",
            "property float u",
            "property float v",
            f"element face {len(mesh.faces)}",
            "property list uchar int vertex_indices",
            "end_header",
        ]
    )
    vertex = np.concatenate([mesh.vertices, mesh.uv], 1).astype("<f4")
    face = np.zeros(len(mesh.faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, mesh.faces.astype(np.int32)
    with open(path, "wb") as file:
        file.write((header + "\n").encode())
        file.write(vertex.tobytes())
        file.write(face.tobytes())


# ------------------------------------------------------------------------------ textures


def cells_texture(rng, cells: tuple[int, int], pixels_per_cell: int = 4) -> np.ndarray:
    """Random saturated colour cells, float ``[H, W, 3]`` in [0, 1] (sharp edges)."""
    colours = rng.uniform(0.05, 0.95, size=(cells[1], cells[0], 3))
    return np.kron(colours, np.ones((pixels_per_cell, pixels_per_cell, 1)))


def stripes_texture(rng, width: int = 512, height: int = 512, bars: int = 90) -> np.ndarray:
    """Horizontal bars of random thickness and grey level over a light paper colour."""
    image = np.ones((height, width, 3)) * np.array([0.92, 0.9, 0.82])
    rows = np.sort(rng.choice(height, size=bars, replace=False))
    for row in rows:
        thick = int(rng.integers(1, 4))
        start, stop = sorted(rng.integers(0, width, size=2))
        image[row : row + thick, start:stop] = rng.uniform(0.0, 0.35)
    return image


def checker_texture(colour0, colour1, squares: int = 8, pixels: int = 16) -> np.ndarray:
    pattern = (np.add.outer(np.arange(squares), np.arange(squares)) % 2)[..., None]
    image = np.where(pattern == 0, np.asarray(colour0), np.asarray(colour1))
    return np.kron(image, np.ones((pixels, pixels, 1)))


def noise_texture(rng, base, amount: float, size: int = 256, blur: int = 2) -> np.ndarray:
    """``base`` colour with box-blurred per-pixel noise (grass, bark, leaves)."""
    noise = rng.normal(0.0, 1.0, size=(size, size, 1))
    for _ in range(blur):
        noise = (
            noise
            + np.roll(noise, 1, 0)
            + np.roll(noise, 1, 1)
            + np.roll(noise, -1, 0)
            + np.roll(noise, -1, 1)
        ) / 5
    noise /= noise.std() + 1e-9
    return np.clip(np.asarray(base) * (1 + amount * noise), 0, 1)


def environment_map(rng, width: int = 256, height: int = 128, sky: bool = False) -> np.ndarray:
    """An equirectangular environment (linear radiance, +y up in Mitsuba's frame).

    A sky-to-ground gradient, a band of vertical stripes at the horizon (something for glossy
    surfaces to reflect) and three bright coloured lights; ``sky`` adds soft clouds.
    """
    v = (np.arange(height) + 0.5) / height  # 0 at the top
    u = (np.arange(width) + 0.5) / width
    elevation = (0.5 - v)[:, None] * math.pi
    top = np.array([0.45, 0.6, 0.9])
    ground = np.array([0.35, 0.3, 0.25])
    blend = np.clip(0.5 + elevation / 1.2, 0, 1)[..., None]
    image = blend * top + (1 - blend) * ground
    image = np.broadcast_to(image, (height, width, 3)).copy()
    stripes = 0.5 + 0.5 * np.sign(np.sin(u * 2 * math.pi * 12))
    band = np.exp(-((elevation / 0.12) ** 2))
    image += 0.35 * band[..., None] * stripes[None, :, None]
    for cu, cv, colour, power in (
        (0.15, 0.25, (1.0, 0.95, 0.85), 40.0),
        (0.55, 0.35, (0.6, 0.75, 1.0), 12.0),
        (0.85, 0.2, (1.0, 0.7, 0.5), 18.0),
    ):
        d2 = ((u[None, :] - cu) * 2) ** 2 + ((v[:, None] - cv) * 1) ** 2
        image += power * np.exp(-d2 / 0.0015)[..., None] * np.asarray(colour)
    if sky:
        clouds = noise_texture(rng, (1.0, 1.0, 1.0), 1.0, size=max(width, height), blur=6)
        clouds = clouds[:height, :width, :1]
        image += 0.5 * np.clip(clouds - 1.0, 0, None) * (elevation > 0)[..., None]
    return image.astype(np.float32)


# ------------------------------------------------------------------------------ scenes


@dataclass
class Part:
    """One object of a scene: its mesh and its Mitsuba BSDF dictionary."""

    mesh: TriMesh
    bsdf: dict


@dataclass
class Scene:
    """Parts, the environment and an optional visible background (unbounded scenes)."""

    parts: list[Part]
    environment: np.ndarray
    environment_scale: float = 1.0
    show_environment: bool = False
    textures: dict[str, np.ndarray] = field(default_factory=dict)


def diffuse(colour=None, texture: str | None = None) -> dict:
    reflectance = (
        {"type": "bitmap", "filename": texture, "filter_type": "bilinear"}
        if texture is not None
        else {"type": "rgb", "value": list(colour)}
    )
    return {"type": "twosided", "bsdf": {"type": "diffuse", "reflectance": reflectance}}


def to_mitsuba(mi, scene: Scene, folder: Path, max_depth: int = 4):
    """Load `scene` into Mitsuba (meshes and textures are written to `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in scene.textures.items():  # sRGB-ish design values -> linear EXR
        linear = np.clip(image, 0, 1).astype(np.float32) ** 2.2
        mi.Bitmap(np.ascontiguousarray(linear)).write(str(folder / f"{name}.exr"))
    env = folder / "environment.exr"
    mi.Bitmap(scene.environment * scene.environment_scale).write(str(env))
    T = mi.ScalarTransform4f
    description = {
        "type": "scene",
        "integrator": {
            "type": "path",
            "max_depth": max_depth,
            "hide_emitters": not scene.show_environment,
        },
        "environment": {
            "type": "envmap",
            "filename": str(env),
            "to_world": T().rotate([1, 0, 0], 90),  # Mitsuba's +y up -> our +z up
        },
    }
    for index, part in enumerate(scene.parts):
        path = folder / f"part_{index}.ply"
        write_ply(path, part.mesh)
        bsdf = json.loads(json.dumps(part.bsdf))  # a copy
        _resolve_textures(bsdf, folder)
        description[f"part_{index}"] = {"type": "ply", "filename": str(path), "bsdf": bsdf}
    return mi.load_dict(description)


def _resolve_textures(node, folder: Path) -> None:
    if isinstance(node, dict):
        if node.get("type") == "bitmap":
            node["filename"] = str(folder / f"{node['filename']}.exr")
        for value in node.values():
            _resolve_textures(value, folder)


def render_view(
    mi, scene, to_world, fov_x: float, width: int, height: int, spp: int, seed: int
) -> np.ndarray:
    """Linear RGBA float ``[H, W, 4]`` (colour premultiplied by coverage) of one view."""
    sensor = mi.load_dict(
        {
            "type": "perspective",
            "fov": fov_x,
            "fov_axis": "x",
            "to_world": to_world,
            # Mitsuba's perspective sensor dict, also spelled out in
            # tests-integration/mitsuba_photos.py (scripts and tests do not import each other)
            "film": {
                "type": "hdrfilm",
                "width": width,
                "height": height,
                "pixel_format": "rgba",
                "rfilter": {"type": "box"},
            },
            "sampler": {"type": "independent", "sample_count": spp},
        }
    )
    return np.array(mi.render(scene, sensor=sensor, seed=seed))


def to_srgb8(rgba: np.ndarray, alpha: bool) -> np.ndarray:
    """uint8 sRGB (straight alpha when `alpha`, else RGB) of a premultiplied linear render."""
    cover = np.clip(rgba[..., 3:4], 0, 1)
    linear = rgba[..., :3] / np.maximum(cover, 1e-6) if alpha else rgba[..., :3]
    linear = np.clip(linear, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    if alpha:
        srgb = np.concatenate([np.where(cover > 1e-6, srgb, 0.0), cover], -1)
    return (srgb * 255 + 0.5).astype(np.uint8)


def look_at(mi, origin, target, up=(0.0, 0.0, 1.0)):
    return mi.ScalarTransform4f().look_at(
        origin=[float(x) for x in origin], target=[float(x) for x in target], up=list(up)
    )


def opengl_camera_to_world(mi, to_world) -> np.ndarray:
    mitsuba = np.array(to_world.matrix, dtype=np.float64).reshape(4, 4)
    return mitsuba @ np.diag([-1.0, 1.0, -1.0, 1.0])


def opencv_camera_to_world(mi, to_world) -> np.ndarray:
    mitsuba = np.array(to_world.matrix, dtype=np.float64).reshape(4, 4)
    return mitsuba @ np.diag([-1.0, -1.0, 1.0, 1.0])


def hemisphere_positions(
    count: int, radius: float, rng, min_elevation: float = 5.0, max_elevation: float = 85.0
) -> np.ndarray:
    """``count`` camera centres spread over the upper hemisphere (uniform in area)."""
    lo, hi = math.sin(math.radians(min_elevation)), math.sin(math.radians(max_elevation))
    golden = math.pi * (3 - math.sqrt(5))
    out = []
    offset = rng.uniform(0, 2 * math.pi)
    for i in range(count):
        z = lo + (hi - lo) * (i + rng.uniform(0.2, 0.8)) / count
        azimuth = offset + golden * i
        r = math.sqrt(1 - z * z)
        out.append(radius * np.array([r * math.cos(azimuth), r * math.sin(azimuth), z]))
    return np.array(out)


def write_blender_split(
    mi,
    scene,
    out: Path,
    split: str,
    positions: np.ndarray,
    fov_x: float,
    size: int,
    spp: int,
    seed: int,
    target=(0.0, 0.0, 0.0),
) -> None:
    """One NeRF-synthetic split: ``<split>/r_<i>.png`` (RGBA) and ``transforms_<split>.json``."""
    from PIL import Image

    (out / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for index, origin in enumerate(positions):
        to_world = look_at(mi, origin, target)
        rgba = render_view(mi, scene, to_world, fov_x, size, size, spp, seed + index)
        name = f"r_{index}"
        Image.fromarray(to_srgb8(rgba, alpha=True), "RGBA").save(
            out / split / f"{name}.png", optimize=True
        )
        frames.append(
            {
                "file_path": f"./{split}/{name}",
                "transform_matrix": opengl_camera_to_world(mi, to_world).tolist(),
            }
        )
    document = {"camera_angle_x": math.radians(fov_x), "frames": frames}
    (out / f"transforms_{split}.json").write_text(json.dumps(document, indent=1))
