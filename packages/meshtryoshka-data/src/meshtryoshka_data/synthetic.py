"""Tiny procedural scenes in the NeRF-synthetic, COLMAP and nerfstudio layouts, with the truth.

The scene is one sphere whose colour is a smooth function of the surface normal
(:func:`sphere_color`), rendered analytically by ray casting through every pixel centre
(``+0.5`` convention) in numpy: no downloads, exact geometry, known cameras. Used by this
package's tests and by the training app's.

Example::

    truth = write_blender_scene("/tmp/scene", n_train=4, n_val=1, n_test=2, size=24, seed=0)
    dataset = load_blender("/tmp/scene")
    assert np.allclose(dataset.world_to_camera.numpy(), truth.world_to_camera, atol=1e-6)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ._geometry import (
    OPENGL_TO_OPENCV,
    look_at_world_to_camera,
    pixel_rays,
    rigid_inverse,
    rotation_to_quaternion,
)
from .colmap import ColmapCamera, ColmapImage, ColmapModel, ColmapPoints, write_colmap_model
from .distortion import LensDistortion, colmap_camera_model
from .ply import write_ply_points

#: the lens coefficients (COLMAP's parameters after the focal lengths and principal point)
#: that :func:`write_colmap_scene` gives each distorted camera model: moderate, as real lenses
SYNTHETIC_DISTORTION = {
    "SIMPLE_RADIAL": (-0.12,),
    "RADIAL": (-0.12, 0.03),
    "OPENCV": (-0.1, 0.02, 0.003, -0.002),
    "OPENCV_FISHEYE": (0.05, -0.02, 0.005, -0.001),
}

__all__ = [
    "SYNTHETIC_DISTORTION",
    "SceneTruth",
    "render_sphere",
    "sphere_color",
    "write_blender_scene",
    "write_colmap_scene",
    "write_nerfstudio_scene",
]


@dataclass(frozen=True)
class SceneTruth:
    """What a synthetic scene is made of, in the dataset's own coordinates.

    Attributes:
        path: the scene folder.
        format: ``"blender"``, ``"colmap"`` or ``"nerfstudio"``.
        names: ``N`` image names in the order the loaders return them (Blender: JSON order,
            train then val then test; COLMAP: sorted by name).
        splits: ``{"train", "val", "test"}`` -> lists of indices into ``names``.
        world_to_camera: float64 ``[N, 4, 4]`` OpenCV world-to-camera.
        intrinsics: float64 ``[N, 3, 3]`` for the full-size images (of the distorted camera
            when there is a ``distortion``).
        width, height: full image size in pixels.
        images: uint8 ``[N, H, W, C]`` as rendered (RGBA for Blender, RGB for COLMAP; the
            COLMAP files are JPEGs, so the files differ from these by compression).
        sphere_center: float64 ``[3]``; sphere_radius: float.
        points: float64 ``[P, 3]`` points on the sphere; point_colors: uint8 ``[P, 3]``.
        distortion: the cameras' lens distortion, or None for pinhole cameras.
    """

    path: Path
    format: str
    names: list[str]
    splits: dict[str, list[int]]
    world_to_camera: np.ndarray
    intrinsics: np.ndarray
    width: int
    height: int
    images: np.ndarray
    sphere_center: np.ndarray
    sphere_radius: float
    points: np.ndarray
    point_colors: np.ndarray
    distortion: LensDistortion | None = None


def sphere_color(points: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """The sphere's albedo at surface ``points`` [P, 3]: float64 [P, 3] in [0.1, 0.9].

    Smooth in the normal, so nearby pixels have nearby colours, and unlit, so a surface
    point has the same colour in every view.
    """
    normal = (points - center) / radius
    return 0.5 + 0.4 * normal


def render_sphere(
    world_to_camera: np.ndarray,
    intrinsics: np.ndarray,
    width: int,
    height: int,
    center: np.ndarray,
    radius: float,
    background: str = "transparent",
    distortion: LensDistortion | None = None,
) -> np.ndarray:
    """Ray-cast the sphere through every pixel centre; uint8 ``[H, W, 4]`` RGBA.

    ``background="transparent"`` leaves alpha 0 (and black RGB) off the sphere;
    ``"sky"`` fills it opaque with a smooth colour of the ray direction. With a
    ``distortion`` the camera has that lens: each pixel's ray is found by undistorting it.
    """
    rays_cam = pixel_rays(intrinsics, width, height, distortion)
    if np.isnan(rays_cam).any():
        raise ValueError("the distortion cannot be inverted everywhere in the image")
    rotation = world_to_camera[:3, :3]
    origin = -rotation.T @ world_to_camera[:3, 3]
    directions = rays_cam @ rotation  # camera -> world: R^T d, written for row vectors
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    offset = origin - center
    b = directions @ offset
    disc = b * b - (offset @ offset - radius * radius)
    hit = disc > 0
    t = -b - np.sqrt(np.where(hit, disc, 0.0))
    hit &= t > 0
    surface = origin + t[..., None] * directions
    rgba = np.zeros((height, width, 4))
    rgba[hit, :3] = sphere_color(surface[hit], center, radius)
    rgba[hit, 3] = 1.0
    if background == "sky":
        sky = 0.45 + 0.25 * directions[~hit]
        rgba[~hit, :3] = sky
        rgba[~hit, 3] = 1.0
    return np.clip(np.rint(rgba * 255), 0, 255).astype(np.uint8)


def _size(size) -> tuple[int, int]:
    width, height = (size, size) if isinstance(size, int) else tuple(size)
    if width < 2 or height < 2:
        raise ValueError(f"size must be at least 2x2 pixels, got {width}x{height}")
    return int(width), int(height)


def _sphere_points(count: int, center: np.ndarray, radius: float) -> np.ndarray:
    """``count`` evenly spread points on the sphere (Fibonacci lattice), float64 [count, 3]."""
    k = np.arange(count) + 0.5
    z = 1 - 2 * k / count
    phi = np.pi * (1 + 5**0.5) * k
    ring = np.sqrt(1 - z * z)
    return center + radius * np.stack([ring * np.cos(phi), ring * np.sin(phi), z], axis=-1)


def _to_uint8(colors: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(colors * 255), 0, 255).astype(np.uint8)


def write_blender_scene(
    path: str | Path,
    *,
    n_train: int = 4,
    n_val: int = 1,
    n_test: int = 2,
    size: int | tuple[int, int] = 24,
    seed: int = 0,
    camera_angle_x: float = 0.6911112070083618,
    n_points: int = 200,
) -> SceneTruth:
    """Write a NeRF-synthetic scene: ``transforms_{train,val,test}.json`` and RGBA PNGs.

    A sphere of radius 1 at the origin; cameras at distance 4 on the upper hemisphere
    (elevation 10-70 degrees, random azimuth), looking at the origin with world up ``+z``,
    as in the real scenes. Frames use ``file_path: "./<split>/r_<i>"`` without suffix, as
    the originals do.

    Args:
        path: output folder (created).
        n_train, n_val, n_test: images per split (``n_train >= 1``).
        size: ``W`` (square) or ``(W, H)`` in pixels.
        seed: camera placement seed.
        camera_angle_x: horizontal field of view in radians (default: the lego scene's).
        n_points: number of surface points returned in the truth (not written).
    """
    path = Path(path)
    width, height = _size(size)
    if n_train < 1 or n_val < 0 or n_test < 0:
        raise ValueError(
            f"need n_train >= 1, n_val >= 0, n_test >= 0; got {n_train}, {n_val}, {n_test}"
        )
    rng = np.random.default_rng(seed)
    center, radius = np.zeros(3), 1.0
    focal = 0.5 * width / np.tan(camera_angle_x / 2)
    intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
    names, splits, w2cs, images = [], {}, [], []
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        splits[split] = []
        frames = []
        (path / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            azimuth = rng.uniform(0, 2 * np.pi)
            elevation = np.radians(rng.uniform(10, 70))
            eye = 4.0 * np.array(
                [
                    np.cos(elevation) * np.cos(azimuth),
                    np.cos(elevation) * np.sin(azimuth),
                    np.sin(elevation),
                ]
            )
            w2c = look_at_world_to_camera(eye, center, np.array([0.0, 0.0, 1.0]))
            rgba = render_sphere(w2c, intrinsics, width, height, center, radius)
            Image.fromarray(rgba, "RGBA").save(path / split / f"r_{i}.png")
            c2w_gl = rigid_inverse(w2c) @ OPENGL_TO_OPENCV
            frames.append(
                {
                    "file_path": f"./{split}/r_{i}",
                    "rotation": 0.0,
                    "transform_matrix": c2w_gl.tolist(),
                }
            )
            splits[split].append(len(names))
            names.append(f"{split}/r_{i}.png")
            w2cs.append(w2c)
            images.append(rgba)
        meta = {"camera_angle_x": camera_angle_x, "frames": frames}
        (path / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))
    points = _sphere_points(n_points, center, radius)
    return SceneTruth(
        path=path,
        format="blender",
        names=names,
        splits=splits,
        world_to_camera=np.stack(w2cs),
        intrinsics=np.repeat(intrinsics[None], len(names), axis=0),
        width=width,
        height=height,
        images=np.stack(images),
        sphere_center=center,
        sphere_radius=radius,
        points=points,
        point_colors=_to_uint8(sphere_color(points, center, radius)),
    )


# The sphere of the unbounded-scene writers (COLMAP, nerfstudio): off the origin on purpose.
_ORBIT_CENTER, _ORBIT_RADIUS = np.array([2.0, -1.0, 0.5]), 0.8


def _orbit_cameras(n_images: int, rng: np.random.Generator) -> np.ndarray:
    """OpenCV world-to-camera ``[n_images, 4, 4]`` all around the orbit sphere: distance 3-4,
    elevation -20 to 40 degrees about a tilted up vector, so normalization has work to do."""
    up = np.array([0.2, -1.0, 0.1])
    up /= np.linalg.norm(up)
    # An orthonormal frame (e1, e2, up) to place cameras around the tilted up axis.
    e1 = np.cross(up, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    w2cs = []
    for i in range(n_images):
        azimuth = 2 * np.pi * i / n_images + rng.uniform(-0.2, 0.2)
        elevation = np.radians(rng.uniform(-20, 40))
        distance = rng.uniform(3.0, 4.0)
        direction = (
            np.cos(elevation) * (np.cos(azimuth) * e1 + np.sin(azimuth) * e2)
            + np.sin(elevation) * up
        )
        eye = _ORBIT_CENTER + distance * direction
        w2cs.append(look_at_world_to_camera(eye, _ORBIT_CENTER, up))
    return np.stack(w2cs)


def _orbit_truth(path, fmt, names, w2cs, intrinsics, images, points, lens) -> SceneTruth:
    """The truth of an orbit scene (LLFF split: every 8th image by name is a test image)."""
    n_images = len(names)
    test = [i for i in range(n_images) if i % 8 == 0]
    return SceneTruth(
        path=path,
        format=fmt,
        names=names,
        splits={"train": [i for i in range(n_images) if i % 8], "val": test, "test": test},
        world_to_camera=w2cs,
        intrinsics=intrinsics,
        width=images[0].shape[1],
        height=images[0].shape[0],
        images=np.stack(images),
        sphere_center=_ORBIT_CENTER,
        sphere_radius=_ORBIT_RADIUS,
        points=points,
        point_colors=_to_uint8(sphere_color(points, _ORBIT_CENTER, _ORBIT_RADIUS)),
        distortion=lens,
    )


def write_colmap_scene(
    path: str | Path,
    *,
    n_images: int = 10,
    size: int | tuple[int, int] = (32, 24),
    seed: int = 0,
    camera_model: str = "PINHOLE",
    downscales: tuple[int, ...] = (2,),
    sparse_formats: tuple[str, ...] = ("bin", "txt"),
    n_points: int = 300,
) -> SceneTruth:
    """Write a COLMAP scene in the Mip-NeRF 360 layout.

    ``images/frame_XXX.jpg`` (full size), ``images_<d>/`` for each of ``downscales``
    (box-filtered, ``ceil(W/d) x ceil(H/d)``, as Pillow's ``reduce`` makes them), and
    ``sparse/0/{cameras,images,points3D}`` in every format of ``sparse_formats``. The world
    frame is deliberately not normalized: a sphere of radius 0.8 centred at ``(2, -1, 0.5)``,
    cameras at distance 3-4 all around it (elevation -20 to 40 degrees about a tilted up
    vector), so normalization has work to do. Image ids are shuffled relative to name order,
    the principal point is off-centre and PINHOLE uses ``fy = 1.02 fx``, so that swapped
    axes or conventions show up in tests. Points3D holds ``n_points`` surface points with
    their colours and tracks (the images that see them), and each image lists its keypoints.

    Args:
        path: output folder (created).
        n_images: number of images (test split: every 8th by name).
        size: ``W`` (square) or ``(W, H)`` in pixels.
        seed: camera placement seed.
        camera_model: ``"PINHOLE"``, ``"SIMPLE_PINHOLE"``, or a model with lens distortion
            (``"SIMPLE_RADIAL"``, ``"RADIAL"``, ``"OPENCV"``, ``"OPENCV_FISHEYE"``, with the
            coefficients of :data:`SYNTHETIC_DISTORTION`): the images are rendered through
            that lens, and the keypoints are distorted likewise.
        downscales: which ``images_<d>`` folders to write.
        sparse_formats: any of ``"bin"``, ``"txt"``.
        n_points: number of 3D points.
    """
    path = Path(path)
    width, height = _size(size)
    models = ("PINHOLE", "SIMPLE_PINHOLE", *SYNTHETIC_DISTORTION)
    if camera_model not in models:
        raise ValueError(f"camera_model must be one of {', '.join(models)}, got {camera_model!r}")
    if n_images < 2:
        raise ValueError(f"n_images must be >= 2, got {n_images}")
    rng = np.random.default_rng(seed)
    center, radius = _ORBIT_CENTER, _ORBIT_RADIUS
    fx = 0.9 * width
    one_focal = camera_model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
    fy = fx if one_focal else 1.02 * fx
    cx, cy = width / 2 + 0.3, height / 2 - 0.2
    params = (fx, cx, cy) if one_focal else (fx, fy, cx, cy)
    params += SYNTHETIC_DISTORTION.get(camera_model, ())
    intrinsics, lens = colmap_camera_model(camera_model, params)

    names = [f"frame_{i:03d}.jpg" for i in range(n_images)]
    ids = rng.permutation(n_images) + 1  # image id of names[i]: not in name order
    for folder in ["images", *(f"images_{d}" for d in downscales)]:
        (path / folder).mkdir(parents=True, exist_ok=True)
    w2cs, images = _orbit_cameras(n_images, rng), []
    for i, w2c in enumerate(w2cs):
        rgba = render_sphere(
            w2c, intrinsics, width, height, center, radius, background="sky", distortion=lens
        )
        image = Image.fromarray(rgba[..., :3], "RGB")
        image.save(path / "images" / names[i], quality=95, subsampling=0)
        for d in downscales:
            image.reduce(d).save(path / f"images_{d}" / names[i], quality=95, subsampling=0)
        images.append(rgba[..., :3])

    points = _sphere_points(n_points, center, radius)
    colors = _to_uint8(sphere_color(points, center, radius))
    tracks = [[] for _ in range(n_points)]
    colmap_images = {}
    for i, w2c in enumerate(w2cs):
        eye = -w2c[:3, :3].T @ w2c[:3, 3]
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        ideal = cam[:, :2] / cam[:, 2:]
        pixels = (ideal if lens is None else lens.distort(ideal)) * [fx, fy] + [cx, cy]
        facing = np.einsum("pi,pi->p", points - center, eye - points) > 0
        inside = (pixels >= 0).all(axis=1) & (pixels < [width, height]).all(axis=1)
        visible = np.flatnonzero(facing & inside)
        for k, point in enumerate(visible):
            tracks[point].append((int(ids[i]), k))
        colmap_images[int(ids[i])] = ColmapImage(
            image_id=int(ids[i]),
            qvec=rotation_to_quaternion(w2c[:3, :3]),
            tvec=w2c[:3, 3].copy(),
            camera_id=1,
            name=names[i],
            points2d=pixels[visible],
            point3d_ids=visible.astype(np.int64) + 1,
        )
    model = ColmapModel(
        cameras={1: ColmapCamera(1, camera_model, width, height, params)},
        images=dict(sorted(colmap_images.items())),
        points=ColmapPoints(
            ids=np.arange(1, n_points + 1, dtype=np.int64),
            xyz=points,
            rgb=colors,
            error=np.full(n_points, 0.5),
            tracks=[np.array(t, dtype=np.int64).reshape(-1, 2) for t in tracks],
        ),
    )
    for file_format in sparse_formats:
        write_colmap_model(path / "sparse" / "0", model, file_format=file_format)
    intrinsics = np.repeat(intrinsics[None], n_images, axis=0)
    return _orbit_truth(path, "colmap", names, w2cs, intrinsics, images, points, lens)


#: what nerfstudio's COLMAP conversion applies to the world, (x, y, z) -> (x, z, -y), and
#: writes as ``applied_transform``
NERFSTUDIO_APPLIED_TRANSFORM = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0]]
)


def write_nerfstudio_scene(
    path: str | Path,
    *,
    n_images: int = 10,
    size: int | tuple[int, int] = (32, 24),
    seed: int = 0,
    camera_model: str = "OPENCV",
    per_frame_intrinsics: bool = False,
    downscales: tuple[int, ...] = (2,),
    n_points: int = 300,
) -> SceneTruth:
    """Write a nerfstudio scene: ``transforms.json``, ``images/frame_XXX.png``,
    ``images_<d>/`` and the point cloud ``sparse_pc.ply``, as ``ns-process-data`` lays it out.

    The same sphere and cameras as :func:`write_colmap_scene`. The file carries nerfstudio's
    ``applied_transform`` (an axis swap): ``transform_matrix`` is that transform times the
    OpenGL camera-to-world, and the PLY points are in that frame too; the truth is in the
    original frame, which the loader returns.

    Args:
        path: output folder (created).
        n_images: number of images (test split: every 8th by name).
        size: ``W`` (square) or ``(W, H)`` in pixels.
        seed: camera placement seed.
        camera_model: ``"OPENCV"`` (with ``k1, k2, p1, p2`` from
            :data:`SYNTHETIC_DISTORTION`), ``"OPENCV_FISHEYE"`` (``k1``-``k4``) or
            ``"PINHOLE"``; the images are rendered through that lens.
        per_frame_intrinsics: write ``fl_x, fl_y, cx, cy, w, h`` and the distortion on every
            frame, with a focal length 1% longer per frame, instead of once at the top.
        downscales: which ``images_<d>`` folders to write (box filter, exact sizes when
            ``d`` divides the size).
        n_points: number of points in the PLY file.
    """
    lenses = {
        "OPENCV": ("k1", "k2", "p1", "p2"),
        "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4"),
        "PINHOLE": (),
    }
    if camera_model not in lenses:
        raise ValueError(f"camera_model must be one of {', '.join(lenses)}, got {camera_model!r}")
    if n_images < 2:
        raise ValueError(f"n_images must be >= 2, got {n_images}")
    path = Path(path)
    width, height = _size(size)
    rng = np.random.default_rng(seed)
    w2cs = _orbit_cameras(n_images, rng)
    center, radius = _ORBIT_CENTER, _ORBIT_RADIUS
    values = SYNTHETIC_DISTORTION.get(camera_model, ())
    coefficients = dict(zip(lenses[camera_model], values, strict=True))
    applied = np.vstack([NERFSTUDIO_APPLIED_TRANSFORM, [0.0, 0.0, 0.0, 1.0]])
    for folder in ["images", *(f"images_{d}" for d in downscales)]:
        (path / folder).mkdir(parents=True, exist_ok=True)

    def camera(index: int) -> dict:
        focal = 0.9 * width * (1.0 + 0.01 * index if per_frame_intrinsics else 1.0)
        return {
            "fl_x": focal,
            "fl_y": 1.02 * focal,
            "cx": width / 2 + 0.3,
            "cy": height / 2 - 0.2,
            "w": width,
            "h": height,
            **coefficients,
        }

    lens = None  # the same lens in every frame
    if camera_model == "OPENCV":
        c = coefficients
        lens = LensDistortion("radial_tangential", (c["k1"], c["k2"]), (c["p1"], c["p2"]))
    elif camera_model == "OPENCV_FISHEYE":
        lens = LensDistortion("fisheye", tuple(coefficients[f"k{n}"] for n in range(1, 5)))
    frames, intrinsics, images = [], [], []
    for i, w2c in enumerate(w2cs):
        values = camera(i)
        k = np.array(
            [[values["fl_x"], 0, values["cx"]], [0, values["fl_y"], values["cy"]], [0, 0, 1.0]]
        )
        rgba = render_sphere(w2c, k, width, height, center, radius, "sky", lens)
        name = f"images/frame_{i:03d}.png"
        image = Image.fromarray(rgba[..., :3], "RGB")
        image.save(path / name)
        for d in downscales:
            image.reduce(d).save(path / f"images_{d}" / Path(name).name)
        frame = {
            "file_path": name,
            "transform_matrix": (applied @ rigid_inverse(w2c) @ OPENGL_TO_OPENCV).tolist(),
        }
        if per_frame_intrinsics:
            frame.update(values)
        frames.append(frame)
        intrinsics.append(k)
        images.append(rgba[..., :3])

    points = _sphere_points(n_points, center, radius)
    colors = _to_uint8(sphere_color(points, center, radius))
    write_ply_points(path / "sparse_pc.ply", points @ applied[:3, :3].T + applied[:3, 3], colors)
    meta = {"camera_model": camera_model}
    if not per_frame_intrinsics:
        meta.update(camera(0))
    meta.update(
        {
            "frames": frames,
            "applied_transform": NERFSTUDIO_APPLIED_TRANSFORM.tolist(),
            "ply_file_path": "sparse_pc.ply",
        }
    )
    (path / "transforms.json").write_text(json.dumps(meta, indent=2))
    names = [frame["file_path"] for frame in frames]
    return _orbit_truth(path, "nerfstudio", names, w2cs, np.stack(intrinsics), images, points, lens)
