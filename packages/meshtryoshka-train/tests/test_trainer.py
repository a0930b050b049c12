"""The training loop on tiny synthetic scenes, CPU reference backend."""

import json

import pytest
import torch

from meshtryoshka_train.config import ConfigError, experiment_names, load_config
from meshtryoshka_train.evaluate import evaluate
from meshtryoshka_train.run import dataset_folder, default_run_dir, prepare_run_dir
from meshtryoshka_train.trainer import Trainer, TrainingDiverged


def make_trainer(tmp_path, experiment, overrides, name="run", resume=False):
    config = load_config(experiment, overrides)
    run_dir = tmp_path / name
    prepare_run_dir(run_dir, config, resume=resume, overwrite=False)
    lines = []
    trainer = Trainer(config, run_dir, resume=resume, echo=lines.append)
    trainer.lines = lines
    return trainer


def parameters(trainer):
    return {name: t.detach().clone() for name, t in trainer.field.parameters()}


def log_entries(run_dir, event="train"):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


@pytest.mark.parametrize("experiment", experiment_names())
def test_every_shipped_experiment_trains_two_steps(
    reduced, tmp_path, experiment, blender_root, colmap_root
):
    config = load_config(experiment)
    unbounded = config.dataset.format == "colmap"
    root = colmap_root if unbounded else blender_root
    trainer = make_trainer(tmp_path, experiment, reduced(root, 2, unbounded))
    assert len(trainer.field.grids) == (7 if unbounded else 1)
    result = trainer.run()
    assert result.step == 2
    run_dir = tmp_path / "run"
    assert (run_dir / "config.toml").is_file()
    assert (run_dir / "checkpoints" / "step_0000002.pt").is_file()
    metrics = json.loads((run_dir / "eval" / "step_0000002" / "metrics.json").read_text())
    for mode in ("layered", "surface"):
        assert metrics[mode]["psnr"] > 3.0 and metrics[mode]["faces"] > 0
        assert len(list((run_dir / "eval" / "step_0000002" / mode).glob("*.png"))) == 2
    assert [e["step"] for e in log_entries(run_dir)] == [1, 2]


def test_training_lowers_the_loss_and_raises_test_psnr(reduced, tmp_path, blender_root):
    overrides = [*reduced(blender_root, 60), "model.resolution={0=16}", "train.log_interval=10"]
    trainer = make_trainer(tmp_path, "nerf_synthetic", overrides)
    before = evaluate(trainer.field, trainer.dataset, trainer.config, 0)
    after = trainer.run().evaluation
    losses = [e["total"] for e in log_entries(tmp_path / "run")]
    assert losses[-1] < 0.7 * losses[0]  # measured 0.43x
    for mode in ("layered", "surface"):
        assert after[mode]["psnr"] > before[mode]["psnr"] + 2.5  # measured 13.1 -> 16.7 dB


