"""Format detection and the format-independent entry point :func:`load_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .blender import DEFAULT_BLENDER_ROOT, load_blender
from .colmap_dataset import DEFAULT_COLMAP_ROOT, load_colmap
from .dataset import Dataset
from .errors import DatasetError
from .nerfstudio import DEFAULT_NERFSTUDIO_ROOT, load_nerfstudio

__all__ = ["detect_format", "load_dataset"]


def detect_format(path: str | Path) -> str:
    """``"blender"`` (``transforms_*.json`` files), ``"nerfstudio"`` (one ``transforms.json``)
    or ``"colmap"`` (a ``sparse/`` model).

    Raises:
        DatasetError: the folder is missing or matches neither layout.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    if any(root.glob("transforms_*.json")):
        return "blender"
    if (root / "transforms.json").is_file():
        return "nerfstudio"
    for folder in (root / "sparse" / "0", root / "sparse"):
        if any((folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return "colmap"
    raise DatasetError(
        root,
        "unknown dataset layout: expected transforms_train.json (NeRF-synthetic), "
        "transforms.json (nerfstudio) or sparse/0/cameras.bin|txt (COLMAP)",
    )


def load_dataset(path: str | Path, *, format: str = "auto", **options: Any) -> Dataset:
    """Load a dataset folder with :func:`load_blender`, :func:`load_nerfstudio` or
    :func:`load_colmap`.

    Args:
        path: a scene folder; a bare scene name is looked up in ``datasets/nerf_synthetic/``,
            ``datasets/mipnerf360/`` and ``datasets/nerfstudio/``.
        format: ``"auto"``, ``"blender"``, ``"nerfstudio"`` or ``"colmap"``.
        **options: passed on to the loader.
    """
    root = Path(path)
    if not root.is_dir() and len(root.parts) == 1:
        for parent in (DEFAULT_BLENDER_ROOT, DEFAULT_COLMAP_ROOT, DEFAULT_NERFSTUDIO_ROOT):
            if (parent / root).is_dir():
                root = parent / root
                break
    if format == "auto":
        format = detect_format(root)
    if format == "blender":
        return load_blender(root, **options)
    if format == "colmap":
        return load_colmap(root, **options)
    if format == "nerfstudio":
        return load_nerfstudio(root, **options)
    raise ValueError(f"format must be 'auto', 'blender', 'nerfstudio' or 'colmap', got {format!r}")
