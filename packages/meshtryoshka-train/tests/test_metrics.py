"""PSNR and SSIM against their definitions."""

import math

import numpy as np
import pytest
import torch

from meshtryoshka_train.metrics import psnr, ssim


def test_psnr_of_a_known_error():
    target = torch.zeros(2, 3, 8, 8)
    prediction = target + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    assert psnr(prediction, target).tolist() == pytest.approx([20.0, 40.0], rel=1e-5)


def test_psnr_clips_the_prediction():
    target = torch.ones(1, 3, 4, 4)
    assert math.isinf(psnr(target + 5.0, target).item())


def naive_ssim(x: np.ndarray, y: np.ndarray, window=11, sigma=1.5) -> float:
    """SSIM of two [C, H, W] float64 images, straight from the definition, pixel by pixel."""
    coords = np.arange(window) - (window - 1) / 2
    g1 = np.exp(-(coords**2) / (2 * sigma**2))
    w = np.outer(g1, g1)
    w /= w.sum()
    n = window * window
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - window + 1):
            for j in range(x.shape[2] - window + 1):
                a = x[c, i : i + window, j : j + window]
                b = y[c, i : i + window, j : j + window]
                ma, mb = (w * a).sum(), (w * b).sum()
                va = n / (n - 1) * ((w * a * a).sum() - ma * ma)
                vb = n / (n - 1) * ((w * b * b).sum() - mb * mb)
                cov = n / (n - 1) * ((w * a * b).sum() - ma * mb)
                num = (2 * ma * mb + c1) * (2 * cov + c2)
                values.append(num / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_definition():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 16, 18, generator=generator, dtype=torch.float64)
    noisy = target + 0.1 * torch.randn(target.shape, generator=generator, dtype=torch.float64)
    noisy = noisy.clamp(0, 1)
    result = ssim(noisy, target)
    for b in range(2):
        expected = naive_ssim(noisy[b].numpy(), target[b].numpy())
        assert result[b].item() == pytest.approx(expected, abs=1e-10)


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-6)
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    assert ssim(noisy, image).item() < 0.9


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_is_refused(metric):
    with pytest.raises(ValueError, match="same shape"):
        metric(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))


def test_ssim_needs_images_at_least_as_large_as_the_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
