"""Validate a dataset folder without keeping its images in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._geometry import rigid_inverse
from .blender import parse_blender
from .colmap_dataset import parse_colmap
from .detect import detect_format
from .errors import DatasetError
from .images import read_image
from .nerfstudio import parse_nerfstudio

__all__ = ["CheckReport", "check_dataset"]


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``ok`` is True only when ``problems`` is empty."""

    path: Path
    format: str | None = None
    camera_model: str | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)
    resolution: tuple[int, int] | None = None
    channels: str | None = None
    camera_bounds: np.ndarray | None = None  # float64 [2, 3], dataset coordinates
    n_points: int | None = None
    point_bounds: np.ndarray | None = None  # float64 [2, 3], 1st and 99th percentile
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """A human-readable multi-line summary."""

        def box(b):
            low, high = (", ".join(f"{v:.3g}" for v in row) for row in b)
            return f"[{low}] .. [{high}]"

        lines = [f"dataset:      {self.path}", f"format:       {self.format or 'unknown'}"]
        if self.split_sizes:
            sizes = ", ".join(f"{k} {v}" for k, v in self.split_sizes.items())
            lines.append(f"images:       {sizes}")
        if self.resolution:
            lines.append(f"resolution:   {self.resolution[0]}x{self.resolution[1]} {self.channels}")
        if self.camera_model:
            lines.append(f"camera model: {self.camera_model}")
        if self.camera_bounds is not None:
            lines.append(f"cameras in:   {box(self.camera_bounds)} (dataset coordinates)")
        if self.n_points is not None:
            extent = f", 1-99% box {box(self.point_bounds)}" if self.n_points else ""
            lines.append(f"points:       {self.n_points}{extent}")
        lines += [f"note:         {note}" for note in self.notes]
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines += [f"  - {problem}" for problem in self.problems]
        else:
            lines.append("problems:     none")
        lines.append("result:       " + ("VALID" if self.ok else "INVALID"))
        return "\n".join(lines)


def check_dataset(path: str | Path, *, downscale: int = 1, decode: bool = True) -> CheckReport:
    """Validate a dataset folder and summarize it, collecting every problem found.

    Reads the metadata and every image header; with ``decode`` also decodes every image
    (one at a time, nothing kept) to find truncated or corrupt files.
    """
    report = CheckReport(path=Path(path))
    try:
        report.format = detect_format(path)
        if report.format == "blender":
            spec = parse_blender(Path(path), downscale=downscale)
        elif report.format == "nerfstudio":
            spec = parse_nerfstudio(Path(path), downscale=downscale)
        else:
            spec = parse_colmap(Path(path), downscale=downscale)
    except DatasetError as error:
        report.problems.append(str(error))
        return report
    report.camera_model = spec.camera_model
    report.notes = list(spec.notes)
    report.problems = [str(problem) for problem in spec.problems]
    splits = ("train", "val", "test")
    report.split_sizes = {s: sum(f.split == s for f in spec.frames) for s in splits}
    if spec.val_is_test:
        report.split_sizes["val"] = report.split_sizes["test"]
        report.notes.append("no val split: val repeats test")
    if spec.frames:
        report.resolution = spec.frames[0].size
        report.channels = "RGBA" if any(f.has_alpha for f in spec.frames) else "RGB"
        centers = rigid_inverse(np.stack([f.world_to_camera for f in spec.frames]))[:, :3, 3]
        report.camera_bounds = np.stack([centers.min(axis=0), centers.max(axis=0)])
    else:
        report.problems.append(f"{spec.root}: no usable images")
    if spec.points is not None:
        report.n_points = len(spec.points)
        if len(spec.points):
            report.point_bounds = np.percentile(spec.points, [1, 99], axis=0)
    if decode:
        for frame in spec.frames:
            try:
                read_image(frame.path)
            except DatasetError as error:
                report.problems.append(str(error))
    return report
