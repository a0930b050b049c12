"""The in-memory dataset: uint8 images, cameras, splits, points and the normalization."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ._geometry import rigid_inverse
from ._scene import SceneSpec
from .errors import DatasetError
from .images import area_downscale, read_image
from .normalization import Points, Similarity, fit_normalization

__all__ = ["BACKGROUNDS", "Batch", "Dataset"]

Background = Literal["white", "black", "random"]
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
}


@dataclass(frozen=True)
class Batch:
    """Images and cameras for one step, all on the dataset's device.

    Attributes:
        images: float32 ``[B, 3, H, W]`` in ``[0, 1]``, RGB, already composited on ``background``.
        alpha: float32 ``[B, 1, H, W]`` in ``[0, 1]`` when the dataset has alpha, else None.
        background: float32 ``[B, 3]``, the colour each image was composited on.
        world_to_camera: float32 ``[B, 4, 4]``, OpenCV, normalized scene coordinates.
        intrinsics: float32 ``[B, 3, 3]`` in pixels, pixel centres at ``+0.5``.
        indices: int64 ``[B]``, the images' indices in the dataset.
    """

    images: torch.Tensor
    alpha: torch.Tensor | None
    background: torch.Tensor
    world_to_camera: torch.Tensor
    intrinsics: torch.Tensor
    indices: torch.Tensor

    @property
    def height(self) -> int:
        return self.images.shape[-2]

    @property
    def width(self) -> int:
        return self.images.shape[-1]


@dataclass(eq=False)
class Dataset:
    """A loaded scene, as built by :func:`load_blender`, :func:`load_colmap`,
    :func:`load_nerfstudio` or :func:`load_dataset`.

    Attributes:
        format: ``"blender"``, ``"colmap"`` or ``"nerfstudio"``.
        root: the dataset folder.
        names: ``N`` image names (relative paths), in index order.
        images: uint8 ``[N, H, W, C]`` on ``device``; ``C`` is 4 (straight RGBA) when any file
            has alpha, else 3. Kept as uint8 (4x smaller than float32) until a batch is made.
        world_to_camera: float32 ``[N, 4, 4]`` on ``device``, OpenCV (+x right, +y down,
            +z forward), rigid, in normalized scene coordinates.
        intrinsics: float32 ``[N, 3, 3]`` on ``device``, pixels, for the images as loaded
            (pinhole: images of distorted cameras are undistorted on load).
        splits: ``{"train", "val", "test"}`` -> int64 ``[n]`` CPU tensors of image indices.
        background: ``"white"``, ``"black"`` or ``"random"`` (a random colour per image and
            step in :meth:`sample_batch`; evaluation then uses white).
        points: float32 ``[P, 3]`` on ``device``, normalized coordinates (COLMAP's sparse
            cloud, or nerfstudio's ``ply_file_path``), or None.
        point_colors: uint8 ``[P, 3]`` on ``device``, or None.
        bounds: float32 ``[2, 3]`` (min, max) of the camera centres, normalized coordinates.
        transform: the :class:`Similarity` from dataset coordinates to normalized ones.
        scale_factor: the half-side of the cube the cameras were fitted into (or the plain
            scale applied when the loader did not normalize).
        camera_model: the source camera model, e.g. ``"PINHOLE"``, ``"OPENCV"`` (undistorted on
            load) or ``"camera_angle_x"``.
    """

    format: str
    root: Path
    names: list[str]
    images: torch.Tensor
    world_to_camera: torch.Tensor
    intrinsics: torch.Tensor
    splits: dict[str, torch.Tensor]
    background: str
    points: torch.Tensor | None
    point_colors: torch.Tensor | None
    bounds: torch.Tensor
    transform: Similarity
    scale_factor: float
    camera_model: str

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        splits = ", ".join(f"{name} {len(indices)}" for name, indices in self.splits.items())
        points = "none" if self.points is None else len(self.points)
        return (
            f"Dataset({self.format} {str(self.root)!r}: {n} images {w}x{h}x{c} uint8 on "
            f"{self.device}, {splits}, camera {self.camera_model}, points {points}, "
            f"background {self.background}, scale_factor {self.scale_factor})"
        )

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    @property
    def has_alpha(self) -> bool:
        return self.images.shape[3] == 4

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def camera_centers(self) -> torch.Tensor:
        """float32 ``[N, 3]`` camera positions in normalized coordinates."""
        rotation = self.world_to_camera[:, :3, :3]
        return -torch.einsum("nji,nj->ni", rotation, self.world_to_camera[:, :3, 3])

    def to_world(self, points: Points) -> Points:
        """Normalized coordinates -> the dataset's original coordinates (``[..., 3]``)."""
        return self.transform.to_world(points)

    def from_world(self, points: Points) -> Points:
        """The dataset's original coordinates -> normalized coordinates (``[..., 3]``)."""
        return self.transform.from_world(points)

    def to(self, device: str | torch.device) -> Dataset:
        """A copy with every tensor except the split indices on ``device``."""
        move = {
            name: getattr(self, name).to(device)
            for name in ("images", "world_to_camera", "intrinsics", "bounds")
        }
        for name in ("points", "point_colors"):
            value = getattr(self, name)
            move[name] = None if value is None else value.to(device)
        return Dataset(**{**self.__dict__, **move})

    def sample_batch(
        self,
        batch_size: int,
        generator: torch.Generator,
        *,
        split: str = "train",
        part: slice | None = None,
    ) -> Batch:
        """``batch_size`` distinct random images of ``split`` (training).

        Args:
            batch_size: number of images, ``1 <= batch_size <= len(split)``.
            generator: a seeded CPU ``torch.Generator``; it alone decides the images and,
                for ``background="random"``, the background colours (uniform in [0,1]^3).
            split: which split to draw from.
            part: only these images of the drawn batch (a data-parallel rank's shard; the
                generator advances as for the whole batch, so every rank draws the same one).
        """
        pool = self._split(split)
        if not 1 <= batch_size <= len(pool):
            raise ValueError(
                f"batch_size must be in [1, {len(pool)}] for split {split!r}, got {batch_size}"
            )
        chosen = pool[torch.randperm(len(pool), generator=generator)[:batch_size]]
        if self.background == "random":
            background = torch.rand((batch_size, 3), generator=generator)
        else:
            background = torch.tensor(BACKGROUNDS[self.background]).expand(batch_size, 3)
        if part is not None:
            chosen, background = chosen[part], background[part]
        return self._batch(chosen, background)

    def iterate(
        self, split: str = "test", *, batch_size: int = 1, background: str | None = None
    ) -> Iterator[Batch]:
        """Batches of ``split`` in index order (evaluation); the last one may be smaller.

        The background is ``background`` if given (``"white"`` or ``"black"``), else the
        dataset's, with ``"random"`` replaced by white so evaluation is deterministic.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if background and background not in BACKGROUNDS:
            raise ValueError(f"background must be 'white' or 'black', got {background!r}")
        colour = BACKGROUNDS[background] if background else self.eval_background
        pool = self._split(split)
        for start in range(0, len(pool), batch_size):
            chosen = pool[start : start + batch_size]
            yield self._batch(chosen, torch.tensor(colour).expand(len(chosen), 3))

    @property
    def eval_background(self) -> tuple[float, float, float]:
        """RGB in [0, 1] of evaluation and renders: the dataset's background, white for
        ``"random"`` (so they are deterministic)."""
        return BACKGROUNDS["white" if self.background == "random" else self.background]

    def _split(self, split: str) -> torch.Tensor:
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        return self.splits[split]

    def _batch(self, indices: torch.Tensor, background: torch.Tensor) -> Batch:
        device = self.device
        on_device = indices.to(device)
        pixels = self.images[on_device].permute(0, 3, 1, 2).float().div_(255.0)
        background = background.to(device=device, dtype=torch.float32)
        alpha = None
        rgb = pixels[:, :3]
        if self.has_alpha:
            alpha = pixels[:, 3:]
            rgb = rgb * alpha + background[:, :, None, None] * (1.0 - alpha)
        return Batch(
            images=rgb.contiguous(),
            alpha=alpha,
            background=background,
            world_to_camera=self.world_to_camera[on_device],
            intrinsics=self.intrinsics[on_device],
            indices=on_device,
        )


def build_dataset(
    spec: SceneSpec,
    *,
    background: str,
    device: str | torch.device,
    normalize: bool,
    scale_factor: float,
    orient: bool = False,
) -> Dataset:
    """Decode every image of a parsed scene and assemble the :class:`Dataset`.

    ``orient`` rotates the cameras' mean up direction onto ``+z`` before normalizing.

    Raises:
        DatasetError: the first problem found while parsing or decoding; nothing is returned.
    """
    if background not in ("white", "black", "random"):
        raise ValueError(f"background must be 'white', 'black' or 'random', got {background!r}")
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be > 0, got {scale_factor!r}")
    spec.raise_first_problem()
    if not spec.frames:
        raise DatasetError(spec.root, "the dataset has no images")
    width, height = spec.frames[0].size
    channels = 4 if any(frame.has_alpha for frame in spec.frames) else 3
    images = torch.empty((len(spec.frames), height, width, channels), dtype=torch.uint8)
    for index, frame in enumerate(spec.frames):
        if frame.crop:
            pixels = area_downscale(read_image(frame.path), frame.reduce, crop=True)
        else:
            pixels = read_image(frame.path, reduce=frame.reduce)
        if pixels.shape[:2] != (height, width):
            raise DatasetError(
                frame.path,
                f"decoded to {pixels.shape[1]}x{pixels.shape[0]}, expected {width}x{height}",
            )
        if frame.undistorter is not None:
            pixels = frame.undistorter(pixels)
        images[index, ..., : pixels.shape[2]] = torch.from_numpy(pixels)
        if pixels.shape[2] < channels:
            images[index, ..., 3] = 255

    w2c_raw = np.stack([frame.world_to_camera for frame in spec.frames])
    centers_raw = rigid_inverse(w2c_raw)[:, :3, 3]
    # OpenCV cameras look along +z with +y down: the world-space up of each camera is minus
    # the second row of its rotation.
    up = -w2c_raw[:, 1, :3].mean(axis=0) if orient else None
    if normalize:
        try:
            transform = fit_normalization(centers_raw, scale_factor=scale_factor, up=up)
        except ValueError as error:
            raise DatasetError(spec.root, f"cannot normalize: {error}") from None
    else:
        transform = Similarity(scale=scale_factor)
    w2c = transform.transform_world_to_camera(w2c_raw)
    centers = transform.from_world(centers_raw)
    bounds = np.stack([centers.min(axis=0), centers.max(axis=0)])
    splits = {
        split: torch.tensor(
            [i for i, frame in enumerate(spec.frames) if frame.split == split], dtype=torch.int64
        )
        for split in ("train", "val", "test")
    }
    if spec.val_is_test:
        splits["val"] = splits["test"].clone()
    points = colors = None
    if spec.points is not None:
        points = torch.from_numpy(transform.from_world(spec.points)).float().to(device)
        colors = torch.from_numpy(spec.point_colors).to(device)
    return Dataset(
        format=spec.format,
        root=spec.root,
        names=[frame.name for frame in spec.frames],
        images=images.to(device),
        world_to_camera=torch.from_numpy(w2c).float().to(device),
        intrinsics=torch.from_numpy(np.stack([f.intrinsics for f in spec.frames]))
        .float()
        .to(device),
        splits=splits,
        background=background,
        points=points,
        point_colors=colors,
        bounds=torch.from_numpy(bounds).float().to(device),
        transform=transform,
        scale_factor=float(scale_factor),
        camera_model=spec.camera_model,
    )
