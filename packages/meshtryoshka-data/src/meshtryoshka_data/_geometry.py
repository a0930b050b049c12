"""Camera-geometry helpers shared by the loaders and the synthetic-scene writer (float64 numpy)."""

from __future__ import annotations

import numpy as np

# Right-multiplying an OpenGL camera-to-world (+x right, +y up, -z forward) by this matrix
# flips the camera's y and z axes, giving an OpenCV camera-to-world (+x right, +y down, +z
# forward). The matrix is its own inverse, so it also converts back.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def rigid_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 transforms ``[..., 4, 4]`` (rotation block assumed orthonormal)."""
    rotation = matrix[..., :3, :3]
    translation = matrix[..., :3, 3]
    out = np.zeros_like(matrix)
    out[..., :3, :3] = np.swapaxes(rotation, -1, -2)
    out[..., :3, 3] = -np.einsum("...ji,...j->...i", rotation, translation)
    out[..., 3, 3] = 1.0
    return out


def rigidity_error(matrix: np.ndarray) -> float:
    """Largest deviation of a 4x4 matrix from a proper rigid transform (0 for a perfect one)."""
    rotation = matrix[:3, :3]
    orthogonality = np.abs(rotation.T @ rotation - np.eye(3)).max()
    last_row = np.abs(matrix[3] - np.array([0.0, 0.0, 0.0, 1.0])).max()
    return float(max(orthogonality, last_row, abs(np.linalg.det(rotation) - 1.0)))


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] from a quaternion ``(w, x, y, z)`` (normalized here first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` from a rotation matrix [3, 3].

    Uses the largest of the four squared components as the pivot, which keeps the
    division well conditioned for every rotation.
    """
    r = np.asarray(rotation, dtype=np.float64)
    squares = np.array(
        [
            1 + r[0, 0] + r[1, 1] + r[2, 2],
            1 + r[0, 0] - r[1, 1] - r[2, 2],
            1 - r[0, 0] + r[1, 1] - r[2, 2],
            1 - r[0, 0] - r[1, 1] + r[2, 2],
        ]
    )
    pivot = int(np.argmax(squares))
    s = 2.0 * np.sqrt(max(squares[pivot], 1e-300))  # 4 * |component|
    if pivot == 0:
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif pivot == 1:
        q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif pivot == 2:
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
    else:
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    q = np.array(q)
    return q if q[0] >= 0 else -q


def look_at_world_to_camera(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera [4, 4] for a camera at ``eye`` looking at ``target``.

    The camera's -y axis (image up) is as close to ``up`` as possible.
    """
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rotation
    w2c[:3, 3] = -rotation @ eye
    return w2c


def project(points: np.ndarray, world_to_camera: np.ndarray, intrinsics: np.ndarray):
    """Project world points [P, 3] with one camera; returns (pixels [P, 2], depth [P]).

    Pixel coordinates are continuous with pixel centres at ``+0.5`` (the centre of the
    top-left pixel is ``(0.5, 0.5)``).
    """
    cam = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    depth = cam[:, 2]
    uv = cam[:, :2] / depth[:, None]
    pixels = uv * np.array([intrinsics[0, 0], intrinsics[1, 1]]) + intrinsics[:2, 2]
    return pixels, depth


def pixel_rays(intrinsics: np.ndarray, width: int, height: int, distortion=None) -> np.ndarray:
    """Camera-space ray directions ``[H, W, 3]`` (``z = 1``) through every pixel centre.

    Pixel centres are at ``+0.5``. With a ``distortion`` (a
    :class:`~meshtryoshka_data.LensDistortion`) the camera has that lens: each pixel's ideal
    coordinates are found by undistorting it (NaN where the lens model cannot reach).
    """
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xy = np.stack(
        [(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1]],
        axis=-1,
    )
    if distortion is not None:
        xy = distortion.undistort(xy)
    return np.concatenate([xy, np.ones_like(u)[..., None]], axis=-1)
