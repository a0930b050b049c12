"""Contraction: inverse pairs, continuity, far bound, bounded scenes."""

import math

import pytest
import torch

from meshtryoshka_train.contraction import Contraction

UNBOUNDED = Contraction(center_radius=0.6, center_extent=0.5, arm_ratio=1.5)
BOUNDED = Contraction(center_radius=1.5, center_extent=1.0, arm_ratio=0.0)


@pytest.mark.parametrize("contraction", [UNBOUNDED, BOUNDED], ids=["unbounded", "bounded"])
def test_round_trip(contraction):
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(2000, 3, generator=generator, dtype=torch.float64)
    direction /= direction.abs().amax(-1, keepdim=True)
    limit = contraction.far_bound if contraction.arm_ratio else contraction.center_radius
    radius = torch.rand(2000, 1, generator=generator, dtype=torch.float64) * limit * 0.999
    world = direction * radius
    contracted = contraction.contract(world)
    assert contracted.min() >= 0 and contracted.max() <= 1
    assert torch.allclose(contraction.uncontract(contracted), world, atol=1e-9, rtol=1e-9)


def test_centre_is_linear_and_continuous_at_its_edge():
    inside = torch.tensor([[0.3, -0.6, 0.1]], dtype=torch.float64)
    assert torch.allclose(UNBOUNDED.contract(inside), inside * 0.5 / 0.6 * 0.5 + 0.5)
    edge = torch.tensor([[0.6, 0.2, -0.1]], dtype=torch.float64)
    below = UNBOUNDED.contract(edge * (1 - 1e-9))
    above = UNBOUNDED.contract(edge * (1 + 1e-9))
    assert torch.allclose(below, above, atol=1e-8)
    assert UNBOUNDED.contract(edge)[0, 0].item() == pytest.approx(0.75)


def test_far_bound_maps_to_the_cube_faces():
    far = torch.tensor([[UNBOUNDED.far_bound, 0.0, 0.0], [0.0, 0.0, -UNBOUNDED.far_bound]])
    assert UNBOUNDED.far_bound == pytest.approx(0.6 * math.exp(3.0))
    contracted = UNBOUNDED.contract(far.double())
    assert contracted[0, 0].item() == pytest.approx(1.0)
    assert contracted[1, 2].item() == pytest.approx(0.0, abs=1e-6)


def test_radius_is_monotonic_along_a_ray():
    t = torch.linspace(0, UNBOUNDED.far_bound, 500, dtype=torch.float64)
    points = torch.stack([t, 0.5 * t, -0.25 * t], -1)
    x = UNBOUNDED.contract(points)[:, 0]
    assert torch.all(x[1:] > x[:-1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"center_radius": 0.0}, "center_radius"),
        ({"center_extent": 1.5}, "center_extent"),
        ({"arm_ratio": -1.0}, "arm_ratio"),
        ({"center_extent": 0.5, "arm_ratio": 0.0}, "needs center_extent = 1"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Contraction(**kwargs)
