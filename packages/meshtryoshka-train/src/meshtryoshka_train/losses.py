"""The training loss (DESIGN.md §1, "Training"), term by term with the configured weights."""

from __future__ import annotations

from torch import Tensor

from .config import LossConfig

__all__ = ["compute_losses"]


def compute_losses(
    weights: LossConfig,
    prediction: Tensor,
    target: Tensor,
    shell_sdf: Tensor,
    shell_sh: Tensor,
    regularizers: dict[str, Tensor] | None,
) -> dict[str, Tensor]:
    """Every weighted loss term and their sum ``total``.

    Args:
        weights: the loss weights.
        prediction, target: float32 ``[B, 3, H, W]`` rendered and true images.
        shell_sdf: ``[N]`` signed distance at the extracted shell vertices.
        shell_sh: ``[N, n_sh, 3]`` SH coefficients at the shell vertices.
        regularizers: ``eikonal_pos``, ``eikonal_neg``, ``curvature`` means of the grid sdf
            (`Field.regularizers`), or None when all three weights are 0.
    Returns:
        0-dim tensors: ``rgb = w (L1 + L2) / 2`` (means over every pixel and channel),
        ``eikonal_pos``, ``eikonal_neg``, ``curvature`` (weighted grid terms),
        ``sdf_binary = -w mean|s_v|`` over shell vertices, ``sh = w mean(c^2)`` over the shell
        vertices' SH coefficients above degree 0 (exactly 0 at degree 0 or with no vertices,
        never NaN), and ``total``.
    """
    difference = prediction - target
    zero = prediction.new_zeros(())
    terms = {
        "rgb": weights.rgb * 0.5 * (difference.abs().mean() + difference.square().mean()),
    }
    for name in ("eikonal_pos", "eikonal_neg", "curvature"):
        weight = getattr(weights, name)
        terms[name] = zero if regularizers is None or weight == 0 else weight * regularizers[name]
    has_vertices = shell_sdf.numel() > 0
    terms["sdf_binary"] = (
        -weights.sdf_binary * shell_sdf.abs().mean()
        if weights.sdf_binary != 0 and has_vertices
        else zero
    )
    terms["sh"] = (
        weights.sh * shell_sh[:, 1:].square().mean()
        if weights.sh != 0 and has_vertices and shell_sh.shape[1] > 1
        else zero
    )
    terms["total"] = sum(terms.values(), zero)
    return terms
