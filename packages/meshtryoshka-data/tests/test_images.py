"""Area downscaling: premultiplied alpha, sizes, exact block means."""

import numpy as np
import pytest

from meshtryoshka_data import area_downscale


def test_rgb_block_mean():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    small = area_downscale(image, 2)
    expected = image.reshape(2, 2, 3, 2, 3).astype(float).mean(axis=(1, 3))
    assert small.shape == (2, 3, 3)
    assert np.abs(small - expected).max() <= 0.5 + 1e-9  # rounded to the nearest level


def test_compositing_commutes_with_premultiplied_downscale():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(8, 8, 4), dtype=np.uint8)
    rgba[:4, :, 3] = 0  # fully transparent half with random colours that must not bleed
    small = area_downscale(rgba, 4).astype(float) / 255
    big = rgba.astype(float) / 255
    for background in (0.0, 1.0, 0.3):
        composited_big = big[..., :3] * big[..., 3:] + background * (1 - big[..., 3:])
        expected = composited_big.reshape(2, 4, 2, 4, 3).mean(axis=(1, 3))
        got = small[..., :3] * small[..., 3:] + background * (1 - small[..., 3:])
        assert np.abs(got - expected).max() < 2.5 / 255


def test_crop_and_ceil_sizes():
    image = np.full((7, 10, 3), 200, dtype=np.uint8)
    assert area_downscale(image, 3).shape == (2, 3, 3)
    ceil = area_downscale(image, 3, crop=False)
    assert ceil.shape == (3, 4, 3) and (ceil == 200).all()  # partial blocks: mean of what exists


def test_bad_factor():
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        area_downscale(np.zeros((4, 4, 3), np.uint8), 0)
