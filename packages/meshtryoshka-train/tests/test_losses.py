"""The loss terms, one by one, with their weights."""

import math

import pytest
import torch

from meshtryoshka_train.config import LossConfig
from meshtryoshka_train.losses import compute_losses

WEIGHTS = LossConfig(
    rgb=16.0, eikonal_pos=2.0, eikonal_neg=1.0, curvature=0.1, sdf_binary=0.02, sh=1.0
)


def test_every_term_is_the_weighted_formula():
    prediction = torch.zeros(1, 3, 2, 2)
    target = torch.full((1, 3, 2, 2), 0.5)
    target[0, 0, 0, 0] = 1.0  # one element off by 1, eleven by 0.5
    sdf = torch.tensor([0.01, -0.03, 0.0])
    sh = torch.zeros(3, 4, 3)
    sh[:, 1:] = 2.0
    regularizers = {
        "eikonal_pos": torch.tensor(0.5),
        "eikonal_neg": torch.tensor(0.25),
        "curvature": torch.tensor(3.0),
    }
    terms = compute_losses(WEIGHTS, prediction, target, sdf, sh, regularizers)
    l1 = (1.0 + 11 * 0.5) / 12
    l2 = (1.0 + 11 * 0.25) / 12
    assert float(terms["rgb"]) == pytest.approx(16.0 * 0.5 * (l1 + l2))
    assert float(terms["eikonal_pos"]) == pytest.approx(1.0)
    assert float(terms["eikonal_neg"]) == pytest.approx(0.25)
    assert float(terms["curvature"]) == pytest.approx(0.3)
    assert float(terms["sdf_binary"]) == pytest.approx(-0.02 * 0.04 / 3)
    assert float(terms["sh"]) == pytest.approx(4.0)  # mean of 2^2 over the rest bands only
    parts = sum(float(v) for k, v in terms.items() if k != "total")
    assert float(terms["total"]) == pytest.approx(parts)


def test_sh_term_is_zero_not_nan_at_degree_zero_and_without_vertices():
    # ORIGINAL.md §6 item 11: the mean of an empty tensor made the logged loss NaN.
    image = torch.rand(1, 3, 4, 4)
    for sdf, sh in ((torch.zeros(5), torch.ones(5, 1, 3)), (torch.zeros(0), torch.ones(0, 4, 3))):
        terms = compute_losses(WEIGHTS, image, image, sdf, sh, None)
        assert float(terms["sh"]) == 0.0 and float(terms["sdf_binary"]) == 0.0
        assert math.isfinite(float(terms["total"]))


def test_sdf_binary_pushes_shell_values_away_from_zero():
    sdf = torch.tensor([0.005, -0.005], requires_grad=True)
    terms = compute_losses(WEIGHTS, torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1), sdf,
                           torch.zeros(2, 1, 3), None)  # fmt: skip
    terms["total"].backward()
    assert sdf.grad[0] < 0 < sdf.grad[1]  # gradient descent grows |s|


def test_zero_weights_skip_the_regularizers():
    weights = LossConfig(eikonal_pos=0.0, eikonal_neg=0.0, curvature=0.0)
    image = torch.rand(1, 3, 2, 2)
    terms = compute_losses(weights, image, image, torch.zeros(1), torch.zeros(1, 1, 3), None)
    assert float(terms["curvature"]) == 0.0 and float(terms["total"]) == 0.0
