"""Similarity transforms between a dataset's own coordinates and the normalized scene."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from ._geometry import rigid_inverse

__all__ = ["Similarity", "camera_pose_errors", "fit_normalization", "fit_similarity"]

# points in and out of a transform: a numpy array or a torch tensor, returned as the same type
Points = TypeVar("Points", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Similarity:
    """``x_normalized = scale * rotation @ (x_dataset - center)``.

    A similarity transform (rotation, uniform scale, translation) from the dataset's own
    ("world") coordinates to the normalized scene the model is trained in. Uniform scale
    keeps angles, so camera rotations stay orthonormal and world-to-camera matrices stay
    rigid after :meth:`transform_world_to_camera`.

    Attributes:
        center: float64 ``[3]``, the dataset-coordinate point that maps to the origin.
        scale: normalized units per dataset unit (``> 0``).
        rotation: float64 ``[3, 3]`` proper rotation (identity unless orientation was asked for).
    """

    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        center = np.asarray(self.center, dtype=np.float64).reshape(3)
        rotation = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {self.scale!r}")
        if np.abs(rotation.T @ rotation - np.eye(3)).max() > 1e-6 or np.linalg.det(rotation) < 0:
            raise ValueError("rotation must be a proper rotation matrix [3, 3]")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "scale", float(self.scale))

    def matrix(self) -> np.ndarray:
        """float64 ``[4, 4]`` mapping homogeneous dataset coordinates to normalized ones."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = -self.scale * self.rotation @ self.center
        return out

    def from_world(self, points: Points) -> Points:
        """Dataset coordinates -> normalized coordinates.

        Args:
            points: ``[..., 3]`` numpy array or torch tensor (any float dtype/device).

        Returns:
            The same type, dtype and device as ``points``; computed in float64.
        """
        return _apply(points, lambda p: self.scale * (p - self.center) @ self.rotation.T)

    def to_world(self, points: Points) -> Points:
        """Normalized coordinates -> dataset coordinates (the inverse of :meth:`from_world`).

        Use it to write meshes back in the dataset's original frame, e.g.
        ``vertices_colmap = dataset.to_world(vertices)``.
        """
        return _apply(points, lambda p: p @ self.rotation / self.scale + self.center)

    def transform_world_to_camera(self, world_to_camera: np.ndarray) -> np.ndarray:
        """Re-express rigid world-to-camera matrices ``[..., 4, 4]`` in normalized coordinates.

        The result is again rigid (rotation ``R @ rotation.T``, translation ``scale * t``):
        camera-space coordinates are scaled by ``scale`` along with the world, so depths are
        in normalized units and the projection of every point is unchanged.
        """
        w2c = np.asarray(world_to_camera, dtype=np.float64)
        out = np.zeros_like(w2c)
        r = w2c[..., :3, :3]
        t = w2c[..., :3, 3]
        out[..., :3, :3] = r @ self.rotation.T
        out[..., :3, 3] = self.scale * (np.einsum("...ij,j->...i", r, self.center) + t)
        out[..., 3, 3] = 1.0
        return out


def _apply(points: Points, function: Callable[[np.ndarray], np.ndarray]) -> Points:
    if isinstance(points, torch.Tensor):
        result = function(points.detach().cpu().double().numpy())
        return torch.as_tensor(result, dtype=points.dtype, device=points.device)
    array = np.asarray(points)
    if array.shape[-1:] != (3,):
        raise ValueError(f"points must be [..., 3], got shape {list(array.shape)}")
    return function(array.astype(np.float64)).astype(array.dtype, copy=False)


def fit_normalization(
    camera_centers: np.ndarray,
    *,
    scale_factor: float = 1.0,
    up: np.ndarray | None = None,
) -> Similarity:
    """The similarity that puts every camera centre in ``[-scale_factor, scale_factor]^3``.

    The axis-aligned box of the camera centres is centred on the origin and its longest
    side scaled to ``2 * scale_factor``, so at least one camera touches the boundary.

    Args:
        camera_centers: ``[N, 3]`` camera positions in dataset coordinates.
        scale_factor: half the side of the cube the cameras end up in (``> 0``).
        up: optional ``[3]`` direction (dataset coordinates) to rotate onto ``+z`` before
            fitting the box, e.g. the mean of the cameras' up vectors. Default: no rotation,
            the dataset's axes are kept.

    Raises:
        ValueError: fewer than 2 distinct camera centres (no extent to scale by).
    """
    centers = np.asarray(camera_centers, dtype=np.float64).reshape(-1, 3)
    if not scale_factor > 0:
        raise ValueError(f"scale_factor must be > 0, got {scale_factor!r}")
    rotation = np.eye(3) if up is None else _rotation_onto_z(np.asarray(up, dtype=np.float64))
    rotated = centers @ rotation.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    half_extent = float((high - low).max()) / 2.0
    if not half_extent > 0:
        raise ValueError(
            f"camera centres must span a non-zero extent to normalize, got {len(centers)} "
            "camera(s) at a single position"
        )
    return Similarity(
        center=rotation.T @ ((low + high) / 2.0),
        scale=scale_factor / half_extent,
        rotation=rotation,
    )


