"""Image files -> uint8 arrays, with one clear error for unreadable files, and area downscaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError

__all__ = ["area_downscale", "read_image", "read_image_info"]

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def read_image_info(path: Path) -> tuple[int, int, bool]:
    """``(width, height, has_alpha)`` of an image file, from its header only (no decoding)."""
    try:
        with Image.open(path) as image:
            return image.size[0], image.size[1], _has_alpha(image)
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"corrupt or unreadable image ({error})") from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def read_image(path: Path, *, reduce: int = 1) -> np.ndarray:
    """Decode an image file to uint8 ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA, straight alpha).

    Args:
        path: a PNG or JPEG (any format Pillow reads). Palette and grey images are
            expanded to RGB(A); an alpha channel is kept when the file has one.
        reduce: integer factor to shrink by with a box (area) average, done by Pillow's
            ``Image.reduce``: the output is ``ceil(W / reduce) x ceil(H / reduce)``, the last
            row/column averaging the pixels that exist. RGBA images are averaged in
            premultiplied space (see :func:`area_downscale`).

    Raises:
        DatasetError: the file is missing, is not an image, or is truncated/corrupt.
    """
    try:
        with Image.open(path) as image:
            image.load()  # forces a full decode: truncated files fail here
            has_alpha = _has_alpha(image)
            image = image.convert("RGBA" if has_alpha else "RGB")
            if reduce > 1 and not has_alpha:
                image = image.reduce(reduce)
            array = np.array(image, dtype=np.uint8)  # a writable copy
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DatasetError(path, f"corrupt or unreadable image ({error})") from None
    if reduce > 1 and has_alpha:
        array = area_downscale(array, reduce, crop=False)
    return array


def area_downscale(image: np.ndarray, factor: int, *, crop: bool = True) -> np.ndarray:
    """Shrink a uint8 image ``[H, W, C]`` by an integer factor, averaging each block.

    RGBA (``C == 4``) is averaged with premultiplied alpha and converted back to straight
    alpha, so compositing the small image on any background equals averaging the
    composited large image (up to uint8 rounding) and transparent pixels do not bleed
    their colour into the edges.

    Args:
        image: uint8 ``[H, W, 3]`` or ``[H, W, 4]``.
        factor: integer ``>= 1``.
        crop: if True, drop the last ``H % factor`` rows and ``W % factor`` columns, so the
            output is ``floor(H / factor) x floor(W / factor)`` and a pinhole camera's
            intrinsics scale exactly by ``1 / factor``. If False, the partial blocks at the
            bottom/right are averaged over the pixels they have (``ceil`` sizes).

    Returns:
        uint8 ``[H', W', C]``.
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if factor == 1:
        return image
    height, width, channels = image.shape
    pixels = image.astype(np.float64) / 255.0
    if channels == 4:
        pixels[..., :3] *= pixels[..., 3:]
    if crop:
        pixels = pixels[: height - height % factor, : width - width % factor]
    out_h, out_w = -(-pixels.shape[0] // factor), -(-pixels.shape[1] // factor)
    padded = np.zeros((out_h * factor, out_w * factor, channels))
    weight = np.zeros((out_h * factor, out_w * factor, 1))
    padded[: pixels.shape[0], : pixels.shape[1]] = pixels
    weight[: pixels.shape[0], : pixels.shape[1]] = 1.0
    blocks = padded.reshape(out_h, factor, out_w, factor, channels).sum(axis=(1, 3))
    counts = weight.reshape(out_h, factor, out_w, factor, 1).sum(axis=(1, 3))
    mean = blocks / counts
    if channels == 4:
        alpha = mean[..., 3:]
        mean[..., :3] = np.where(alpha > 0, mean[..., :3] / np.maximum(alpha, 1e-12), 0.0)
    return np.clip(np.rint(mean * 255.0), 0, 255).astype(np.uint8)
