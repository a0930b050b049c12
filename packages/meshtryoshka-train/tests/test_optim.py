"""Per-parameter learning rates from the global step, and optimizer rebuilds."""

import pytest
import torch

from meshtryoshka_train.config import ModelConfig, OptimConfig
from meshtryoshka_train.optim import (
    add_parameters,
    build_optimizer,
    learning_rate,
    lr_decay,
    rebuild_optimizer,
    sdf_warmup,
    set_learning_rates,
)
from meshtryoshka_train.schedule import Schedule

OPTIM = OptimConfig(lr=0.01, sh_rest_lr_scale=0.05, lr_schedule=Schedule({0: 1.0, 100: 0.5}))
MODEL = ModelConfig(init_freeze_steps=10, init_blend_steps=4)


def test_learning_rates_follow_the_global_step_per_group():
    assert learning_rate("sh_dc", 99, OPTIM, MODEL, 1000) == pytest.approx(0.01)
    assert learning_rate("sh_dc", 100, OPTIM, MODEL, 1000) == pytest.approx(0.005)
    assert learning_rate("sh_band2", 100, OPTIM, MODEL, 1000) == pytest.approx(0.005 * 0.05)
    assert learning_rate("sdf", 5, OPTIM, MODEL, 1000) == 0.0  # frozen
    assert learning_rate("sdf", 200, OPTIM, MODEL, 1000) == pytest.approx(0.005)


def test_lr_decay_is_exponential_over_the_last_part_of_the_run():
    optim = OptimConfig(lr=0.01, lr_decay_start=0.5, lr_decay_final=0.1)
    total = 201  # last step 200, the decay starts after step 100.5
    assert lr_decay(0, total, optim) == 1.0
    assert lr_decay(100, total, optim) == 1.0
    assert lr_decay(200, total, optim) == pytest.approx(0.1)
    halfway = lr_decay(150, total, optim)
    assert halfway == pytest.approx(0.1 ** ((150 - 100.5) / (200 - 100.5)))
    values = [lr_decay(step, total, optim) for step in range(101, 201)]
    assert all(b < a for a, b in zip(values, values[1:], strict=False))  # strictly decreasing
    assert learning_rate("sh_dc", 200, optim, MODEL, total) == pytest.approx(0.001)
    assert lr_decay(200, total, OptimConfig()) == 1.0  # off by default (the original's)


def test_sdf_warmup_freezes_then_ramps_linearly():
    values = [sdf_warmup(step, MODEL) for step in range(8, 16)]
    assert values == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert sdf_warmup(0, ModelConfig()) == 1.0  # no freeze by default
    fading = ModelConfig(initializer="point_cloud", init_freeze_steps=10, init_blend_steps=4)
    assert sdf_warmup(5, fading) == 1.0  # a fading prior: the blend weight freezes instead
    baked = ModelConfig(initializer="point_cloud", point_cloud_init="baked", init_freeze_steps=10)
    assert sdf_warmup(5, baked) == 0.0


def test_a_rebuilt_optimizer_keeps_the_schedule_and_the_step_count():
    sdf = torch.zeros(4, requires_grad=True)
    dc = torch.zeros(4, 1, 3, requires_grad=True)
    optimizer = build_optimizer([("sdf", sdf), ("sh_dc", dc)], OPTIM)
    for _ in range(3):
        optimizer.zero_grad()
        (sdf.sum() + dc.sum()).backward()
        optimizer.step()
    band = torch.zeros(4, 3, 3, requires_grad=True)
    add_parameters(optimizer, [("sh_band1", band)], OPTIM)
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(0.01 * 0.05)
    new_sdf = torch.zeros(6, requires_grad=True)
    new_dc = torch.zeros(6, 1, 3, requires_grad=True)
    new_band = torch.zeros(6, 3, 3, requires_grad=True)
    moved = {
        "sdf": (torch.ones(6), torch.full((6,), -1.0)),  # extrapolation undershoot
        "sh_dc": (torch.ones(6, 1, 3), torch.ones(6, 1, 3)),
    }
    rebuilt = rebuild_optimizer(
        optimizer,
        [("sdf", sdf), ("sh_dc", dc), ("sh_band1", band)],
        [("sdf", new_sdf), ("sh_dc", new_dc), ("sh_band1", new_band)],
        moved,
        OPTIM,
    )
    state = rebuilt.state[new_sdf]
    assert float(state["step"]) == 3.0
    assert torch.equal(state["exp_avg"], torch.ones(6))
    assert float(state["exp_avg_sq"].min()) == 0.0  # clamped, so sqrt stays real
    assert new_band not in rebuilt.state  # never stepped: fresh state
    set_learning_rates(rebuilt, 150, OPTIM, MODEL, 1000)
    lrs = {g["name"]: g["lr"] for g in rebuilt.param_groups}
    assert lrs == pytest.approx({"sdf": 0.005, "sh_dc": 0.005, "sh_band1": 0.005 * 0.05})
    reset = rebuild_optimizer(optimizer, [("sdf", sdf)], [("sdf", new_sdf)], None, OPTIM)
    assert not reset.state
