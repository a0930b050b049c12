"""NeRF-synthetic ("Blender") scenes: ``transforms_{train,val,test}.json`` and RGBA PNGs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ._geometry import OPENGL_TO_OPENCV, rigid_inverse, rigidity_error
from ._scene import Frame, SceneSpec, resolve_root
from .dataset import Dataset, build_dataset
from .errors import DatasetError

__all__ = ["DEFAULT_BLENDER_ROOT", "load_blender", "parse_blender"]

DEFAULT_BLENDER_ROOT = Path("datasets/nerf_synthetic")
SPLITS = ("train", "val", "test")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
# A transform_matrix whose rotation block is further than this from orthonormal is refused.
_RIGID_TOLERANCE = 1e-3


def load_blender(
    path: str | Path,
    *,
    downscale: int = 1,
    background: str = "white",
    device: str | torch.device = "cpu",
    normalize: bool = False,
    scale_factor: float = 1.0,
) -> Dataset:
    """Load a NeRF-synthetic scene.

    Args:
        path: the scene folder, or a bare scene name looked up in
            ``datasets/nerf_synthetic/<name>`` (relative to the working directory).
        downscale: integer factor; images are area-averaged over ``d x d`` blocks
            (premultiplied alpha; rows/columns past a multiple of ``d`` are dropped) and
            ``fx, fy, cx, cy`` are divided by ``d``.
        background: ``"white"``, ``"black"`` or ``"random"`` (per image and training step).
        device: where the uint8 images and cameras live.
        normalize: fit the cameras into ``[-scale_factor, scale_factor]^3``. Off by default:
            the NeRF-synthetic objects sit at the origin inside ``[-1.5, 1.5]^3``, and the
            cameras (on the upper hemisphere) would pull the centre off the object.
        scale_factor: the cube half-side when normalizing; otherwise a plain scale of the
            world about the origin (1.0 keeps the dataset's units).

    Raises:
        DatasetError: naming the file and the problem (see :func:`parse_blender`).
    """
    spec = parse_blender(resolve_root(path, DEFAULT_BLENDER_ROOT), downscale=downscale)
    return build_dataset(
        spec, background=background, device=device, normalize=normalize, scale_factor=scale_factor
    )


def parse_blender(root: Path, *, downscale: int = 1) -> SceneSpec:
    """Read the JSON files and image headers of a NeRF-synthetic scene, decoding no pixels.

    ``transforms_train.json`` is required; a missing ``val``/``test`` file leaves that split
    empty (noted). Per split: ``frames`` (non-empty list of ``file_path`` +
    ``transform_matrix``, an OpenGL camera-to-world), and intrinsics from ``fl_x``/``fl_y``/
    ``cx``/``cy`` (with ``w``/``h``, rescaled to the actual image size) or
    ``camera_angle_x`` (and ``camera_angle_y``), each looked up on the frame first, then the
    file. ``file_path`` may omit the ``.png`` suffix, as the original files do.

    Structural errors (bad JSON, no frames, bad matrices) raise :class:`DatasetError` at
    once; per-image problems (missing or unreadable files, mixed sizes) are collected in
    ``SceneSpec.problems``.
    """
    root = Path(root)
    if not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    spec = SceneSpec(format="blender", root=root, frames=[], camera_model="")
    models = set()
    for split in SPLITS:
        json_path = root / f"transforms_{split}.json"
        if not json_path.is_file():
            if split == "train":
                raise DatasetError(json_path, "missing (a NeRF-synthetic scene needs it)")
            spec.notes.append(f"{json_path.name} not found: the {split} split is empty")
            continue
        meta = read_json_object(json_path)
        for number, entry in enumerate(frames_of(json_path, meta)):
            frame = _parse_frame(root, json_path, meta, entry, number, split, downscale, spec)
            if frame is not None:
                spec.frames.append(frame)
                models.add(_model_name(meta, entry))
    spec.camera_model = ", ".join(sorted(models))
    spec.check_one_size()
    return spec


def read_json_object(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(path, f"invalid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise DatasetError(
            path, f"expected a JSON object at the top level, got {type(meta).__name__}"
        )
    return meta


def _model_name(meta: dict, entry: dict) -> str:
    return "fl_x/fl_y" if "fl_x" in entry or "fl_x" in meta else "camera_angle_x"


def _parse_frame(root, json_path, meta, entry, number, split, downscale, spec) -> Frame | None:
    where = f"frame {number}"
    file_path, c2w_gl = parse_frame_entry(json_path, where, entry)
    w2c = rigid_inverse(c2w_gl @ OPENGL_TO_OPENCV)

    image_path = root / file_path
    if not image_path.suffix or not image_path.is_file():
        with_png = root / (file_path + ".png")
        if with_png.is_file() or not image_path.suffix:
            image_path = with_png
    header = spec.read_header(image_path, f"{json_path.name} {where}")
    if header is None:
        return None
    full_w, full_h, has_alpha = header

    intrinsics = parse_intrinsics(json_path, where, meta, entry, full_w, full_h)
    if downscale > 1:
        intrinsics[:2] /= downscale
    size = (full_w // downscale, full_h // downscale)
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"downscale {downscale} is larger than the images ({full_w}x{full_h})")
    name = image_path.relative_to(root).as_posix()
    return Frame(name, image_path, split, w2c, intrinsics, size, has_alpha, downscale, True)


def frames_of(json_path: Path, meta: dict) -> list:
    """The non-empty ``frames`` list of a transforms file."""
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise DatasetError(json_path, "no 'frames' list")
    if not frames:
        raise DatasetError(json_path, "'frames' is empty")
    return frames


def parse_frame_entry(json_path: Path, where: str, entry) -> tuple[str, np.ndarray]:
    """``(file_path, transform_matrix)`` of one entry of a ``frames`` list (both layouts)."""
    if not isinstance(entry, dict):
        raise DatasetError(json_path, f"{where} is not a JSON object")
    file_path = entry.get("file_path")
    if not isinstance(file_path, str) or not file_path:
        raise DatasetError(json_path, f"{where} has no 'file_path'")
    return file_path, parse_transform_matrix(json_path, where, entry.get("transform_matrix"))


def parse_transform_matrix(
    json_path: Path, where: str, value, key: str = "transform_matrix"
) -> np.ndarray:
    """A rigid 4x4 float64 matrix from JSON (4x4 or 3x4), its rotation snapped orthonormal.

    Raises DatasetError naming ``json_path``, ``where`` and ``key`` when ``value`` is not a
    matrix of finite numbers of that shape, is singular, or scales, shears or mirrors.
    """
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(json_path, f"{where}: {key!r} is not a matrix of numbers") from None
    if matrix.shape == (3, 4):
        matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
    if matrix.shape != (4, 4):
        raise DatasetError(
            json_path, f"{where}: {key!r} must be 4x4 (or 3x4), got shape {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise DatasetError(json_path, f"{where}: {key!r} has non-finite values")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-8:
        raise DatasetError(json_path, f"{where}: {key!r} is not invertible")
    error = rigidity_error(matrix)
    if error > _RIGID_TOLERANCE:
        raise DatasetError(
            json_path,
            f"{where}: {key!r} is not a rigid transform, a rotation and a translation "
            f"(deviation {error:.3g}; scaled, sheared or mirrored)",
        )
    # Snap the rotation to the nearest orthonormal matrix so the inverse is exact.
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    matrix[:3, :3] = u @ vt
    return matrix


def lookup(meta: dict, entry: dict, key: str):
    return entry[key] if key in entry else meta.get(key)


def parse_intrinsics(json_path, where, meta, entry, width, height) -> np.ndarray:
    values = {key: lookup(meta, entry, key) for key in _INTRINSIC_KEYS}
    for key, value in values.items():
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise DatasetError(
                json_path, f"{where}: {key!r} must be a finite number, got {value!r}"
            )
    if values["fl_x"] is not None:
        fx = float(values["fl_x"])
        fy = float(values["fl_y"] if values["fl_y"] is not None else fx)
        ref_w = float(values["w"] if values["w"] is not None else width)
        ref_h = float(values["h"] if values["h"] is not None else height)
        cx = float(values["cx"] if values["cx"] is not None else ref_w / 2)
        cy = float(values["cy"] if values["cy"] is not None else ref_h / 2)
        sx, sy = width / ref_w, height / ref_h  # declared size -> actual size on disk
        fx, cx, fy, cy = fx * sx, cx * sx, fy * sy, cy * sy
    elif values["camera_angle_x"] is not None:
        angle_x = float(values["camera_angle_x"])
        if not 0 < angle_x < math.pi:
            raise DatasetError(
                json_path, f"{where}: camera_angle_x must be in (0, pi), got {angle_x}"
            )
        fx = 0.5 * width / math.tan(angle_x / 2)
        fy = fx
        if values["camera_angle_y"] is not None:
            fy = 0.5 * height / math.tan(float(values["camera_angle_y"]) / 2)
        cx, cy = width / 2, height / 2
    else:
        raise DatasetError(json_path, f"{where}: no intrinsics (need 'camera_angle_x' or 'fl_x')")
    if not (fx > 0 and fy > 0):
        raise DatasetError(json_path, f"{where}: focal lengths must be > 0, got fx={fx}, fy={fy}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