def test_cpu_training_is_deterministic(reduced, tmp_path, blender_root):
    overrides = [*reduced(blender_root, 4), "model.resolution={0=12, 2=16}", "train.seed=7"]
    runs = [make_trainer(tmp_path, "nerf_synthetic", overrides, name=n) for n in ("a", "b")]
    for trainer in runs:
        trainer.run()
    a, b = (parameters(t) for t in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = make_trainer(tmp_path, "nerf_synthetic", [*overrides, "train.seed=8"], name="c")
    assert not torch.equal(parameters(other)["sdf"], a["sdf"])


def test_resume_equals_an_uninterrupted_run(reduced, tmp_path, blender_root):
    overrides = [
        *reduced(blender_root, 7),
        "model.resolution={0=12, 3=16}",  # a resolution change after the checkpoint
        "model.sh_degree={0=0, 1=1}",  # the SH degree grows before it
        "optim.lr_schedule={0=1.0, 5=0.5}",
        "optim.batch_size={0=2, 4=3}",
        "train.checkpoint_interval=2",
        "dataset.background=random",  # the batch generator also draws backgrounds
    ]
    whole = make_trainer(tmp_path, "nerf_synthetic", overrides, name="whole")
    whole.run()
    broken = make_trainer(tmp_path, "nerf_synthetic", overrides, name="broken")
    broken.run(stop_at=3)  # a crash after step 3: the newest checkpoint is step 2
    config = load_config("nerf_synthetic", overrides)
    resumed = Trainer(config, tmp_path / "broken", resume=True, echo=lambda _: None)
    assert resumed.step == 2 and resumed.field.sh_degree == 1
    resumed.run()
    a, b = parameters(whole), parameters(resumed)
    assert a.keys() == b.keys() == {"sdf", "sh_dc", "sh_band1"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    state_a, state_b = whole.optimizer.state_dict(), resumed.optimizer.state_dict()
    for key, value in state_a["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(value[name], state_b["state"][key][name])
    assert [g["lr"] for g in state_a["param_groups"]] == [g["lr"] for g in state_b["param_groups"]]
    assert whole.field.grids[0].shape == resumed.field.grids[0].shape == (16, 16, 16)
    steps = [e["step"] for e in log_entries(tmp_path / "broken")]
    assert steps == list(range(1, 8))  # entries past the checkpoint were dropped on resume


def test_schedules_take_effect_at_their_global_steps(reduced, tmp_path, blender_root):
    overrides = [
        *reduced(blender_root, 7),
        "model.resolution={0=12, 2=16}",
        "model.sh_degree={0=0, 3=1}",
        "model.shells={0=[0.5], 4=[0.9, 0.5, 0.1]}",
        "optim.batch_size={0=2, 5=1}",
        "optim.lr_schedule={0=1.0, 4=0.25}",
    ]
    trainer = make_trainer(tmp_path, "nerf_synthetic", overrides)
    seen = []
    for step in range(6):
        trainer.apply_schedules(step)
        seen.append((trainer.field.center_resolution, trainer.field.sh_degree, trainer.optimizer))
        trainer.train_step()
        trainer.step += 1
    assert [s[0] for s in seen] == [12, 12, 16, 16, 16, 16]
    assert [s[1] for s in seen] == [0, 0, 0, 1, 1, 1]
    assert seen[1][2] is not seen[2][2]  # rebuilt at the resolution change ...
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    lr = trainer.config.optim.lr
    assert lrs == pytest.approx({"sdf": lr / 4, "sh_dc": lr / 4, "sh_band1": lr * 0.05 / 4})
    # ... and the LR schedule still follows the global step (the original restarted it).
    trainer.run()
    entries = log_entries(tmp_path / "run")
    assert [e["batch_size"] for e in entries] == [1]  # step 7 only (steps 1-6 ran above)
    shells = [trainer.config.model.shells.at(s) for s in (3, 4)]
    assert len(shells[0]) == 1 and len(shells[1]) == 3


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(
    reduced, tmp_path, blender_root
):
    overrides = [*reduced(blender_root, 6), "train.checkpoint_interval=2"]
    trainer = make_trainer(tmp_path, "nerf_synthetic", overrides)
    trainer.run(stop_at=3)
    good = torch.load(tmp_path / "run" / "checkpoints" / "step_0000002.pt", weights_only=False)
    trainer.field.sdf.data[:] = float("nan")
    with pytest.raises(TrainingDiverged, match="NaN or infinite at step 3.*step_0000002.pt"):
        trainer.run()
    kept = torch.load(tmp_path / "run" / "checkpoints" / "step_0000002.pt", weights_only=False)
    assert torch.equal(kept["field"]["sdf"], good["field"]["sdf"])
    assert not (tmp_path / "run" / "checkpoints" / "step_0000004.pt").exists()


def test_a_nan_loss_stops_before_the_adam_step(reduced, tmp_path, blender_root, monkeypatch):
    trainer = make_trainer(tmp_path, "nerf_synthetic", reduced(blender_root, 4))
    trainer.run(stop_at=1)
    render_losses = trainer._render_losses

    def nan_loss(*args, **kwargs):
        image, losses = render_losses(*args, **kwargs)
        return image, {**losses, "total": losses["total"] * float("nan")}

    monkeypatch.setattr(trainer, "_render_losses", nan_loss)
    before = [t.detach().clone() for _, t in trainer.field.parameters()]
    with pytest.raises(TrainingDiverged, match="the loss became NaN or infinite at step 1"):
        trainer.run()
    for (name, after), old in zip(trainer.field.parameters(), before, strict=True):
        assert torch.equal(after.detach(), old), name  # the step was not applied


def test_a_batch_larger_than_the_training_set_is_refused(reduced, tmp_path, blender_root):
    with pytest.raises(ConfigError, match="only 8 training images"):
        make_trainer(tmp_path, "nerf_synthetic", [*reduced(blender_root), "optim.batch_size=9"])


def test_existing_run_directory_needs_resume_or_overwrite(reduced, tmp_path, blender_root):
    config = load_config("nerf_synthetic", reduced(blender_root))
    prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=False)
    (tmp_path / "run" / "marker").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=False)
    prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=True)
    assert not (tmp_path / "run" / "marker").exists()
    with pytest.raises(ConfigError, match="cannot resume"):
        prepare_run_dir(tmp_path / "none", config, resume=True, overwrite=False)


