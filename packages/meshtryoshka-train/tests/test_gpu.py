"""The training app on CUDA (marker ``cuda``): the Slang kernels inside the real training loop.

Tiny scenes from conftest.py, with the reduced configurations moved to the GPU. The Slang and
reference backends must give the same first-step losses and face counts (same extraction, same
render up to float rounding); every shipped experiment trains through a resolution change and
evaluates; both render modes train.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from meshtryoshka_train.config import experiment_names, load_config
from meshtryoshka_train.run import prepare_run_dir
from meshtryoshka_train.trainer import Trainer

pytestmark = pytest.mark.cuda


def gpu_overrides(reduced, root, steps, unbounded=False, backend="auto"):
    return [
        *reduced(root, steps, unbounded),
        "train.device=cuda",
        "dataset.device=cuda",
        f"model.backend={backend}",
    ]


def make_trainer(tmp_path, experiment, overrides, name="run"):
    config = load_config(experiment, overrides)
    run_dir = tmp_path / name
    prepare_run_dir(run_dir, config, resume=False, overwrite=False)
    return Trainer(config, run_dir, resume=False, echo=lambda line: None)


def test_gpu_slang_and_reference_backends_agree_on_the_first_step(reduced, tmp_path, blender_root):
    stats = {}
    for backend in ("slang", "reference"):
        overrides = gpu_overrides(reduced, blender_root, 1, backend=backend)
        trainer = make_trainer(tmp_path, "nerf_synthetic", overrides, name=backend)
        assert trainer.device.type == "cuda"
        trainer.apply_schedules(0)
        stats[backend] = {k: float(v) for k, v in trainer.train_step().items()}
    slang, reference = stats["slang"], stats["reference"]
    assert slang["faces"] == reference["faces"] > 0
    for name in ("rgb", "eikonal_neg", "curvature", "total"):
        assert math.isclose(slang[name], reference[name], rel_tol=1e-4, abs_tol=1e-6), name


@pytest.mark.parametrize("experiment", experiment_names())
def test_gpu_every_shipped_experiment_trains_through_a_resolution_change(
    reduced, tmp_path, experiment, blender_root, colmap_root
):
    unbounded = load_config(experiment).dataset.format == "colmap"
    root = colmap_root if unbounded else blender_root
    overrides = gpu_overrides(reduced, root, 4, unbounded)
    overrides.append(
        "model.resolution={0=8, 2=12}" if unbounded else "model.resolution={0=12, 2=16}"
    )
    trainer = make_trainer(tmp_path, experiment, overrides)
    result = trainer.run()
    assert result.step == 4
    assert trainer.field.center_resolution == (12 if unbounded else 16)
    for mode in ("layered", "surface"):
        assert result.evaluation[mode]["psnr"] > 3.0
        assert result.evaluation[mode]["faces"] > 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(math.isfinite(e["total"]) for e in entries if e["event"] == "train")


@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_gpu_both_render_modes_lower_the_loss(reduced, tmp_path, blender_root, mode):
    overrides = [
        *gpu_overrides(reduced, blender_root, 30),
        f"model.render_mode={mode}",
        "model.resolution={0=16}",
        "train.log_interval=10",
    ]
    trainer = make_trainer(tmp_path, "nerf_synthetic", overrides)
    trainer.run()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rgb = [json.loads(line)["rgb"] for line in lines if '"train"' in line]
    assert rgb[-1] < rgb[0]
    assert torch.cuda.max_memory_allocated() > 0
