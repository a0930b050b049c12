"""The command line: help, versions, config errors, progress line, train, eval, train-all,
out-of-memory and NaN reports (tiny CPU runs through click's CliRunner). The tests look alike
(invoke, exit status, output) by design."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from meshtryoshka_train import __version__
from meshtryoshka_train.cli import Console, main, progress_line
from meshtryoshka_train.config import load_config, load_saved_config
from meshtryoshka_train.run import prepare_run_dir
from meshtryoshka_train.trainer import Trainer


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "--experiment" in result.output
    assert "versions" in result.output


def test_versions_names_torch_and_packages():
    result = CliRunner().invoke(main, ["versions"])
    assert result.exit_code == 0
    assert "torch" in result.output
    assert f"meshtryoshka-train   {__version__}" in result.output


def test_experiments_lists_shipped_names():
    result = CliRunner().invoke(main, ["experiments"])
    assert result.exit_code == 0
    assert result.output.split() == [
        "demo",
        "mip360",
        "mip360_140gb",
        "mip360_24gb",
        "nerf_synthetic",
    ]


def test_bad_override_on_the_command_line_lists_valid_keys():
    result = CliRunner().invoke(main, ["--experiment", "demo", "model.bogus=1"])
    assert result.exit_code == 2
    assert "unknown configuration key 'model.bogus'" in result.output
    assert "model.render_mode" in result.output


def test_overrides_without_experiment_are_refused():
    result = CliRunner().invoke(main, ["model.render_mode=explicit"])
    assert result.exit_code == 2
    assert "overrides need an experiment" in result.output


def test_wrong_type_override_names_the_key_and_the_type():
    result = CliRunner().invoke(main, ["--experiment", "demo", "train.steps=many"])
    assert result.exit_code == 2
    assert "'train.steps' must be int, got 'many'" in result.output


def test_unknown_experiment_lists_the_shipped_ones():
    result = CliRunner().invoke(main, ["--experiment", "nope"])
    assert result.exit_code == 2
    assert "unknown experiment 'nope'" in result.output and "mip360_24gb" in result.output


def test_resume_without_a_run_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["--resume", "--run-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "cannot resume" in result.output and "no config.toml" in result.output


# --- progress line -----------------------------------------------------------------------------


def test_progress_line_has_a_bar_and_fits_the_terminal():
    text = "step 5/20 | loss 0.1234 | psnr 17.00 | faces 1.2k | res 32 | 3.00 steps/s | eta 0:00:05"
    line = progress_line(5, 20, text, 140)
    assert line.startswith("[#######-----------------------]  25% step 5/20")
    assert line.endswith("eta 0:00:05")
    assert len(progress_line(5, 20, text, 60)) == 59  # cut: a wrapped line cannot be redrawn
    assert progress_line(5, 20, text, 60).startswith("step 5/20")  # no room for a bar
    assert progress_line(20, 20, "x", 60).startswith("[" + "#" * 30 + "] 100% x")


def test_console_rewrites_the_progress_line_only_on_a_terminal(capsys):
    terminal = Console(interactive=True, width=100)
    terminal.progress(1, 4, "step 1/4")
    terminal.progress(2, 4, "step 2/4")
    terminal.echo("event")
    out = capsys.readouterr().out
    # (click drops the erase-line code when stdout is not a terminal, as here)
    assert out.count("\r") == 2 and out.endswith("]  50% step 2/4\nevent\n")
    log = Console(interactive=False)
    log.progress(1, 4, "step 1/4")
    assert capsys.readouterr().out == "step 1/4\n"


# --- training, evaluation, train-all through the command line ----------------------------------


def read_json(path):
    return json.loads(Path(path).read_text())


def test_train_then_eval_through_the_cli(reduced, blender_root, tmp_path):
    runner = CliRunner(env={"WORKSPACE": str(tmp_path / "ws")})
    run_dir = tmp_path / "ws" / "nerf_synthetic" / "toy"
    run_dir.mkdir(parents=True)
    (run_dir / "marker").write_text("an older run")
    args = ["--experiment", "nerf_synthetic", *reduced(blender_root, 2)]
    refused = runner.invoke(main, args)
    assert refused.exit_code == 2 and "already exists" in refused.output
    assert (run_dir / "marker").is_file()

    periodic = ["train.eval_interval=1", "train.checkpoint_interval=1"]
    result = runner.invoke(main, [*args, *periodic, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (run_dir / "marker").exists()
    assert f"run directory: {run_dir}" in result.output
    assert "step 1: val PSNR" in result.output  # the periodic evaluation (not at the last step)
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(e["event"], e["step"]) for e in log] == [
        ("train", 1),
        ("eval", 1),
        ("train", 2),
        ("test", 2),
    ]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step_0000001.pt",
        "step_0000002.pt",
    ]
    progress = [line for line in result.output.splitlines() if line.startswith("step 2/2")]
    assert progress, result.output
    for field in ("| loss ", "| psnr ", "| faces ", " steps/s"):
        assert field in progress[0]
    for name in ("config.toml", "metrics.jsonl", "checkpoints/step_0000002.pt"):
        assert (run_dir / name).is_file()
    trained = read_json(run_dir / "eval" / "step_0000002" / "metrics.json")

    shutil.rmtree(run_dir / "eval")
    result = runner.invoke(main, ["eval", str(run_dir), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out_dir = run_dir / "eval" / "step_0000002"
    metrics = read_json(out_dir / "metrics.json")
    assert metrics["step"] == 2 and metrics["images"] == 2
    for mode in ("layered", "surface"):
        assert metrics[mode]["psnr"] == pytest.approx(trained[mode]["psnr"])
        assert 0.0 < metrics[mode]["ssim"] <= 1.0
        assert len(list((out_dir / mode).glob("*.png"))) == 2
        assert f"{mode:8s} PSNR {metrics[mode]['psnr']:.2f} dB" in result.output

    result = runner.invoke(main, ["eval", str(run_dir), "--split", "val", "--no-images"])
    assert result.exit_code == 0, result.output
    val_dir = run_dir / "eval" / "step_0000002_val"
    assert read_json(val_dir / "metrics.json")["images"] == 1
    assert not (val_dir / "layered").exists()


def test_eval_refuses_what_it_cannot_evaluate(reduced, blender_root, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output
    config = load_config("nerf_synthetic", reduced(blender_root))
    prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=False)
    result = runner.invoke(main, ["eval", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no checkpoint" in result.output


def test_train_all_trains_each_listed_scene_with_its_settings(reduced, blender_root, tmp_path):
    root = tmp_path / "scenes"
    root.mkdir()
    for scene in ("toy", "toy2"):
        (root / scene).symlink_to(blender_root / "toy", target_is_directory=True)
    experiment = tmp_path / "two.toml"
    experiment.write_text(
        'extends = "nerf_synthetic"\n\n[scenes.toy]\n\n[scenes.toy2]\nmodel.eval_near = 0.5\n'
    )
    runner = CliRunner(env={"WORKSPACE": str(tmp_path / "ws")})
    args = ["train-all", "--experiment", str(experiment), *reduced(root, 1)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    ws = tmp_path / "ws" / "two"
    near = {s: load_saved_config(ws / s / "config.toml").model.eval_near for s in ("toy", "toy2")}
    assert near == {"toy": 1.0, "toy2": 0.5}
    summary = read_json(ws / "summary.json")
    assert set(summary["psnr"]) == {"toy", "toy2"}
    assert summary["mean"]["layered"] == pytest.approx(
        (summary["psnr"]["toy"]["layered"] + summary["psnr"]["toy2"]["layered"]) / 2
    )
    assert "mean" in result.output.splitlines()[-2]

    again = runner.invoke(main, args)  # finished scenes are skipped, the table is printed again
    assert again.exit_code == 0, again.output
    assert again.output.count("already trained") == 2 and "=== toy" not in again.output


def _two_scene_experiment(tmp_path, blender_root) -> Path:
    root = tmp_path / "scenes"
    root.mkdir()
    for scene in ("toy", "toy2", "toy3"):
        (root / scene).symlink_to(blender_root / "toy", target_is_directory=True)
    experiment = tmp_path / "three.toml"
    experiment.write_text(
        'extends = "nerf_synthetic"\n\n[scenes.toy]\n\n[scenes.toy2]\n\n[scenes.toy3]\n'
    )
    return experiment


def test_train_all_shards_the_scenes_and_the_last_shard_writes_the_table(
    reduced, blender_root, tmp_path
):
    experiment = _two_scene_experiment(tmp_path, blender_root)
    ws = tmp_path / "ws" / "three"
    args = ["train-all", "--experiment", str(experiment), *reduced(tmp_path / "scenes", 1)]
    runner = CliRunner(env={"WORKSPACE": str(tmp_path / "ws")})

    first = runner.invoke(main, [*args, "--shard", "1/2"])  # scenes 1, 3, ...: toy2
    assert first.exit_code == 0, first.output
    assert "shard 1/2: scenes ['toy2']" in first.output
    assert "2 of 3 scenes have no final evaluation yet (toy, toy3)" in first.output
    assert "--summarize" in first.output and not (ws / "summary.json").exists()
    assert {p.name for p in ws.iterdir() if not p.name.startswith(".")} == {"toy2"}
    early = runner.invoke(main, [*args, "--summarize"])
    assert early.exit_code == 1 and "(toy, toy3)" in early.output

    # torchrun's environment: worker 0 of 2 of shard 0/2 (toy, toy3) takes toy
    worker = CliRunner(env={"WORKSPACE": str(tmp_path / "ws"), "WORLD_SIZE": "2", "RANK": "0"})
    second = worker.invoke(main, [*args, "--shard", "0/2"])
    assert second.exit_code == 0, second.output
    assert "torchrun worker 0 of 2: scenes ['toy']" in second.output
    assert "1 of 3 scenes have no final evaluation yet (toy3)" in second.output
    last = runner.invoke(main, [*args, "--shard", "0/2"])  # toy is done: toy3 is left
    assert last.exit_code == 0, last.output
    assert "toy: already trained" in last.output and "=== toy3" in last.output
    assert set(read_json(ws / "summary.json")["psnr"]) == {"toy", "toy2", "toy3"}
    gathered = runner.invoke(main, [*args, "--summarize"])
    assert gathered.exit_code == 0 and "mean" in gathered.output


@pytest.mark.parametrize("shard", ["2/2", "1", "a/b", "-1/2"])
def test_train_all_refuses_a_bad_shard(shard):
    result = CliRunner().invoke(main, ["train-all", "--experiment", "mip360", "--shard", shard])
    assert result.exit_code == 2 and "--shard" in result.output


def test_train_all_puts_one_scene_on_each_gpu_at_a_time(
    reduced, blender_root, tmp_path, monkeypatch
):
    """The GPU pool's processes, on the CPU here: each scene in its own process and log."""
    from meshtryoshka_train.cli.train import plan_scenes, train_on_gpus

    experiment = _two_scene_experiment(tmp_path, blender_root)
    monkeypatch.setenv("WORKSPACE", str(tmp_path / "ws"))
    plan = plan_scenes(str(experiment), None, tuple(reduced(tmp_path / "scenes", 1)))
    lines = []
    console = Console(interactive=False)
    console.echo = lines.append
    failed = train_on_gpus(str(experiment), plan, ["0", "1"], False, False, console)
    assert failed == []
    for scene in plan:
        assert scene.final_metrics.is_file()
        log = scene.run_dir.with_name(scene.run_dir.name + ".log").read_text()
        assert f"three.toml' on {scene.scene} (cpu)" in log
    started = [line for line in lines if line.startswith("===")]
    assert len(started) == 3 and {line.split(" on GPU ")[1][0] for line in started} == {"0", "1"}
    assert sum("finished on GPU" in line for line in lines) == 3


