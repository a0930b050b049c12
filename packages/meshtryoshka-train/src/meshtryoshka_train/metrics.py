"""Image quality metrics: PSNR and SSIM on float images in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape or prediction.dim() != 4:
        raise ValueError(
            "prediction and target must both be [B, C, H, W] of the same shape, got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    prediction, target: [B, C, H, W] float in [0, 1]; the prediction is clipped to [0, 1] first.
    Returns [B]: -10 log10(mean squared error) of each image (inf for identical images).
    """
    _check_pair(prediction, target)
    mse = (prediction.clamp(0, 1) - target).square().flatten(1).mean(1)
    return -10.0 * torch.log10(mse)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), data range 1.

    prediction, target: [B, C, H, W] float in [0, 1] (the prediction is clipped), H, W >= window.
    Local statistics use a separable Gaussian window (size 11, sigma 1.5) over the "valid" area
    (no padding) with the unbiased (N-1) covariance over the window's effective sample size, as
    scikit-image's `structural_similarity(gaussian_weights=True)` does; the SSIM map is averaged
    over pixels and channels. Returns [B].
    """
    _check_pair(prediction, target)
    if min(prediction.shape[-2:]) < window:
        raise ValueError(f"images must be at least {window}x{window}, got {prediction.shape[-2:]}")
    x, y = prediction.clamp(0, 1), target
    channels = x.shape[1]
    g = _gaussian_window(window, sigma, x.dtype, x.device)
    kernel_h = g.view(1, 1, window, 1).expand(channels, 1, window, 1)
    kernel_w = g.view(1, 1, 1, window).expand(channels, 1, 1, window)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(image, kernel_h, groups=channels), kernel_w, groups=channels)

    # Unbiased covariance over a weighted window: scale by n / (n - 1), n = window * window.
    n = window * window
    unbias = n / (n - 1)
    mu_x, mu_y = blur(x), blur(y)
    var_x = unbias * (blur(x * x) - mu_x**2)
    var_y = unbias * (blur(y * y) - mu_y**2)
    cov = unbias * (blur(x * y) - mu_x * mu_y)
    c1, c2 = k1**2, k2**2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).flatten(1).mean(1)
