"""Which points the training cameras see: the filter that keeps unseen voxels unoccupied."""

from __future__ import annotations

import torch


def project(
    points: torch.Tensor, world_to_camera: torch.Tensor, intrinsics: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel coordinates and depth of ``points [P, 3]`` in every camera: (x, y, z), each
    ``[P, C]`` (OpenCV ``world_to_camera [C, 4, 4]``, pixel ``intrinsics [C, 3, 3]``)."""
    rotation = world_to_camera[:, :3, :3].to(points.dtype)
    translation = world_to_camera[:, :3, 3].to(points.dtype)
    camera = torch.einsum("cij,pj->pci", rotation, points) + translation  # [P, C, 3]
    z = camera[..., 2]
    pixel = torch.einsum("cij,pcj->pci", intrinsics.to(points.dtype), camera)
    return pixel[..., 0] / z, pixel[..., 1] / z, z


def in_view(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, image_size, near: float):
    """Where a `project`ed point is in front of `near` and inside the ``(H, W)`` image."""
    height, width = image_size
    inside = (z >= near) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    return inside & torch.isfinite(x) & torch.isfinite(y)


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
    result = torch.empty(points.shape[0], world_to_camera.shape[0], dtype=torch.bool)
    result = result.to(points.device)
    for start in range(0, points.shape[0], chunk):
        x, y, z = project(points[start : start + chunk], world_to_camera, intrinsics)
        result[start : start + chunk] = in_view(x, y, z, image_size, near)
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


_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.uint8)


# The arguments of `points_in_view` (a deliberate look-alike), for cameras packed in a batch.
@torch.no_grad()
def packed_points_in_view(
    points: torch.Tensor,
    world_to_camera: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
    near: float,
    chunk: int = 1 << 18,
) -> torch.Tensor:
    """`points_in_view` with the cameras packed 8 per byte: uint8 ``[P, ceil(C / 8)]``.

    Bit ``c % 8`` (least significant first) of byte ``c // 8`` is camera ``c``. Memory is
    ``C / 8`` bytes per point instead of ``C``; points are processed in chunks.
    """
    cameras = world_to_camera.shape[0]
    width = (cameras + 7) // 8
    shifts = torch.arange(8, device=points.device, dtype=torch.uint8)
    out = torch.empty(points.shape[0], width, dtype=torch.uint8, device=points.device)
    for start in range(0, points.shape[0], chunk):
        seen = points_in_view(
            points[start : start + chunk], world_to_camera, intrinsics, image_size, near
        )
        padded = torch.zeros(seen.shape[0], width * 8, dtype=torch.uint8, device=points.device)
        padded[:, :cameras] = seen.to(torch.uint8)
        out[start : start + chunk] = (padded.view(-1, width, 8) << shifts).sum(-1).to(torch.uint8)
    return out


@torch.no_grad()
def grid_voxels_in_view(
    grid,
    to_world,
    world_to_camera: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
    near: float,
    min_cameras: int = 1,
    chunk: int = 1 << 18,
) -> torch.Tensor:
    """Which voxels of a `SparseGrid` some `min_cameras` training cameras see entirely.

    grid: a `slang_marching_cubes.SparseGrid`. to_world: maps ``[V, 3]`` grid unit
    coordinates to world positions. A voxel is seen by a camera when all 8 of its corners are
    in view (`points_in_view`); it passes when at least `min_cameras` cameras see it.
    Returns bool ``[grid.num_voxels]``.
    """
    device = grid.device
    result = torch.zeros(grid.num_voxels, dtype=torch.bool, device=device)
    if grid.num_voxels == 0:
        return result
    corner_bits = packed_points_in_view(
        to_world(grid.vertex_positions()),
        world_to_camera.to(device),
        intrinsics.to(device),
        image_size,
        near,
    )
    popcount = _POPCOUNT.to(device)
    for start in range(0, grid.num_voxels, chunk):
        corners = grid.voxel_corners(start, start + chunk).long()  # [n, 8]
        common = corner_bits[corners[:, 0]]
        for c in range(1, 8):
            common = common & corner_bits[corners[:, c]]
        count = popcount[common.long()].sum(-1, dtype=torch.int64)
        result[start : start + chunk] = count >= min_cameras
    return result
