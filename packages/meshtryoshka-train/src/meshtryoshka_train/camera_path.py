"""Camera paths for videos of a trained run: an orbit around the scene, or the test cameras.

Cameras follow the project's convention: OpenCV world-to-camera ``[F, 4, 4]`` (+x right, +y
down, +z forward) in normalized scene coordinates, pixel intrinsics ``[F, 3, 3]`` with pixel
centres at +0.5. ``render_path`` writes one PNG per frame and an animated GIF preview.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .evaluate import to_pixels
from .rendering import extract_for_mode, extract_opaque, render_extraction
from .run import Snapshot

__all__ = [
    "PREVIEW_SIDE",
    "CameraPath",
    "RenderResult",
    "focus_point",
    "look_at",
    "orbit_cameras",
    "parse_mode",
    "parse_size",
    "render_path",
    "scale_intrinsics",
]


PREVIEW_SIDE = 512
"""Longest side, in pixels, of the GIF preview (frames larger than this are shrunk for it)."""


@dataclass
class CameraPath:
    """Cameras to render: float32 ``world_to_camera [F, 4, 4]``, ``intrinsics [F, 3, 3]``,
    ``image_size (H, W)`` and a file stem per frame."""

    world_to_camera: Tensor
    intrinsics: Tensor
    image_size: tuple[int, int]
    names: list[str]


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV world-to-camera matrices of cameras at `eye` looking at `target`.

    Args:
        eye: ``[F, 3]`` camera centres; target: ``[3]`` or ``[F, 3]``; up: ``[3]`` world up
            (the image's -y axis is its component orthogonal to the viewing direction).
    Returns:
        float64 ``[F, 4, 4]``, rows of the rotation: right, down, forward.
    Raises:
        ValueError: a camera sits on its target or looks along `up`.
    """
    eye, target, up = (torch.as_tensor(t, dtype=torch.float64) for t in (eye, target, up))
    forward = target - eye
    distance = forward.norm(dim=-1, keepdim=True)
    if bool((distance <= 1e-12).any()):
        raise ValueError("eye must differ from target for every camera")
    forward = forward / distance
    right = torch.linalg.cross(forward, up.expand_as(forward), dim=-1)
    length = right.norm(dim=-1, keepdim=True)
    if bool((length <= 1e-9).any()):
        raise ValueError("up must not be parallel to a viewing direction")
    right = right / length
    down = torch.linalg.cross(forward, right, dim=-1)
    out = torch.zeros(eye.shape[0], 4, 4, dtype=torch.float64)
    out[:, :3, :3] = torch.stack([right, down, forward], dim=1)
    out[:, :3, 3] = -torch.einsum("fij,fj->fi", out[:, :3, :3], eye)
    out[:, 3, 3] = 1.0
    return out


def camera_centers(world_to_camera: Tensor) -> Tensor:
    """``[N, 3]`` camera positions of OpenCV ``world_to_camera [N, 4, 4]`` (same dtype)."""
    rotation = world_to_camera[:, :3, :3]
    return -torch.einsum("nji,nj->ni", rotation, world_to_camera[:, :3, 3])


def focus_point(world_to_camera: Tensor) -> Tensor:
    """float64 ``[3]``: the point nearest (least squares) to the optical axes of the cameras.

    For cameras that look at a common object (360-degree captures, the Blender scenes) this is
    the object's centre. When the axes are (nearly) parallel, as in forward-facing captures,
    there is no such point and the origin of the normalized scene is returned.
    """
    w2c = world_to_camera.double().cpu()
    centers = camera_centers(w2c)
    forward = w2c[:, 2, :3]
    projector = torch.eye(3, dtype=torch.float64) - forward[:, :, None] * forward[:, None, :]
    system = projector.sum(0)
    rhs = torch.einsum("nij,nj->i", projector, centers)
    eigen = torch.linalg.eigvalsh(system)
    if eigen[0] <= 1e-3 * eigen[-1]:
        return torch.zeros(3, dtype=torch.float64)
    return torch.linalg.solve(system, rhs)


