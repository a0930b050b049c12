"""The training loss (DESIGN.md §1, "Training"), term by term with the configured weights."""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from .config import LossConfig

__all__ = ["LOSS_TERMS", "compute_losses"]

LOSS_TERMS = ("rgb", "eikonal_pos", "eikonal_neg", "curvature", "sdf_binary", "sh", "total")
"""The keys of `compute_losses`'s result, in its order."""


def compute_losses(
    weights: LossConfig,
    prediction: Tensor,
    target: Tensor,
    shell_sdf: Tensor,
    shell_sh: Tensor,
    regularizers: dict[str, Tensor] | None,
    *,
    image_share: float = 1.0,
    field_terms: bool = True,
) -> dict[str, Tensor]:
    """Every weighted loss term and their sum ``total``.

    Args:
        weights: the loss weights.
        prediction, target: float32 ``[B, 3, H, W]`` rendered and true images.
        shell_sdf: ``[N]`` signed distance at the extracted shell vertices.
        shell_sh: ``[N, n_sh, 3]`` SH coefficients at the shell vertices.
        regularizers: ``eikonal_pos``, ``eikonal_neg``, ``curvature`` means of the grid sdf
            (`Field.regularizers`), or None when all three weights are 0.
        image_share: the fraction of the step's batch that `prediction` is (data-parallel
            training: this rank's images / the global batch); ``rgb`` is multiplied by it, so
            the ranks' ``rgb`` terms (and gradients) add up to the whole batch's.
        field_terms: False leaves out every term that does not depend on the images (the
            grid and shell-vertex terms: 0), as on the ranks other than 0, which alone
            count them once.
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
    if image_share != 1.0:
        terms["rgb"] = terms["rgb"] * image_share
    if not field_terms:
        regularizers = None
        weights = replace(weights, sdf_binary=0.0, sh=0.0)
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
