"""COLMAP / Mip-NeRF 360 scenes: ``sparse/0`` model, ``images[_N]`` folders, LLFF hold-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ._geometry import quaternion_to_rotation
from ._scene import Frame, SceneSpec, resolve_root
from .colmap import ColmapCamera, read_colmap_model
from .dataset import Dataset, build_dataset
from .distortion import SUPPORTED_MODELS, Undistorter, colmap_camera_model
from .errors import DatasetError

__all__ = ["DEFAULT_COLMAP_ROOT", "MIPNERF360_DOWNSCALE", "load_colmap", "parse_colmap"]

DEFAULT_COLMAP_ROOT = Path("datasets/mipnerf360")
# The image folder the Mip-NeRF 360 papers (and the original) train on, per scene.
MIPNERF360_DOWNSCALE = {
    **dict.fromkeys(("bicycle", "flowers", "garden", "stump", "treehill"), 4),
    **dict.fromkeys(("bonsai", "counter", "kitchen", "room"), 2),
}
# An image must be a uniform scaling of its camera's size, up to the rounding of a resize:
# its height may differ from camera height * (image width / camera width) by this many pixels.
_SIZE_TOLERANCE_PX = 1.0


def load_colmap(
    path: str | Path,
    *,
    downscale: int = 1,
    llffhold: int = 8,
    background: str = "white",
    device: str | torch.device = "cpu",
    normalize: bool = True,
    scale_factor: float = 1.0,
    orient: bool = False,
    sparse_format: str = "auto",
) -> Dataset:
    """Load a COLMAP scene (Mip-NeRF 360 layout).

    Args:
        path: the scene folder (holding ``sparse/0`` and ``images*``), or a bare scene name
            looked up in ``datasets/mipnerf360/<name>``.
        downscale: read ``images_<d>/`` (``images/`` for 1); when that folder is missing,
            ``images/`` is shrunk by ``d`` with a box filter on load. Intrinsics are scaled to
            the size of the images actually loaded.
        llffhold: every ``llffhold``-th image (sorted by name, starting with the first) is a
            test image (and val = test); 0 puts every image in train.
        background: only used for RGBA images; ``"white"``, ``"black"`` or ``"random"``.
        device: where the uint8 images, cameras and points live.
        normalize: fit the camera centres into ``[-scale_factor, scale_factor]^3`` (a
            translation and a uniform scale; see :func:`fit_normalization`).
        scale_factor: the cube half-side when normalizing; otherwise a plain scale.
        orient: also rotate the mean camera up direction onto ``+z`` before fitting.
        sparse_format: ``"auto"`` (binary if present), ``"bin"`` or ``"txt"``.

    Raises:
        DatasetError: naming the file and the problem (see :func:`parse_colmap`).
    """
    spec = parse_colmap(
        resolve_root(path, DEFAULT_COLMAP_ROOT),
        downscale=downscale,
        llffhold=llffhold,
        sparse_format=sparse_format,
    )
    return build_dataset(
        spec,
        background=background,
        device=device,
        normalize=normalize,
        scale_factor=scale_factor,
        orient=orient,
    )


def find_sparse_folder(root: Path) -> Path:
    """``root/sparse/0``, or ``root/sparse`` when the model files sit there directly."""
    for folder in (root / "sparse" / "0", root / "sparse"):
        if any((folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return folder
    raise DatasetError(root / "sparse" / "0", "COLMAP model folder not found (no cameras.bin/.txt)")


def parse_colmap(
    root: Path, *, downscale: int = 1, llffhold: int = 8, sparse_format: str = "auto"
) -> SceneSpec:
    """Read the sparse model and the image headers of a COLMAP scene, decoding no pixels.

    Cameras with lens distortion (SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE) get an
    :class:`Undistorter` that resamples their images into a pinhole camera on load (noted).
    Structural errors (missing model files or image folder, truncated or malformed model,
    camera models that cannot be undistorted) raise :class:`DatasetError`; per-image problems
    (referenced but absent, unreadable, mixed sizes, size not matching the camera) are
    collected in ``SceneSpec.problems``.
    """
    root = Path(root)
    if not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be an integer >= 1, got {downscale!r}")
    if not isinstance(llffhold, int) or llffhold < 0:
        raise ValueError(f"llffhold must be an integer >= 0, got {llffhold!r}")
    sparse = find_sparse_folder(root)
    model = read_colmap_model(sparse, file_format=sparse_format)
    fmt = "bin" if sparse_format == "auto" and (sparse / "cameras.bin").exists() else sparse_format
    fmt = "txt" if fmt == "auto" else fmt
    cameras_file = sparse / f"cameras.{fmt}"
    used = {image.camera_id for image in model.images.values()}
    for camera_id in sorted(used):
        camera = model.cameras[camera_id]
        if camera.model not in SUPPORTED_MODELS:
            raise DatasetError(
                cameras_file,
                f"camera {camera_id} uses the {camera.model} model, which this loader cannot "
                f"undistort (it takes {', '.join(SUPPORTED_MODELS)}). Undistort the images "
                "first: run `meshtryoshka-data from-images` on the photos (it undistorts), or "
                "colmap image_undistorter --image_path images --input_path sparse/0 "
                "--output_path undistorted",
            )
    if not model.images:
        raise DatasetError(sparse / f"images.{fmt}", "the model has no registered images")

    folder, reduce = root / "images", 1
    if downscale > 1:
        folder = root / f"images_{downscale}"
        if not folder.is_dir():
            folder, reduce = root / "images", downscale
    if not folder.is_dir():
        raise DatasetError(folder, "image folder not found")
    spec = SceneSpec(format="colmap", root=root, frames=[], camera_model="")
    if reduce > 1:
        spec.notes.append(
            f"images_{downscale}/ not found: images/ is shrunk by {downscale} on load"
        )
    spec.camera_model = ", ".join(sorted({model.cameras[i].model for i in used}))

    lenses = {
        i: colmap_camera_model(model.cameras[i].model, model.cameras[i].params)[1] for i in used
    }
    ordered = sorted(model.images.values(), key=lambda image: image.name)
    undistorters: dict[tuple[int, tuple[int, int]], Undistorter] = {}
    for index, image in enumerate(ordered):
        split = "test" if llffhold > 0 and index % llffhold == 0 else "train"
        camera = model.cameras[image.camera_id]
        frame = _frame(spec, folder, reduce, image, camera, split)
        if frame is None:
            continue
        distortion = lenses[camera.camera_id]
        if distortion is not None and not distortion.is_identity:
            where = f"camera {camera.camera_id} ({camera.model})"
            key = (camera.camera_id, frame.size)
            if frame.undistort(distortion, undistorters, key, cameras_file, where):
                spec.notes.append(f"{where} {frame.undistorter.summary()}")
        spec.frames.append(frame)
    spec.val_is_test = True
    spec.check_one_size()
    spec.points = model.points.xyz
    spec.point_colors = model.points.rgb
    return spec


def _frame(
    spec, folder: Path, reduce: int, image, camera: ColmapCamera, split: str
) -> Frame | None:
    path = folder / image.name
    header = spec.read_header(path, "the COLMAP model")
    if header is None:
        return None
    width, height, has_alpha = header
    if reduce > 1:
        width, height = -(-width // reduce), -(-height // reduce)  # Image.reduce: ceil sizes
    sx, sy = width / camera.width, height / camera.height
    if abs(sx * camera.height - height) > _SIZE_TOLERANCE_PX + 0.005 * height:
        spec.problems.append(
            DatasetError(
                path,
                f"image loads as {width}x{height}, not a uniform scaling of camera "
                f"{camera.camera_id}'s {camera.width}x{camera.height}",
            )
        )
        return None
    intrinsics, _ = colmap_camera_model(camera.model, camera.params)
    intrinsics[0] *= sx
    intrinsics[1] *= sy
    if not np.isfinite(image.qvec).all() or np.linalg.norm(image.qvec) < 1e-12:
        spec.problems.append(DatasetError(path, f"image {image.name!r} has an invalid quaternion"))
        return None
    w2c = np.eye(4)
    w2c[:3, :3] = quaternion_to_rotation(image.qvec)
    w2c[:3, 3] = image.tvec
    return Frame(
        image.name, path, split, w2c, intrinsics, (width, height), has_alpha, reduce, False
    )
