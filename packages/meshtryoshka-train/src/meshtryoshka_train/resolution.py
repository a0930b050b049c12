"""Grid resolution matched to the images: how large a voxel looks in the training views.

`voxel_pixel_sizes` measures, for voxels given by their world-space centres and edge lengths,
the largest size in pixels they project to over the training cameras that see them (the
closest view). The trainer stops refining the grid (``model.min_voxel_pixels``) once the
median voxel of the next resolution would be smaller than that many training pixels: finer
voxels could not change what any training image shows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .visibility import in_view, project

__all__ = ["voxel_pixel_sizes"]


@torch.no_grad()
def voxel_pixel_sizes(
    centers: Tensor,
    edge_lengths: Tensor,
    world_to_camera: Tensor,
    intrinsics: Tensor,
    image_size: tuple[int, int],
    near: float,
    chunk: int = 1 << 16,
) -> Tensor:
    """The largest projected size, in pixels, of each voxel over the cameras that see it.

    Args:
        centers: float ``[N, 3]`` voxel centres in world space.
        edge_lengths: float ``[N]`` world-space size of each voxel (its longest edge).
        world_to_camera: ``[C, 4, 4]`` OpenCV extrinsics; intrinsics ``[C, 3, 3]`` in pixels of
            images of ``image_size = (H, W)``; scale both for supersampling.
        near: a camera sees a centre whose depth is at least `near` and whose projection lies
            inside the image.
    Returns:
        float ``[N]``: ``max over seeing cameras of f * edge / depth`` (``f`` the mean of the
        two focal lengths), 0 for a voxel that no camera sees.
    """
    if centers.dim() != 2 or centers.shape[1] != 3:
        raise ValueError(f"centers must be [N, 3], got {tuple(centers.shape)}")
    if edge_lengths.shape != centers.shape[:1]:
        raise ValueError(
            f"edge_lengths must be [{centers.shape[0]}], got {tuple(edge_lengths.shape)}"
        )
    focal = 0.5 * (intrinsics[:, 0, 0] + intrinsics[:, 1, 1]).to(centers)  # [C]
    out = torch.zeros(centers.shape[0], dtype=centers.dtype, device=centers.device)
    for start in range(0, centers.shape[0], chunk):
        x, y, z = project(centers[start : start + chunk], world_to_camera, intrinsics)
        seen = in_view(x, y, z, image_size, near)
        size = focal * edge_lengths[start : start + chunk, None] / z.clamp(min=near)
        out[start : start + chunk] = torch.where(seen, size, torch.zeros_like(size)).amax(1)
    return out
