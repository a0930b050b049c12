"""What a loader knows before decoding pixels: frames, cameras, points, problems found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .distortion import Undistorter
from .errors import DatasetError
from .images import read_image_info


@dataclass
class Frame:
    """One image of a dataset, parsed but not decoded.

    ``world_to_camera`` is OpenCV, float64 [4, 4], in dataset coordinates; ``intrinsics``
    float64 [3, 3] refers to the image *as loaded* (``size`` = (width, height) after any
    downscale, and after undistortion). ``reduce`` is the factor to shrink the file by while
    reading it, ``crop`` whether that shrink drops partial blocks (floor sizes) or averages
    them (ceil sizes). ``undistorter``, when set, resamples the shrunk image of a distorted
    camera into the pinhole camera ``intrinsics`` (frames of one camera share it).
    """

    name: str
    path: Path
    split: str
    world_to_camera: np.ndarray
    intrinsics: np.ndarray
    size: tuple[int, int]
    has_alpha: bool
    reduce: int = 1
    crop: bool = True
    undistorter: Undistorter | None = None

    def undistort(self, distortion, cache: dict, key, error_path: Path, where: str) -> bool:
        """Resample this frame through the undistorter of lens `distortion` at its intrinsics
        and size, made once per `key` in `cache` (frames of one camera share it), and take its
        pinhole intrinsics. Returns whether it was made now. A lens that cannot be undistorted
        raises DatasetError at `error_path`, its message prefixed with `where`."""
        made = key not in cache
        if made:
            try:
                cache[key] = Undistorter(distortion, self.intrinsics, self.size)
            except ValueError as error:
                raise DatasetError(error_path, f"{where}: {error}") from None
        self.undistorter = cache[key]
        self.intrinsics = self.undistorter.intrinsics
        return made


@dataclass
class SceneSpec:
    """A parsed dataset: frames in load order, split names, optional points, notes, problems.

    ``problems`` lists every :class:`DatasetError` found while parsing (missing or unreadable
    images, mixed sizes, ...); a loader raises the first, ``check`` reports them all.
    """

    format: str
    root: Path
    frames: list[Frame]
    camera_model: str
    points: np.ndarray | None = None  # float64 [P, 3], dataset coordinates
    point_colors: np.ndarray | None = None  # uint8 [P, 3]
    val_is_test: bool = False  # no val split (COLMAP, most nerfstudio scenes): it repeats test
    notes: list[str] = field(default_factory=list)
    problems: list[DatasetError] = field(default_factory=list)

    def raise_first_problem(self) -> None:
        if self.problems:
            raise self.problems[0]

    def read_header(self, path: Path, referenced_by: str) -> tuple[int, int, bool] | None:
        """``(width, height, has_alpha)`` of an image, or None after recording in ``problems``
        why it cannot be used (missing, or unreadable)."""
        if not path.is_file():
            self.problems.append(
                DatasetError(path, f"image referenced by {referenced_by} does not exist")
            )
            return None
        try:
            return read_image_info(path)
        except DatasetError as error:
            self.problems.append(error)
            return None

    def check_one_size(self) -> None:
        """Record a problem for every frame whose size differs from the first frame's."""
        if not self.frames:
            return
        first = self.frames[0]
        for frame in self.frames[1:]:
            if frame.size != first.size:
                self.problems.append(
                    DatasetError(
                        frame.path,
                        f"image loads as {frame.size[0]}x{frame.size[1]} but {first.path.name} "
                        f"loads as {first.size[0]}x{first.size[1]}; all images of a dataset "
                        "must have one size",
                    )
                )


def resolve_root(path: str | Path, default_parent: Path) -> Path:
    """``path`` if it is a folder, else ``default_parent / path`` for a bare scene name."""
    path = Path(path)
    if path.is_dir():
        return path
    candidate = default_parent / path
    if len(path.parts) == 1 and candidate.is_dir():
        return candidate
    looked = f" (also looked for {candidate})" if len(path.parts) == 1 else ""
    raise DatasetError(path, f"dataset folder not found{looked}")