def scale_intrinsics(intrinsics: Tensor, source: tuple[int, int], target: tuple[int, int]):
    """Intrinsics ``[..., 3, 3]`` of images of size `source` (H, W) re-rendered at `target`.

    The horizontal field of view and the pixel aspect are kept: fx, fy and cx scale by
    ``s = W_target / W_source`` and the principal point keeps its offset (times s) from the
    image centre, so a different aspect ratio crops or extends the view vertically, centred.
    """
    out = intrinsics.clone()
    s = target[1] / source[1]
    out[..., 0, 0] = intrinsics[..., 0, 0] * s
    out[..., 1, 1] = intrinsics[..., 1, 1] * s
    out[..., 0, 2] = intrinsics[..., 0, 2] * s
    out[..., 1, 2] = (intrinsics[..., 1, 2] - source[0] / 2) * s + target[0] / 2
    return out


def orbit_cameras(
    world_to_camera: Tensor,
    intrinsics: Tensor,
    image_size: tuple[int, int],
    frames: int,
    size: tuple[int, int] | None = None,
) -> CameraPath:
    """`frames` cameras on a circle around the scene, each looking at its centre.

    From the training cameras (``world_to_camera [N, 4, 4]`` OpenCV, ``intrinsics [N, 3, 3]``
    for images of ``image_size (H, W)``):

    - centre: `focus_point` of the cameras; up: the mean of the cameras' up vectors (their
      -y axes in world space), normalized;
    - the circle: perpendicular to up, at the mean camera height above the centre (along up),
      with the radius that puts each camera at the mean camera distance from the centre (at
      least 5% of that distance, so the view never points straight along up);
    - frame 0 sits at the azimuth of the first training camera; the frames go once around
      (counter-clockwise seen from above), evenly spaced, the last one short of the first;
    - intrinsics: the mean training focal lengths scaled to `size` (H, W; default
      `image_size`) as in `scale_intrinsics` (same horizontal field of view), principal
      point at the image centre, so the scene centre projects to the middle of every frame.

    Returns a `CameraPath` (float32, CPU) with names ``frame_0000``, ...
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    size = tuple(image_size) if size is None else tuple(size)
    w2c = world_to_camera.double().cpu()
    center = focus_point(w2c)
    eyes = camera_centers(w2c)
    up = -w2c[:, 1, :3].mean(0)
    if up.norm() < 1e-6:
        raise ValueError("the training cameras have no common up direction")
    up = up / up.norm()
    offsets = eyes - center
    height = float((offsets @ up).mean())
    distance = float(offsets.norm(dim=-1).mean())
    radius = max(math.sqrt(max(distance**2 - height**2, 0.0)), 0.05 * distance)
    horizontal = offsets[0] - (offsets[0] @ up) * up
    if horizontal.norm() < 1e-6 * max(distance, 1e-12):  # the first camera is on the axis
        helper = torch.eye(3, dtype=torch.float64)[int(torch.argmin(up.abs()))]
        horizontal = helper - (helper @ up) * up
    e1 = horizontal / horizontal.norm()
    e2 = torch.linalg.cross(up, e1, dim=0)
    angles = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    ring = torch.cos(angles)[:, None] * e1 + torch.sin(angles)[:, None] * e2
    path_eyes = center + height * up + radius * ring
    matrices = look_at(path_eyes, center, up)
    mean_k = intrinsics.double().cpu().mean(0)
    k = scale_intrinsics(mean_k, tuple(image_size), size)
    k[0, 2], k[1, 2] = size[1] / 2, size[0] / 2
    return CameraPath(
        world_to_camera=matrices.float(),
        intrinsics=k.float().expand(frames, 3, 3).contiguous(),
        image_size=(int(size[0]), int(size[1])),
        names=[f"frame_{i:04d}" for i in range(frames)],
    )


def parse_mode(mode: str) -> tuple[str, int | None]:
    """``"layered"`` | ``"surface"`` | ``"shell:K"`` -> (kind, K or None)."""
    if mode in ("layered", "surface"):
        return mode, None
    match = re.fullmatch(r"shell:(\d+)", mode)
    if match is None:
        raise ValueError(f"mode must be 'layered', 'surface' or 'shell:K' (K >= 0), got {mode!r}")
    return "shell", int(match.group(1))


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (H, W)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(f"size must be WxH with positive integers, e.g. 640x480, got {text!r}")
    return int(match.group(2)), int(match.group(1))


def _test_path(dataset, frames: int | None, size: tuple[int, int] | None) -> CameraPath:
    indices = dataset.splits["test"]
    if len(indices) == 0:
        raise ValueError("the dataset has no test cameras; use the orbit path")
    if frames is not None:
        indices = indices[:frames]
    source = (dataset.height, dataset.width)
    target = source if size is None else size
    return CameraPath(
        world_to_camera=dataset.world_to_camera[indices].float().cpu(),
        intrinsics=scale_intrinsics(dataset.intrinsics[indices].float().cpu(), source, target),
        image_size=target,
        names=[
            f"{position:04d}_{Path(dataset.names[int(i)]).stem}"
            for position, i in enumerate(indices)
        ],
    )


@dataclass
class RenderResult:
    folder: Path
    frames: list[Path]
    gif: Path
    faces: int


@torch.no_grad()
def render_path(
    run: Snapshot,
    *,
    path: str = "orbit",
    frames: int | None = None,
    mode: str = "layered",
    size: tuple[int, int] | None = None,
    output: str | Path | None = None,
    fps: float = 24.0,
) -> RenderResult:
    """Render `run` along a camera path to PNG frames plus an animated GIF.

    Args:
        path: ``"orbit"`` (`orbit_cameras` from the training cameras) or ``"test"`` (the test
            split's cameras, in order).
        frames: orbit frames (default 60); for ``"test"``, at most this many cameras (default
            all).
        mode: ``"layered"`` (every shell of the step, as evaluated), ``"surface"`` (the zero
            level set, opaque) or ``"shell:K"`` (shell K of the step alone, opaque; 0 is the
            outermost).
        size: (H, W) of the frames; default the dataset's image size.
        output: the folder; default ``RUN_DIR/renders/<path>_<mode>_step_XXXXXXX``. Frames
            of this path's naming pattern left there by an earlier render are removed.
        fps: frame rate of the GIF (a preview: at most `PREVIEW_SIDE` pixels on its longer side).
    Frames use ``model.eval_ssaa``, ``model.eval_near`` and the dataset's background (white for
    a random one). Returns the folder, the PNG paths, the GIF path and the face count.
    """
    from PIL import Image

    kind, number = parse_mode(mode)
    if path not in ("orbit", "test"):
        raise ValueError(f"path must be 'orbit' or 'test', got {path!r}")
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    model = run.config.model
    shell = None if number is None else run.shell(number, what=f"mode shell:{number}: shell")
    dataset = run.dataset
    if path == "orbit":
        train = dataset.splits["train"]
        cameras = orbit_cameras(
            dataset.world_to_camera[train],
            dataset.intrinsics[train],
            (dataset.height, dataset.width),
            60 if frames is None else frames,
            size,
        )
    else:
        cameras = _test_path(dataset, frames, size)
    if shell is not None:
        extraction = extract_opaque(run.field, model, shell.level)
    else:
        extraction = extract_for_mode(run.field, model, run.step, kind)
    alpha_max = None if kind == "layered" else 1.0
    folder = Path(output) if output is not None else run.files.render_dir(path, mode, run.step)
    folder.mkdir(parents=True, exist_ok=True)
    device = run.field.device
    background = torch.tensor([dataset.eval_background], dtype=torch.float32, device=device)
    written, images = [], []
    for index, stem in enumerate(cameras.names):
        image, _ = render_extraction(
            extraction,
            cameras.world_to_camera[index : index + 1].to(device),
            cameras.intrinsics[index : index + 1].to(device),
            cameras.image_size,
            background,
            model,
            ssaa=model.eval_ssaa,
            near=model.eval_near,
            alpha_max=alpha_max,
        )
        target = folder / f"{stem}.png"
        preview = Image.fromarray(to_pixels(image[0]))
        preview.save(target)
        written.append(target)
        shrink = PREVIEW_SIDE / max(preview.size)
        if shrink < 1:
            small = (max(1, round(preview.width * shrink)), max(1, round(preview.height * shrink)))
            preview = preview.resize(small, Image.Resampling.LANCZOS)
        images.append(preview)
    # Frames of an earlier, longer render into the same folder would mix with these.
    pattern = "frame_[0-9][0-9][0-9][0-9].png" if path == "orbit" else "[0-9][0-9][0-9][0-9]_*.png"
    for stale in set(folder.glob(pattern)) - set(written):
        stale.unlink()
    gif = folder / f"{path}_{mode.replace(':', '')}.gif"
    images[0].save(
        gif,
        save_all=True,
        append_images=images[1:],
        duration=max(int(round(1000 / fps)), 20),
        loop=0,
    )
    return RenderResult(folder=folder, frames=written, gif=gif, faces=extraction.num_faces)
