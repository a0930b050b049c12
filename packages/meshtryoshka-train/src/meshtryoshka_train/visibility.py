"""Which points the training cameras see: the filter that keeps unseen voxels unoccupied."""

from __future__ import annotations

import torch


@torch.no_grad()
def points_in_view(
    points: torch.Tensor,
    world_to_camera: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
    near: float,
    chunk: int = 1 << 20,
) -> torch.Tensor:
    """For each point and camera, whether the point projects inside the image in front of `near`.

    points: [P, 3] world positions. world_to_camera: [C, 4, 4] OpenCV. intrinsics: [C, 3, 3]
    pixels. image_size: (H, W). A point is in view of a camera when its camera-space depth is
    >= near, it is finite, and its projection lies in [0, W] x [0, H].
    Returns bool [P, C].
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {tuple(points.shape)}")
    height, width = image_size
    rotation = world_to_camera[:, :3, :3].to(points.dtype)
    translation = world_to_camera[:, :3, 3].to(points.dtype)
    k = intrinsics.to(points.dtype)
    result = torch.empty(points.shape[0], world_to_camera.shape[0], dtype=torch.bool)
    result = result.to(points.device)
    for start in range(0, points.shape[0], chunk):
        p = points[start : start + chunk]
        camera = torch.einsum("cij,pj->pci", rotation, p) + translation  # [p, C, 3]
        z = camera[..., 2]
        pixel = torch.einsum("cij,pcj->pci", k, camera)
        x, y = pixel[..., 0] / z, pixel[..., 1] / z
        inside = (z >= near) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
        result[start : start + chunk] = inside & torch.isfinite(x) & torch.isfinite(y)
    return result


@torch.no_grad()
def voxels_in_view(corner_in_view: torch.Tensor, threshold: int = 1) -> torch.Tensor:
    """A voxel is seen when all 8 of its corners are in view of at least `threshold` cameras.

    corner_in_view: bool [N, 8, C] (from `points_in_view` gathered at each voxel's corners).
    Returns bool [N].
    """
    if corner_in_view.dim() != 3 or corner_in_view.shape[1] != 8:
        raise ValueError(
            f"corner_in_view must be bool [N, 8, C], got {tuple(corner_in_view.shape)}"
        )
    return corner_in_view.all(1).sum(1) >= threshold