def test_bundled_demo_scene_and_run_directory_names(reduced, tmp_path):
    config = load_config("demo")
    assert (dataset_folder(config) / "transforms_train.json").is_file()
    with pytest.raises(ConfigError, match="holds only the scene 'demo'"):
        dataset_folder(load_config("demo", ["dataset.scene=lego"]))
    assert default_run_dir(config, tmp_path) == tmp_path / "demo" / "demo"


def test_cpu_training_says_once_that_the_reference_kernels_run(reduced, tmp_path, blender_root):
    auto = [*reduced(blender_root), "model.backend=auto"]
    trainer = make_trainer(tmp_path, "nerf_synthetic", auto)
    assert sum("pure-PyTorch reference backend" in line for line in trainer.lines) == 1
    quiet = make_trainer(tmp_path, "nerf_synthetic", reduced(blender_root), name="quiet")
    assert not any("reference backend" in line for line in quiet.lines)


# --- the recipe's rows (docs/recipe.md) ------------------------------------------------------


def test_reset_rebuilds_adam_at_resolution_and_sh_changes_transfer_keeps_it(
    reduced, tmp_path, blender_root
):
    schedule = [
        *reduced(blender_root, 5),
        "model.resolution={0=12, 2=16}",
        "model.sh_degree={0=0, 4=1}",
    ]
    counts = {}
    for state in ("reset", "transfer"):
        trainer = make_trainer(
            tmp_path, "nerf_synthetic", [*schedule, f"optim.resample_state={state}"], name=state
        )
        seen = []
        for step in range(5):
            trainer.apply_schedules(step)
            seen.append(
                {g["name"]: int(trainer.optimizer.state.get(g["params"][0], {}).get("step", 0))
                 for g in trainer.optimizer.param_groups}
            )  # fmt: skip
            trainer.train_step()
            trainer.step += 1
        counts[state] = seen
    # the step count Adam has seen before each step, per parameter
    assert [c["sdf"] for c in counts["reset"]] == [0, 1, 0, 1, 0]  # fresh at 2 and at 4
    assert [c["sdf"] for c in counts["transfer"]] == [0, 1, 2, 3, 4]
    assert counts["reset"][4]["sh_dc"] == 0 and counts["transfer"][4]["sh_dc"] == 4
    assert counts["transfer"][4]["sh_band1"] == 0  # a new band always starts afresh