def _rotation_onto_z(direction: np.ndarray) -> np.ndarray:
    """Proper rotation [3, 3] taking the unit vector along ``direction`` to ``+z``."""
    a = direction / np.linalg.norm(direction)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(a, z)
    sine, cosine = np.linalg.norm(axis), float(a @ z)
    if sine < 1e-12:
        return np.eye(3) if cosine > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sine
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sine * skew + (1 - cosine) * skew @ skew


def fit_similarity(
    source: np.ndarray, target: np.ndarray, *, rotation: np.ndarray | None = None
) -> Similarity:
    """The similarity ``T`` minimizing ``sum |T.from_world(source) - target|^2``.

    Closed form (Umeyama, 1991): the centred point sets' cross-covariance gives the rotation
    by SVD (a reflection is ruled out), then the scale and the translation follow. Use it to
    compare two reconstructions of one scene, e.g. camera centres from structure from motion
    against the true ones: ``fit_similarity(true_centers, recovered_centers)``.

    Args:
        source, target: float ``[N, 3]`` corresponding points, ``N >= 3``, not all collinear
            (with a given ``rotation``: ``N >= 2``, not all coincident).
        rotation: a known rotation ``[3, 3]``; then only the scale and translation are fitted.

    Raises:
        ValueError: mismatched shapes, too few points, or a degenerate configuration.
    """
    a = np.asarray(source, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    needed = 3 if rotation is None else 2
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3 or len(a) < needed:
        raise ValueError(
            f"source and target must both be [N, 3] with N >= {needed}, got {list(a.shape)} "
            f"and {list(b.shape)}"
        )
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    a0, b0 = a - mean_a, b - mean_b
    variance = (a0 * a0).sum() / len(a)
    if rotation is None:
        u, sigma, vt = np.linalg.svd(b0.T @ a0 / len(a))
        if not variance > 0 or sigma[1] < 1e-12 * max(sigma[0], 1e-300):
            raise ValueError("the source points are degenerate (coincident or collinear)")
        sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
        rotation = u @ sign @ vt
        scale = float((sigma * np.diag(sign)).sum() / variance)
    else:
        rotation = np.asarray(rotation, dtype=np.float64)
        if not variance > 0:
            raise ValueError("the source points are degenerate (coincident)")
        scale = float((b0 * (a0 @ rotation.T)).sum() / len(a) / variance)
    if not scale > 0:
        raise ValueError(f"the best fit has scale {scale:.3g} <= 0: the point sets do not match")
    # target = scale * rotation @ source + t  and  from_world(x) = scale * rotation @ (x - c)
    translation = mean_b - scale * rotation @ mean_a
    return Similarity(center=-rotation.T @ translation / scale, scale=scale, rotation=rotation)


def camera_pose_errors(
    world_to_camera: np.ndarray, reference: np.ndarray
) -> tuple[Similarity, np.ndarray, np.ndarray]:
    """How far cameras are from reference cameras of the same images, up to a similarity.

    Structure from motion recovers poses only up to a similarity transform (its own origin,
    orientation and scale). This fits that transform, its rotation on the camera orientations
    (the rotation closest to every ``R_i^T R_ref_i``, which stays well defined when the
    centres lie near a line) and its scale and translation on the centres
    (:func:`fit_similarity`), re-expresses the reference cameras with it, and compares.

    Args:
        world_to_camera: float ``[N, 4, 4]`` OpenCV world-to-camera, e.g. recovered ones.
        reference: float ``[N, 4, 4]``, the same images' reference (true) cameras.

    Returns:
        ``(transform, rotation_error, center_error)``: the similarity from the reference
        frame to the other; float64 ``[N]`` angles in degrees between each camera's
        orientation and its aligned reference; float64 ``[N]`` distances between the camera
        centres in reference units.
    """
    cameras = np.asarray(world_to_camera, dtype=np.float64)
    truth = np.asarray(reference, dtype=np.float64)
    if cameras.shape != truth.shape or cameras.shape[1:] != (4, 4):
        raise ValueError(
            "world_to_camera and reference must both be [N, 4, 4], got "
            f"{list(cameras.shape)} and {list(truth.shape)}"
        )

    def centers(w2c):
        return rigid_inverse(w2c)[:, :3, 3]

    # R_i = R_ref_i @ rotation.T for every camera: the rotation closest to sum(R_i^T R_ref_i).
    u, _, vt = np.linalg.svd(np.einsum("nji,njk->ik", cameras[:, :3, :3], truth[:, :3, :3]))
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0]) @ vt
    transform = fit_similarity(centers(truth), centers(cameras), rotation=rotation)
    aligned = transform.transform_world_to_camera(truth)
    relative = np.einsum("nji,njk->nik", cameras[:, :3, :3], aligned[:, :3, :3])
    cosine = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    rotation_error = np.degrees(np.arccos(cosine))
    center_error = np.linalg.norm(transform.to_world(centers(cameras)) - centers(truth), axis=1)
    return transform, rotation_error, center_error
