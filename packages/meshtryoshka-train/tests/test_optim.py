"""Per-parameter learning rates from the global step, and optimizer rebuilds."""

import pytest
import torch

from meshtryoshka_train.config import ModelConfig, OptimConfig
from meshtryoshka_train.optim import (
    add_parameters,
    build_optimizer,
    learning_rate,
    rebuild_optimizer,
    sdf_warmup,
    set_learning_rates,
)
from meshtryoshka_train.schedule import Schedule

OPTIM = OptimConfig(lr=0.01, sh_rest_lr_scale=0.05, lr_schedule=Schedule({0: 1.0, 100: 0.5}))
MODEL = ModelConfig(init_freeze_steps=10, init_blend_steps=4)


def test_learning_rates_follow_the_global_step_per_group():
    assert learning_rate("sh_dc", 99, OPTIM, MODEL) == pytest.approx(0.01)
    assert learning_rate("sh_dc", 100, OPTIM, MODEL) == pytest.approx(0.005)
    assert learning_rate("sh_band2", 100, OPTIM, MODEL) == pytest.approx(0.005 * 0.05)
    assert learning_rate("sdf", 5, OPTIM, MODEL) == 0.0  # frozen
    assert learning_rate("sdf", 200, OPTIM, MODEL) == pytest.approx(0.005)


def test_sdf_warmup_freezes_then_ramps_linearly():
    values = [sdf_warmup(step, MODEL) for step in range(8, 16)]
    assert values == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert sdf_warmup(0, ModelConfig()) == 1.0  # no freeze by default


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
    set_learning_rates(rebuilt, 150, OPTIM, MODEL)
    lrs = {g["name"]: g["lr"] for g in rebuilt.param_groups}
    assert lrs == pytest.approx({"sdf": 0.005, "sh_dc": 0.005, "sh_band1": 0.005 * 0.05})
    reset = rebuild_optimizer(optimizer, [("sdf", sdf)], [("sdf", new_sdf)], None, OPTIM)
    assert not reset.state