def test_readd_initializer_adds_the_sphere_at_each_resolution_change(
    reduced, tmp_path, blender_root
):
    from meshtryoshka_train.initializers import sphere_sdf

    overrides = [*reduced(blender_root, 2), "model.resolution={0=12, 1=16}"]
    fields = {}
    for readd in (True, False):
        trainer = make_trainer(
            tmp_path,
            "nerf_synthetic",
            [*overrides, f"model.readd_initializer={str(readd).lower()}"],
            name=f"readd_{readd}",
        )
        trainer.resample(16, 0, 1)
        fields[readd] = trainer.field
    a, b = fields[True], fields[False]
    assert torch.equal(a.grids[0].voxels, b.grids[0].voxels)
    sphere = sphere_sdf(trainer.config.model.init_radius)(a.contracted_vertices())
    torch.testing.assert_close(a.sdf.detach() - b.sdf.detach(), sphere, atol=1e-6, rtol=0)


def test_clip_prediction_gives_no_rgb_gradient_where_the_image_is_clipped(
    reduced, tmp_path, blender_root
):
    grads = {}
    for clip in (True, False):
        trainer = make_trainer(
            tmp_path,
            "nerf_synthetic",
            [*reduced(blender_root, 1), f"loss.clip_prediction={str(clip).lower()}"],
            name=f"clip_{clip}",
        )
        with torch.no_grad():
            trainer.field.sh_dc.fill_(10.0)  # every colour far above 1
        trainer.apply_schedules(0)
        stats = trainer.train_step()
        grads[clip] = trainer.field.sh_dc.grad
        if clip:
            assert float(stats["rgb"]) < 16.0  # the clipped image is compared
    assert grads[True] is None or not grads[True].any()
    assert grads[False].abs().sum() > 0


def test_logs_carry_every_weighted_term_and_the_counts(reduced, tmp_path, blender_root):
    trainer = make_trainer(tmp_path, "nerf_synthetic", reduced(blender_root, 2))
    trainer.run()
    entry = log_entries(tmp_path / "run")[-1]
    for name in ("rgb", "eikonal_pos", "eikonal_neg", "curvature", "sdf_binary", "sh", "total"):
        assert name in entry and entry[name] == entry[name]  # present, not NaN
    assert entry["curvature"] > 0 and entry["faces"] > 0 and entry["shell_vertices"] > 0
    assert entry["voxels"] > 0 and entry["elapsed"] > 0


def test_point_cloud_prior_fades_out_as_in_the_original(reduced, tmp_path, colmap_root):
    from meshtryoshka_train.initializers import fade_weight

    assert [fade_weight(s, 100, 200) for s in (0, 99, 100, 200, 299, 300)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 0.005, 0.0]
    )
    overrides = [
        *reduced(colmap_root, 5, True),
        "model.init_freeze_steps=2",
        "model.init_blend_steps=2",
        "train.checkpoint_interval=1",
    ]
    trainer = make_trainer(tmp_path, "mip360", overrides)
    field = trainer.field
    assert field.prior is not None and field.prior_weight == 1.0
    assert float(field.sdf.detach().abs().max()) < 0.1  # the learned part: noise only
    assert float(field.prior.max()) > 0.1  # the point cloud's distance, far from the points
    assert torch.equal(field.signed_distance(), field.prior)  # w = 1: the prior alone
    start = field.sdf.detach().clone()
    trainer.run(stop_at=2)  # two frozen steps: the learned sdf gets no gradient
    assert torch.equal(trainer.field.sdf.detach(), start)
    resumed = make_trainer(tmp_path, "mip360", overrides, resume=True)
    assert torch.equal(resumed.field.prior, field.prior)
    resumed.apply_schedules(3)  # half way through the blend
    assert resumed.field.prior_weight == pytest.approx(0.5)
    blend = 0.5 * resumed.field.sdf + 0.5 * resumed.field.prior
    torch.testing.assert_close(resumed.field.signed_distance(), blend)
    resumed.apply_schedules(4)
    assert resumed.field.prior is None
    baked = make_trainer(
        tmp_path, "mip360", [*overrides, "model.point_cloud_init=baked"], name="baked"
    )
    assert baked.field.prior is None
    noise = baked.field.sdf.detach() - field.prior
    assert float(noise.abs().max()) < 0.1  # the point cloud's distance plus noise


