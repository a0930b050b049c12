"""Adam with one parameter group per learnable tensor, learning rates set from the GLOBAL step.

Each group carries its ``name`` (``sdf``, ``sh_dc``, ``sh_band1``, ...) and its ``scale``
(1 for the signed distance and the SH degree-0 coefficients, ``optim.sh_rest_lr_scale`` for
the higher bands). `set_learning_rates` writes ``lr = optim.lr * scale * lr_schedule.at(step)
* lr_decay(step)`` (times the signed distance's initial freeze/ramp) into every group at every
step, so the schedule depends on the global step only and survives rebuilding the optimizer (the
original's LambdaLR restarted at every subdivision and never decayed, ORIGINAL.md §6 item 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .config import ModelConfig, OptimConfig

__all__ = [
    "add_parameters",
    "build_optimizer",
    "learning_rate",
    "lr_decay",
    "moments",
    "rebuild_optimizer",
    "sdf_warmup",
    "set_learning_rates",
]


def _group(name: str, tensor: Tensor, optim: OptimConfig) -> dict:
    scale = optim.sh_rest_lr_scale if name.startswith("sh_band") else 1.0
    return {"params": [tensor], "name": name, "scale": scale, "lr": optim.lr * scale}


def build_optimizer(named: Sequence[tuple[str, Tensor]], optim: OptimConfig) -> torch.optim.Adam:
    """Adam (betas 0.9/0.999, eps 1e-8) with one group per ``(name, tensor)``."""
    return torch.optim.Adam([_group(name, t, optim) for name, t in named])


def add_parameters(
    optimizer: torch.optim.Optimizer, named: Sequence[tuple[str, Tensor]], optim: OptimConfig
) -> None:
    """New groups for new tensors (e.g. a new SH band); they start with fresh Adam state."""
    for name, tensor in named:
        optimizer.add_param_group(_group(name, tensor, optim))


def sdf_warmup(step: int, model: ModelConfig) -> float:
    """Learning-rate factor of the signed distance: 0 while frozen, then a linear ramp to 1.

    Steps ``0 .. init_freeze_steps - 1`` give 0; the next ``init_blend_steps`` steps ramp up
    as ``(step - freeze + 1) / (blend + 1)``; afterwards 1. Always 1 for a fading point-cloud
    prior (``model.point_cloud_init = "fade"``: the blend weight does that work).
    """
    if model.initializer == "point_cloud" and model.point_cloud_init == "fade":
        return 1.0
    freeze, blend = model.init_freeze_steps, model.init_blend_steps
    if step < freeze:
        return 0.0
    if step < freeze + blend:
        return (step - freeze + 1) / (blend + 1)
    return 1.0


def lr_decay(step: int, total_steps: int, optim: OptimConfig) -> float:
    """The end-of-training decay: 1 until ``lr_decay_start * total_steps``, then exponential
    down to ``lr_decay_final`` at the last step (``total_steps - 1``)."""
    start = optim.lr_decay_start * total_steps
    last = total_steps - 1
    if optim.lr_decay_final == 1.0 or step <= start or last <= start:
        return 1.0
    return optim.lr_decay_final ** min(1.0, (step - start) / (last - start))


def learning_rate(
    name: str, step: int, optim: OptimConfig, model: ModelConfig, total_steps: int
) -> float:
    """The learning rate of parameter group `name` at global `step` of `total_steps`."""
    scale = optim.sh_rest_lr_scale if name.startswith("sh_band") else 1.0
    rate = optim.lr * scale * optim.lr_schedule.at(step) * lr_decay(step, total_steps, optim)
    return rate * sdf_warmup(step, model) if name == "sdf" else rate


def set_learning_rates(
    optimizer: torch.optim.Optimizer,
    step: int,
    optim: OptimConfig,
    model: ModelConfig,
    total_steps: int,
) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(group["name"], step, optim, model, total_steps)


def moments(optimizer: torch.optim.Optimizer, tensor: Tensor) -> tuple[Tensor, Tensor] | None:
    """Adam's (exp_avg, exp_avg_sq) of `tensor`, or None before its first step."""
    state = optimizer.state.get(tensor)
    if not state or "exp_avg" not in state:
        return None
    return state["exp_avg"], state["exp_avg_sq"]


def rebuild_optimizer(
    old: torch.optim.Optimizer,
    old_named: Sequence[tuple[str, Tensor]],
    new_named: Sequence[tuple[str, Tensor]],
    moved: dict[str, tuple[Tensor, Tensor]] | None,
    optim: OptimConfig,
) -> torch.optim.Adam:
    """An optimizer for the new tensors of a resampled field.

    With `moved` (per name, the old moments carried onto the new vertices) each new tensor
    keeps its step count and takes those moments (``exp_avg_sq`` clamped at 0, since
    extrapolation can undershoot); without it every state starts afresh.
    """
    optimizer = build_optimizer(new_named, optim)
    if moved is None:
        return optimizer
    old_steps = {name: old.state.get(t, {}).get("step") for name, t in old_named}
    for name, tensor in new_named:
        if name not in moved or old_steps.get(name) is None:
            continue
        exp_avg, exp_avg_sq = moved[name]
        optimizer.state[tensor] = {
            "step": old_steps[name].clone(),
            "exp_avg": exp_avg.to(tensor.dtype).contiguous(),
            "exp_avg_sq": exp_avg_sq.to(tensor.dtype).clamp_min(0).contiguous(),
        }
    return optimizer
