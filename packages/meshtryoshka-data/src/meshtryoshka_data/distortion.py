"""Lens distortion: the COLMAP / OpenCV models, their inverse, and undistortion to a pinhole camera.

Coordinates are *normalized image coordinates*: a pixel ``(u, v)`` of a camera with focal
lengths ``fx, fy`` and principal point ``cx, cy`` is ``x = (u - cx) / fx``, ``y = (v - cy) / fy``
(pixel centres at ``+0.5``, as everywhere in Meshtryoshka). A distortion maps the ideal
(pinhole) coordinates of a ray to the coordinates where the lens puts it:

- ``"radial_tangential"`` (COLMAP SIMPLE_RADIAL, RADIAL, OPENCV; nerfstudio OPENCV), with
  ``r2 = x^2 + y^2`` and ``radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4``::

      x_d = x radial + 2 p1 x y + p2 (r2 + 2 x^2)
      y_d = y radial + p1 (r2 + 2 y^2) + 2 p2 x y

- ``"fisheye"`` (COLMAP and nerfstudio OPENCV_FISHEYE), with ``theta = atan(r)``::

      theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
      (x_d, y_d) = theta_d / r * (x, y)

:meth:`LensDistortion.undistort` inverts either by Newton's method (2-D for the first, 1-D in
``theta`` for the second). :class:`Undistorter` resamples images of a distorted camera into a
pinhole camera of the same size (bilinear, premultiplied alpha), cropped to the largest
centred window that has no blank pixels and keeps the pixel aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ._geometry import pixel_rays
from .colmap import CAMERA_MODELS

__all__ = [
    "UNDISTORTED_MODELS",
    "LensDistortion",
    "Undistorter",
    "colmap_camera_model",
]

#: COLMAP camera models the loaders undistort on load (the pinhole ones need nothing).
UNDISTORTED_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")
#: every COLMAP camera model the loaders take; the distorted ones are undistorted on load
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", *UNDISTORTED_MODELS)

_NEWTON_STEPS = 40
#: an inverse whose distortion lands further than this from its target (normalized units,
#: about 1e-6 pixels at f = 1000) did not converge and is reported as NaN
_NEWTON_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LensDistortion:
    """A lens distortion in normalized image coordinates (see the module docstring).

    Attributes:
        kind: ``"radial_tangential"`` or ``"fisheye"``.
        radial: ``(k1, k2, ...)``, at most 4 coefficients.
        tangential: ``(p1, p2)`` (radial_tangential only; zeros otherwise).
    """

    kind: Literal["radial_tangential", "fisheye"]
    radial: tuple[float, ...] = ()
    tangential: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        if self.kind not in ("radial_tangential", "fisheye"):
            raise ValueError(f"kind must be 'radial_tangential' or 'fisheye', got {self.kind!r}")
        radial = tuple(float(k) for k in self.radial)
        tangential = tuple(float(p) for p in self.tangential)
        if len(radial) > 4:
            raise ValueError(f"radial takes at most 4 coefficients, got {len(radial)}")
        if len(tangential) != 2:
            raise ValueError(f"tangential must be (p1, p2), got {self.tangential!r}")
        if self.kind == "fisheye" and any(tangential):
            raise ValueError(f"a fisheye distortion has no tangential terms, got {tangential}")
        if not np.isfinite([*radial, *tangential]).all():
            raise ValueError(f"distortion coefficients must be finite, got {radial} {tangential}")
        object.__setattr__(self, "radial", radial)
        object.__setattr__(self, "tangential", tangential)

    @property
    def is_identity(self) -> bool:
        """True when every coefficient is zero (the camera is a pinhole camera)."""
        return self.kind == "radial_tangential" and not any((*self.radial, *self.tangential))

    def describe(self) -> str:
        """The non-zero coefficients, e.g. ``"k1=-0.12, p2=0.001"`` (or ``"none"``)."""
        names = [f"k{i + 1}" for i in range(len(self.radial))] + ["p1", "p2"]
        parts = [
            f"{name}={value:.4g}"
            for name, value in zip(names, (*self.radial, *self.tangential), strict=True)
            if value
        ]
        return ", ".join(parts) or "none"

    # --- forward ------------------------------------------------------------------------------

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """Ideal normalized coordinates ``[..., 2]`` -> distorted ones ``[..., 2]`` (float64)."""
        xy = np.asarray(xy, dtype=np.float64)
        x, y = xy[..., 0], xy[..., 1]
        if self.kind == "fisheye":
            r = np.hypot(x, y)
            theta = np.arctan(r)
            # theta_d / r, with its limit 1 at the centre
            ratio = np.where(r > 1e-12, self._theta_d(theta) / np.maximum(r, 1e-12), 1.0)
            return xy * ratio[..., None]
        r2 = x * x + y * y
        p1, p2 = self.tangential
        radial = self._polynomial(r2)
        return np.stack(
            [
                x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
            ],
            axis=-1,
        )

    def _polynomial(self, s: np.ndarray) -> np.ndarray:
        """``1 + k1 s + k2 s^2 + ...`` (Horner)."""
        out = np.zeros_like(s)
        for k in reversed(self.radial):
            out = (out + k) * s
        return 1.0 + out

    def _polynomial_derivative(self, s: np.ndarray) -> np.ndarray:
        """d/ds of :meth:`_polynomial`: ``k1 + 2 k2 s + 3 k3 s^2 + ...``."""
        out = np.zeros_like(s)
        for power in range(len(self.radial), 0, -1):
            out = out * s + power * self.radial[power - 1]
        return out

    def _theta_d(self, theta: np.ndarray) -> np.ndarray:
        return theta * self._polynomial(theta * theta)

    # --- inverse ------------------------------------------------------------------------------

    def undistort(self, xy_distorted: np.ndarray) -> np.ndarray:
        """Distorted normalized coordinates ``[..., 2]`` -> ideal ones ``[..., 2]`` (float64).

        Newton's method started at the distorted point. Points the model cannot reach (past
        the radius where the distortion folds back, or a fisheye angle of 90 degrees or more)
        come back as NaN.
        """
        xy_d = np.asarray(xy_distorted, dtype=np.float64)
        if self.kind == "fisheye":
            return self._undistort_fisheye(xy_d)
        xy = xy_d.copy()
        p1, p2 = self.tangential
        for _ in range(_NEWTON_STEPS):
            x, y = xy[..., 0], xy[..., 1]
            r2 = x * x + y * y
            radial = self._polynomial(r2)
            slope = 2.0 * self._polynomial_derivative(r2)  # d radial / d x = slope * x
            residual = self.distort(xy) - xy_d
            j_xx = radial + slope * x * x + 2 * p1 * y + 6 * p2 * x
            j_yy = radial + slope * y * y + 6 * p1 * y + 2 * p2 * x
            j_xy = slope * x * y + 2 * p1 * x + 2 * p2 * y  # = d x_d / d y = d y_d / d x
            det = j_xx * j_yy - j_xy * j_xy
            safe = np.where(np.abs(det) > 1e-12, det, np.nan)
            step_x = (j_yy * residual[..., 0] - j_xy * residual[..., 1]) / safe
            step_y = (j_xx * residual[..., 1] - j_xy * residual[..., 0]) / safe
            xy = xy - np.stack([step_x, step_y], axis=-1)
        # A root where the map is not locally orientation-preserving lies past the fold.
        xy[~(det > 0) | ~(radial > 0)] = np.nan
        return self._only_converged(xy, xy_d)

    def _undistort_fisheye(self, xy_d: np.ndarray) -> np.ndarray:
        r_d = np.hypot(xy_d[..., 0], xy_d[..., 1])
        theta = r_d.copy()
        for _ in range(_NEWTON_STEPS):
            square = theta * theta
            derivative = self._polynomial(square) + 2 * square * self._polynomial_derivative(square)
            theta = theta - (self._theta_d(theta) - r_d) / np.where(
                derivative > 0, derivative, np.nan
            )
        square = theta * theta
        increasing = self._polynomial(square) + 2 * square * self._polynomial_derivative(square) > 0
        theta = np.where((theta >= 0) & (theta < np.pi / 2) & increasing, theta, np.nan)
        ratio = np.where(r_d > 1e-12, np.tan(theta) / np.maximum(r_d, 1e-12), 1.0)
        return self._only_converged(xy_d * ratio[..., None], xy_d)

    def _only_converged(self, xy: np.ndarray, xy_d: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            error = np.abs(self.distort(xy) - xy_d).max(axis=-1)
            bad = ~(error <= _NEWTON_TOLERANCE * np.maximum(1.0, np.abs(xy_d).max(axis=-1)))
        xy[bad] = np.nan
        return xy


def colmap_camera_model(model: str, params) -> tuple[np.ndarray, LensDistortion | None]:
    """Pixel intrinsics ``[3, 3]`` and distortion (None for pinhole models) of a COLMAP camera.

    Args:
        model: ``SIMPLE_PINHOLE``, ``PINHOLE`` or one of :data:`UNDISTORTED_MODELS`.
        params: COLMAP's parameter list for that model.

    Raises:
        ValueError: another model, or the wrong number of parameters.
    """
    if model not in SUPPORTED_MODELS:
        raise ValueError(f"model must be one of {', '.join(SUPPORTED_MODELS)}, got {model!r}")
    params = [float(p) for p in params]
    count = CAMERA_MODELS[model][1]
    if len(params) != count:
        raise ValueError(f"{model} takes {count} parameters, got {len(params)}")
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = params[0]
        cx, cy, extra = params[1], params[2], params[3:]
    else:
        fx, fy, cx, cy, extra = *params[:4], params[4:]
    intrinsics = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return intrinsics, None
    if model == "OPENCV":
        return intrinsics, LensDistortion("radial_tangential", extra[:2], extra[2:])
    if model == "OPENCV_FISHEYE":
        return intrinsics, LensDistortion("fisheye", extra)
    return intrinsics, LensDistortion("radial_tangential", extra)


class Undistorter:
    """Resamples images of one distorted camera into a pinhole camera of the same size.

    The pinhole camera keeps the pixel aspect ratio (``fx / fy``) and the image size and
    shows the largest window, centred in the valid region, whose every pixel sees the
    source image: there are no blank pixels (a little field of view is lost at the edges).

    Args:
        distortion: the lens distortion.
        intrinsics: float ``[3, 3]``, the distorted camera's pixel intrinsics at the size of
            the images to undistort.
        size: ``(width, height)`` of those images in pixels.

    Attributes:
        intrinsics: float64 ``[3, 3]``, the pinhole camera of the undistorted images.
        field_of_view: ``(x, y)``, the fraction of the source's field of view kept (as
            extents on the ideal image plane).

    Raises:
        ValueError: the distortion folds over so much that no valid window exists.
    """

    def __init__(self, distortion: LensDistortion, intrinsics: np.ndarray, size: tuple[int, int]):
        self.distortion = distortion
        self.source_intrinsics = np.asarray(intrinsics, dtype=np.float64)
        self.size = (int(size[0]), int(size[1]))
        self.intrinsics, self.field_of_view = self._pinhole_camera()
        self._map: tuple[np.ndarray, np.ndarray] | None = None  # taps [4, H*W], weights

    def summary(self) -> str:
        """What ``check`` notes, e.g. "has lens distortion (k1=-0.1): its images are
        undistorted on load into a 320x240 pinhole camera (...) that keeps 97% x 96% ..."."""
        k = self.intrinsics
        width, height = self.size
        return (
            f"has lens distortion ({self.distortion.describe()}): its images are undistorted "
            f"on load into a {width}x{height} pinhole camera (fx {k[0, 0]:.1f}, fy "
            f"{k[1, 1]:.1f}, cx {k[0, 2]:.1f}, cy {k[1, 2]:.1f}) that keeps "
            f"{self.field_of_view[0]:.0%} x {self.field_of_view[1]:.0%} of the field of view"
        )

    def _to_normalized(self, pixels: np.ndarray) -> np.ndarray:
        k = self.source_intrinsics
        return (pixels - k[:2, 2]) / np.array([k[0, 0], k[1, 1]])

    def _pinhole_camera(self) -> tuple[np.ndarray, tuple[float, float]]:
        width, height = self.size
        k = self.source_intrinsics
        count = 4 * max(width, height) + 1
        along_x, along_y = np.linspace(0, width, count), np.linspace(0, height, count)
        # The source image's outer edges (pixel corners, not centres) in ideal coordinates.
        edges = {
            name: self.distortion.undistort(self._to_normalized(np.stack(pixels, axis=-1)))
            for name, pixels in {
                "left": (np.zeros(count), along_y),
                "right": (np.full(count, width), along_y),
                "top": (along_x, np.zeros(count)),
                "bottom": (along_x, np.full(count, height)),
            }.items()
        }
        if any(np.isnan(edge).any() for edge in edges.values()):
            raise ValueError(
                f"the distortion ({self.distortion.kind}: {self.distortion.describe()}) cannot "
                f"be inverted at the border of the {width}x{height} image: the model folds over "
                "(wrong or extreme coefficients)"
            )
        x_min, x_max = edges["left"][:, 0].max(), edges["right"][:, 0].min()
        y_min, y_max = edges["top"][:, 1].max(), edges["bottom"][:, 1].min()
        if not (x_max > x_min and y_max > y_min):
            raise ValueError(
                f"the distortion ({self.distortion.describe()}) leaves no valid image region"
            )
        # The same factor on both focal lengths keeps the pixel aspect ratio.
        scale = max(width / (k[0, 0] * (x_max - x_min)), height / (k[1, 1] * (y_max - y_min)))
        fx, fy = k[0, 0] * scale, k[1, 1] * scale
        cx = width / 2 - fx * (x_min + x_max) / 2
        cy = height / 2 - fy * (y_min + y_max) / 2
        pinhole = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        # The window's ideal extent over the source's whole ideal extent, per axis.
        full_x = edges["right"][:, 0].max() - edges["left"][:, 0].min()
        full_y = edges["bottom"][:, 1].max() - edges["top"][:, 1].min()
        kept = (width / fx / full_x, height / fy / full_y)
        return pinhole, (float(kept[0]), float(kept[1]))

    def _sampling_map(self):
        """Per output pixel: the four source taps (flat indices) and their bilinear weights."""
        if self._map is None:
            width, height = self.size
            ideal = pixel_rays(self.intrinsics, width, height)[..., :2]
            distorted = self.distortion.distort(ideal)
            src = self.source_intrinsics
            # continuous source pixel -> array index space (pixel centres on integers)
            sx = np.clip(distorted[..., 0] * src[0, 0] + src[0, 2] - 0.5, 0, width - 1)
            sy = np.clip(distorted[..., 1] * src[1, 1] + src[1, 2] - 0.5, 0, height - 1)
            x0 = np.minimum(np.floor(sx).astype(np.int64), width - 2 if width > 1 else 0)
            y0 = np.minimum(np.floor(sy).astype(np.int64), height - 2 if height > 1 else 0)
            x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
            fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
            taps = np.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1])
            weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
            self._map = (taps.reshape(4, -1), weights.reshape(4, -1, 1).astype(np.float32))
        return self._map

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Undistort a uint8 ``[H, W, C]`` image (``C`` 3, or 4 with straight alpha).

        RGBA is interpolated with premultiplied alpha, so transparent pixels do not bleed
        their colour into the edges. Returns uint8 ``[H, W, C]``.
        """
        width, height = self.size
        if image.ndim != 3 or image.shape[:2] != (height, width):
            raise ValueError(
                f"image must be [{height}, {width}, C] (the size this undistorter was made "
                f"for), got {list(image.shape)}"
            )
        taps, weights = self._sampling_map()
        pixels = image.reshape(-1, image.shape[2]).astype(np.float32)
        alpha = image.shape[2] == 4
        if alpha:
            pixels[:, :3] *= pixels[:, 3:] / 255.0
        out = sum(pixels[taps[i]] * weights[i] for i in range(4))
        if alpha:
            a = out[:, 3:]
            out[:, :3] = np.where(a > 0, out[:, :3] * 255.0 / np.maximum(a, 1e-6), 0.0)
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return out.reshape(height, width, image.shape[2])