def test_voxel_pixel_sizes_is_focal_times_size_over_depth_in_the_closest_seeing_view():
    from meshtryoshka_train.resolution import voxel_pixel_sizes

    w2c = torch.eye(4).repeat(2, 1, 1)
    w2c[1, 2, 3] = 3.0  # the second camera sees everything 3 units farther
    k = torch.tensor([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]).repeat(2, 1, 1)
    centers = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, -5.0], [4.0, 0.0, 5.0]])
    sizes = voxel_pixel_sizes(centers, torch.full((3,), 0.1), w2c, k, (100, 100), near=0.01)
    # centre 0: depth 5 and 8, the closer view wins; centre 1 is behind both; centre 2 is outside
    # the first image (x = 50 + 100 * 4 / 5 = 130 > 100), inside the second (x = 50 + 50 = 100)
    torch.testing.assert_close(sizes, torch.tensor([100 * 0.1 / 5, 0.0, 100 * 0.1 / 8]))


def test_min_voxel_pixels_stops_the_refinement_for_the_rest_of_the_run(
    reduced, tmp_path, blender_root
):
    schedule = [*reduced(blender_root, 4), "model.resolution={0=12, 1=16, 3=20}"]
    follows = make_trainer(tmp_path, "nerf_synthetic", [*schedule, "model.min_voxel_pixels=0.01"])
    pixels = follows.median_voxel_pixels()
    assert pixels > 0.5  # 24 px images, grid of 12 voxels over [-1.5, 1.5]: about a pixel each
    follows.run()
    assert follows.field.center_resolution == 20 and follows.resolution_cap is None
    overrides = [*schedule, "model.min_voxel_pixels=100", "train.checkpoint_interval=2"]
    stops = make_trainer(tmp_path, "nerf_synthetic", overrides, name="stops")
    stops.run(stop_at=2)
    assert stops.field.center_resolution == 12 and stops.resolution_cap == (12, 0)
    assert any("stays at resolution 12" in line for line in stops.lines)
    resumed = make_trainer(tmp_path, "nerf_synthetic", overrides, name="stops", resume=True)
    assert resumed.resolution_cap == (12, 0)
    resumed.run()
    assert resumed.field.center_resolution == 12


def test_max_voxels_keeps_the_grid_when_the_next_one_would_be_larger(
    reduced, tmp_path, blender_root
):
    schedule = [*reduced(blender_root, 4), "model.resolution={0=12, 1=16, 3=20}"]
    free = make_trainer(tmp_path, "nerf_synthetic", schedule, name="free")
    free.run(stop_at=2)
    at_16 = free.field.num_voxels
    assert free.field.center_resolution == 16 and at_16 > 12**3 // 2
    # exactly the count of the 16^3 grid: allowed; one less: the grid stays at 12 for good
    allowed = make_trainer(
        tmp_path, "nerf_synthetic", [*schedule, f"model.max_voxels={at_16}"], name="allowed"
    )
    allowed.run(stop_at=2)
    assert allowed.field.center_resolution == 16 and allowed.field.num_voxels == at_16
    overrides = [*schedule, f"model.max_voxels={at_16 - 1}", "train.checkpoint_interval=2"]
    capped = make_trainer(tmp_path, "nerf_synthetic", overrides, name="capped")
    before = capped.field.sdf.detach().clone()
    capped.run(stop_at=2)
    assert capped.field.center_resolution == 12 and capped.resolution_cap == (12, 0)
    assert capped.field.sdf.shape == before.shape  # the same grid, trained on
    assert any(f"more than model.max_voxels = {at_16 - 1}" in line for line in capped.lines)
    resumed = make_trainer(tmp_path, "nerf_synthetic", overrides, name="capped", resume=True)
    assert resumed.resolution_cap == (12, 0)
    resumed.run()
    assert resumed.field.center_resolution == 12
