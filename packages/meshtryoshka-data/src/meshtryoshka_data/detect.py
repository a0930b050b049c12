"""Format detection and the format-independent entry point :func:`load_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .blender import DEFAULT_BLENDER_ROOT, load_blender
from .colmap_dataset import DEFAULT_COLMAP_ROOT, load_colmap
from .dataset import Dataset
from .errors import DatasetError

__all__ = ["detect_format", "load_dataset"]


def detect_format(path: str | Path) -> str:
    """``"blender"`` (a ``transforms_*.json`` file) or ``"colmap"`` (a ``sparse/`` model).

    Raises:
        DatasetError: the folder is missing or matches neither layout.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    if any(root.glob("transforms_*.json")):
        return "blender"
    for folder in (root / "sparse" / "0", root / "sparse"):
        if any((folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return "colmap"
    raise DatasetError(
        root,
        "unknown dataset layout: expected transforms_train.json (NeRF-synthetic) or "
        "sparse/0/cameras.bin|txt (COLMAP)",
    )


def load_dataset(path: str | Path, *, format: str = "auto", **options: Any) -> Dataset:
    """Load a dataset folder with :func:`load_blender` or :func:`load_colmap`.

    Args:
        path: a scene folder; a bare scene name is looked up in
            ``datasets/nerf_synthetic/`` and ``datasets/mipnerf360/``.
        format: ``"auto"``, ``"blender"`` or ``"colmap"``.
        **options: passed on to the loader.
    """
    root = Path(path)
    if not root.is_dir() and len(root.parts) == 1:
        for parent in (DEFAULT_BLENDER_ROOT, DEFAULT_COLMAP_ROOT):
            if (parent / root).is_dir():
                root = parent / root
                break
    if format == "auto":
        format = detect_format(root)
    if format == "blender":
        return load_blender(root, **options)
    if format == "colmap":
        return load_colmap(root, **options)
    raise ValueError(f"format must be 'auto', 'blender' or 'colmap', got {format!r}")
