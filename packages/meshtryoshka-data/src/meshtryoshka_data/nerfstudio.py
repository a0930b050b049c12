"""Nerfstudio scenes: one ``transforms.json`` (what ``ns-process-data`` and many capture apps
write), its images, and an optional PLY point cloud.

The file holds ``frames`` (``file_path`` + ``transform_matrix``, an OpenGL camera-to-world as
in NeRF-synthetic) and the camera: ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``,
``camera_model`` (``OPENCV`` when absent, ``OPENCV_FISHEYE``, ``PINHOLE``, ``SIMPLE_PINHOLE``)
and the distortion ``k1``..``k4``, ``p1``, ``p2``, each at the top level or per frame (the
frame wins). ``applied_transform`` (3x4) is the rigid transform the writer applied to the
world (nerfstudio's COLMAP conversion swaps axes); the loader undoes it, so the dataset's
coordinates are the original capture's, the frame that meshes are written back to.
``ply_file_path`` names a point cloud in the file's (transformed) frame. Optional
``train_filenames`` / ``val_filenames`` / ``test_filenames`` choose the splits.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np
import torch

from ._geometry import OPENGL_TO_OPENCV, rigid_inverse
from ._scene import Frame, SceneSpec, resolve_root
from .blender import (
    frames_of,
    lookup,
    parse_frame_entry,
    parse_intrinsics,
    parse_transform_matrix,
    read_json_object,
)
from .dataset import Dataset, build_dataset
from .distortion import LensDistortion
from .errors import DatasetError
from .ply import read_ply_points

__all__ = ["CAMERA_MODELS", "DEFAULT_NERFSTUDIO_ROOT", "load_nerfstudio", "parse_nerfstudio"]

DEFAULT_NERFSTUDIO_ROOT = Path("datasets/nerfstudio")
#: ``camera_model`` values the loader takes (nerfstudio's perspective models)
CAMERA_MODELS = ("OPENCV", "OPENCV_FISHEYE", "PINHOLE", "SIMPLE_PINHOLE")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_SPLIT_KEYS = {"train": "train_filenames", "val": "val_filenames", "test": "test_filenames"}


# The keyword arguments of `load_colmap` (the same meaning), so that `load_scene` can pass
# either loader the same settings: a deliberate look-alike of its signature.
def load_nerfstudio(
    path: str | Path,
    *,
    downscale: int = 1,
    llffhold: int = 8,
    background: str = "white",
    device: str | torch.device = "cpu",
    normalize: bool = True,
    scale_factor: float = 1.0,
    orient: bool = False,
) -> Dataset:
    """Load a nerfstudio scene (a folder with ``transforms.json``).

    Args:
        path: the scene folder, or a bare scene name looked up in
            ``datasets/nerfstudio/<name>``.
        downscale: read ``images_<d>/<file name>`` when that file exists (intrinsics scaled
            to its size, as nerfstudio does); else shrink the image by ``d`` on load
            (``d x d`` box filter, ``fx, fy, cx, cy`` divided by ``d``).
        llffhold: without ``*_filenames`` lists, every ``llffhold``-th image sorted by name
            (starting with the first) is a test image and val repeats test; 0: all train.
        background: for RGBA images: ``"white"``, ``"black"`` or ``"random"``.
        device: where the uint8 images, cameras and points live.
        normalize: fit the camera centres into ``[-scale_factor, scale_factor]^3``.
        scale_factor: the cube half-side when normalizing; otherwise a plain scale.
        orient: also rotate the mean camera up direction onto ``+z`` before fitting.

    Images of cameras with distortion coefficients are undistorted on load into a pinhole
    camera of the same size (see :class:`~meshtryoshka_data.Undistorter`).

    Raises:
        DatasetError: naming the file and the problem (see :func:`parse_nerfstudio`).
    """
    spec = parse_nerfstudio(
        resolve_root(path, DEFAULT_NERFSTUDIO_ROOT), downscale=downscale, llffhold=llffhold
    )
    return build_dataset(
        spec,
        background=background,
        device=device,
        normalize=normalize,
        scale_factor=scale_factor,
        orient=orient,
    )


def parse_nerfstudio(root: Path, *, downscale: int = 1, llffhold: int = 8) -> SceneSpec:
    """Read ``transforms.json``, the image headers and the point cloud, decoding no pixels.

    Structural errors (bad JSON, no frames, bad matrices or intrinsics, an unknown
    ``camera_model``, distortion keys a model does not have, a missing or unreadable point
    cloud) raise :class:`DatasetError` at once; per-image problems (missing or unreadable
    files, mixed sizes) are collected in ``SceneSpec.problems``.
    """
    root = Path(root)
    if not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    if not isinstance(llffhold, int) or llffhold < 0:
        raise ValueError(f"llffhold must be an integer >= 0, got {llffhold!r}")
    json_path = root / "transforms.json"
    if not json_path.is_file():
        raise DatasetError(json_path, "missing (a nerfstudio scene needs it)")
    meta = read_json_object(json_path)
    frames = frames_of(json_path, meta)
    applied = np.eye(4)
    if meta.get("applied_transform") is not None:
        applied = parse_transform_matrix(
            json_path, "top level", meta["applied_transform"], "applied_transform"
        )
    to_original = rigid_inverse(applied)  # the file's world -> the capture's world

    spec = SceneSpec(format="nerfstudio", root=root, frames=[], camera_model="")
    named = _named_splits(json_path, meta)
    parsed = []
    for number, entry in enumerate(frames):
        frame = _parse_frame(root, json_path, meta, entry, number, downscale, to_original, spec)
        if frame is not None:
            parsed.append(frame)
    parsed.sort(key=lambda item: item[0].name)
    models, undistorters, users = set(), {}, {}
    unlisted = 0
    for index, (frame, model, distortion) in enumerate(parsed):
        if named is None:
            frame.split = "test" if llffhold > 0 and index % llffhold == 0 else "train"
        elif frame.name in named:
            frame.split = named[frame.name]
        else:
            unlisted += 1
            continue
        models.add(model)
        if distortion is not None:
            key = (distortion, tuple(frame.intrinsics.ravel()), frame.size)
            frame.undistort(distortion, undistorters, key, json_path, f"frame {frame.name!r}")
            users.setdefault(key, []).append(model)
        spec.frames.append(frame)
    for key, undistorter in undistorters.items():
        count = len(users[key])
        frames_text = "1 frame" if count == 1 else f"{count} frames"
        spec.notes.append(f"{frames_text} ({users[key][0]}) {undistorter.summary()}")
    if unlisted:
        spec.notes.append(
            f"{unlisted} frame(s) are in none of {', '.join(_SPLIT_KEYS.values())}: left out"
        )
    spec.camera_model = ", ".join(sorted(models))
    spec.val_is_test = named is None or "val_filenames" not in meta
    spec.check_one_size()
    _read_point_cloud(root, json_path, meta, to_original, spec)
    return spec


def _named_splits(json_path: Path, meta: dict) -> dict[str, str] | None:
    """``{normalized file path: split}`` from the ``*_filenames`` lists, or None if absent."""
    if not any(key in meta for key in _SPLIT_KEYS.values()):
        return None
    named = {}
    for split, key in _SPLIT_KEYS.items():
        names = meta.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(json_path, f"{key!r} must be a list of file paths")
        for name in names:
            named.setdefault(_normalized(name), split)
    return named


def _normalized(file_path: str) -> str:
    return posixpath.normpath(file_path.replace("\\", "/"))


def _parse_frame(root, json_path, meta, entry, number, downscale, to_original, spec):
    """(Frame, camera model, distortion or None) for one entry, or None if its image is bad."""
    where = f"frame {number}"
    file_path, c2w_gl = parse_frame_entry(json_path, where, entry)
    w2c = rigid_inverse(to_original @ c2w_gl @ OPENGL_TO_OPENCV)
    model, distortion = _lens(json_path, where, meta, entry)

    name = _normalized(file_path)
    full_path = root / name
    header = spec.read_header(full_path, f"{json_path.name} {where}")
    if header is None:
        return None
    full_w, full_h, has_alpha = header
    intrinsics = parse_intrinsics(json_path, where, meta, entry, full_w, full_h)
    path, size, reduce = full_path, (full_w, full_h), 1
    if downscale > 1:
        smaller = root / f"images_{downscale}" / full_path.name
        if smaller.is_file():
            header = spec.read_header(smaller, f"{json_path.name} {where}")
            if header is None:
                return None
            width, height, has_alpha = header
            intrinsics[0] *= width / full_w
            intrinsics[1] *= height / full_h
            path, size = smaller, (width, height)
        else:
            intrinsics[:2] /= downscale
            size, reduce = (full_w // downscale, full_h // downscale), downscale
            note = f"images_{downscale}/ not found: images are shrunk by {downscale} on load"
            if note not in spec.notes:
                spec.notes.append(note)
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"downscale {downscale} is larger than the images ({full_w}x{full_h})")
    frame = Frame(name, path, "train", w2c, intrinsics, size, has_alpha, reduce, True)
    return frame, model, distortion


def _lens(json_path: Path, where: str, meta: dict, entry: dict):
    """The frame's ``camera_model`` and its distortion (None when it has none)."""
    model = lookup(meta, entry, "camera_model")
    model = "OPENCV" if model is None else model
    if model not in CAMERA_MODELS:
        raise DatasetError(
            json_path,
            f"{where}: camera_model must be one of {', '.join(CAMERA_MODELS)}, got {model!r}",
        )
    values = {}
    for key in _DISTORTION_KEYS:
        value = lookup(meta, entry, key)
        if value is None:
            value = 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise DatasetError(
                json_path, f"{where}: {key!r} must be a finite number, got {value!r}"
            )
        values[key] = float(value)
    k = tuple(values[key] for key in ("k1", "k2", "k3", "k4"))
    p = (values["p1"], values["p2"])
    if model in ("PINHOLE", "SIMPLE_PINHOLE"):
        extra = [key for key, value in values.items() if value]
        if extra:
            raise DatasetError(
                json_path,
                f"{where}: camera_model {model} has no distortion, but {', '.join(extra)} "
                "are set (use camera_model OPENCV for a lens with distortion)",
            )
        return model, None
    if model == "OPENCV_FISHEYE":
        if any(p):
            raise DatasetError(
                json_path,
                f"{where}: camera_model OPENCV_FISHEYE has no tangential terms, but p1/p2 "
                f"are {p[0]}, {p[1]}",
            )
        return model, LensDistortion("fisheye", k)
    lens = LensDistortion("radial_tangential", k, p)
    return model, None if lens.is_identity else lens


def _read_point_cloud(root, json_path, meta, to_original, spec) -> None:
    ply_name = meta.get("ply_file_path")
    if ply_name is None:
        return
    if not isinstance(ply_name, str) or not ply_name:
        raise DatasetError(json_path, f"'ply_file_path' must be a file path, got {ply_name!r}")
    xyz, colors = read_ply_points(root / _normalized(ply_name))
    spec.points = xyz @ to_original[:3, :3].T + to_original[:3, 3]
    if colors is None:
        colors = np.full((len(xyz), 3), 128, dtype=np.uint8)
        spec.notes.append(f"{ply_name} has no colours: the points are grey")
    spec.point_colors = colors