def test_train_all_refuses_unknown_scenes():
    result = CliRunner().invoke(main, ["train-all", "--experiment", "mip360", "--scenes", "moon"])
    assert result.exit_code == 2 and "unknown scenes ['moon']" in result.output


def test_train_all_refuses_an_empty_scene_list():
    result = CliRunner().invoke(main, ["train-all", "--experiment", "mip360", "--scenes", " , "])
    assert result.exit_code == 2 and "--scenes names no scene" in result.output


# --- failures reported without a traceback -----------------------------------------------------


def test_out_of_memory_is_reported_with_sizes_and_remedies(
    reduced, blender_root, tmp_path, monkeypatch
):
    original = Trainer.train_step

    def step_then_run_out(self):
        if self.step >= 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", step_then_run_out)
    run_dir = tmp_path / "run"
    args = ["--experiment", "nerf_synthetic", *reduced(blender_root, 4), "--run-dir", str(run_dir)]
    result = CliRunner().invoke(main, [*args, "train.checkpoint_interval=1"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    message = " ".join(result.output.split())
    for expected in (
        "out of GPU memory at step 1 during the training step",
        "Tried to allocate 2.00 GiB",
        "resolution 12,",
        "batch size 2 images of 24x24 px",
        "optim.batch_size=1",
        "model.train_ssaa",
        "dataset.device=cpu",
        "mip360_24gb",
        f"{run_dir / 'checkpoints' / 'step_0000001.pt'}",
    ):
        assert expected in message, expected
    # one voxel fewer than the grid that ran out (12^3 minus the ones no camera sees)
    bound = re.search(r"model\.max_voxels=(\d+) \(no grid this large again", message)
    assert bound and 12**3 // 2 < int(bound.group(1)) < 12**3, message


def test_out_of_memory_while_loading_the_data_is_reported(
    reduced, blender_root, tmp_path, monkeypatch
):
    def run_out(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("meshtryoshka_train.trainer.load_scene", run_out)
    args = ["--experiment", "nerf_synthetic", *reduced(blender_root), "--run-dir", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "out of GPU memory while setting up the run" in result.output
    assert "dataset.device=cpu" in result.output


def test_nan_loss_exits_with_a_message_and_keeps_the_checkpoint(
    reduced, blender_root, tmp_path, monkeypatch
):
    from meshtryoshka_train import trainer as trainer_module

    calls = []

    def losses_then_nan(*args, **kwargs):
        losses = compute_losses(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            losses["total"] = losses["total"] * float("nan")
        return losses

    compute_losses = trainer_module.compute_losses
    monkeypatch.setattr(trainer_module, "compute_losses", losses_then_nan)
    run_dir = tmp_path / "run"
    args = ["--experiment", "nerf_synthetic", *reduced(blender_root, 4), "--run-dir", str(run_dir)]
    result = CliRunner().invoke(main, [*args, "train.checkpoint_interval=2"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "the loss became NaN or infinite at step 2" in result.output
    assert "step_0000002.pt" in result.output
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_0000002.pt"]
