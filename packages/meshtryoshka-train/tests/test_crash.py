"""Crash safety: SIGKILL and Ctrl-C (SIGINT) of a real `python -m meshtryoshka_train` process,
then `--resume` through the command line, must end with the parameters of an uninterrupted run
(CPU, same seed). Plus the in-process cases: SIGTERM, a second Ctrl-C, damaged leftovers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from meshtryoshka_train.cli import main
from meshtryoshka_train.config import load_config, load_saved_config
from meshtryoshka_train.run import list_checkpoints, prepare_run_dir, run_dir_lock
from meshtryoshka_train.trainer import Trainer

STEPS = 6


def tiny(root: Path, *extra: str) -> list[str]:
    """A CPU run of STEPS steps on the conftest `toy` scene (as conftest's `reduced`), with a
    resolution change and an SH degree step so that a resume has state to get right."""
    return [
        "--experiment",
        "nerf_synthetic",
        f"dataset.root={root}",
        "dataset.scene=toy",
        "dataset.background=random",  # the batch generator also draws the backgrounds
        "model.resolution={0=12, 3=16}",  # after the first checkpoint (step 2)
        "model.min_voxel_pixels=0",  # tiny images: follow the schedule
        "model.sh_degree={0=0, 1=1}",  # before it
        "model.train_ssaa=1",
        "model.eval_ssaa=1",
        "model.backend=reference",
        "optim.batch_size=2",
        f"train.steps={STEPS}",
        "train.log_interval=1",
        "train.checkpoint_interval=2",
        "train.device=cpu",
        *extra,
    ]


def final_state(run_dir: Path) -> dict:
    path = run_dir / "checkpoints" / f"step_{STEPS:07d}.pt"
    return torch.load(path, weights_only=False)


def assert_same_training(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] == STEPS
    fa, fb = a["field"], b["field"]
    assert fa["center_resolution"] == fb["center_resolution"] == 16
    assert len(fa["sh_bands"]) == len(fb["sh_bands"]) == 1  # SH degree 1
    for (shape_a, voxels_a), (shape_b, voxels_b) in zip(fa["grids"], fb["grids"], strict=True):
        assert shape_a == shape_b and torch.equal(voxels_a, voxels_b)
    for name in ("sdf", "sh_dc"):
        assert torch.equal(fa[name], fb[name]), name
    assert torch.equal(fa["sh_bands"][0], fb["sh_bands"][0])
    for index, state in a["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state[name], b["optimizer"]["state"][index][name]), (index, name)
    assert torch.equal(a["batch_generator"], b["batch_generator"])


def train_steps_logged(run_dir: Path) -> list[int]:
    entries = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e["step"] for e in entries if e["event"] == "train"]


@pytest.fixture(scope="module")
def uninterrupted(blender_root, tmp_path_factory) -> dict:
    """The final checkpoint of the run trained in one go through the CLI."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = CliRunner().invoke(main, [*tiny(blender_root), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    return final_state(run_dir)


def start_training(args: list[str], log: Path) -> subprocess.Popen:
    """`python -m meshtryoshka_train ARGS` with as many threads as this process (the same
    reductions, hence bit-identical results), output to `log`."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "meshtryoshka_train", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_until(condition, process: subprocess.Popen, log: Path, what: str, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"training ended ({process.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} after {timeout} s:\n{log.read_text()}")
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(blender_root, tmp_path, uninterrupted):
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    process = start_training([*tiny(blender_root), "--run-dir", str(run_dir)], log)
    first = run_dir / "checkpoints" / "step_0000002.pt"
    wait_until(first.is_file, process, log, "checkpoint of step 2")
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    kept = list_checkpoints(run_dir)
    newest = int(kept[-1].stem.split("_")[1])
    assert 2 <= newest < STEPS, "the kill came after the end of training"
    # What a kill in the middle of a write leaves behind: the temporary file of a checkpoint
    # (never renamed into place) and a cut log line.
    (run_dir / "checkpoints" / f".step_{newest + 2:07d}.pt.x1y2z3").write_bytes(b"PK\x03\x04")
    with open(run_dir / "metrics.jsonl", "a") as file:
        file.write('{"event": "train", "step": 9')

    result = CliRunner().invoke(main, ["--resume", "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert f"resumed from step {newest}:" in result.output
    assert_same_training(final_state(run_dir), uninterrupted)
    assert train_steps_logged(run_dir) == list(range(1, STEPS + 1))
    assert not list((run_dir / "checkpoints").glob(".step_*"))  # the leftover was removed


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_current_step_and_resume_loses_nothing(
    blender_root, tmp_path, uninterrupted
):
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    # No periodic checkpoint: whatever is kept comes from the Ctrl-C.
    args = [*tiny(blender_root, "train.checkpoint_interval=0"), "--run-dir", str(run_dir)]
    process = start_training(args, log)

    def trained_a_step() -> bool:
        metrics = run_dir / "metrics.jsonl"
        return metrics.is_file() and '"event": "train"' in metrics.read_text()

    wait_until(trained_a_step, process, log, "training step")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    output = log.read_text()
    found = re.search(rf"SIGINT: training stopped at step (\d+) of {STEPS}; the checkpoint", output)
    assert found, output
    step = int(found.group(1))
    assert 1 <= step < STEPS
    assert "(no step is lost)" in output and "Traceback" not in output
    assert f"Resume with: meshtryoshka-train --resume --run-dir {run_dir}" in output
    assert [p.name for p in list_checkpoints(run_dir)] == [f"step_{step:07d}.pt"]

    # An override with --resume (one that leaves the result alone) is kept in config.toml.
    resume = ["--resume", "--run-dir", str(run_dir), "train.keep_checkpoints=3"]
    result = CliRunner().invoke(main, resume)
    assert result.exit_code == 0, result.output
    assert f"resumed from step {step}:" in result.output
    assert load_saved_config(run_dir / "config.toml").train.keep_checkpoints == 3
    assert_same_training(final_state(run_dir), uninterrupted)
    assert train_steps_logged(run_dir) == list(range(1, STEPS + 1))


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler during each test, as in a terminal: a test run started in
    the background (``cmd &``, nohup) inherits SIGINT ignored, and in-process Ctrl-C would
    then be ignored too."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def signal_during_step(monkeypatch, at_step: int, *signals: int) -> None:
    """Make the training step that starts at `at_step` receive `signals` (in-process)."""
    original = Trainer.train_step

    def step(self):
        for signum in signals if self.step == at_step else ():
            signal.raise_signal(signum)
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", step)


def test_sigterm_stops_after_the_step_with_status_143(reduced, blender_root, tmp_path, monkeypatch):
    signal_during_step(monkeypatch, 1, signal.SIGTERM)
    before = signal.getsignal(signal.SIGTERM)
    run_dir = tmp_path / "run"
    args = ["--experiment", "nerf_synthetic", *reduced(blender_root, 4), "--run-dir", str(run_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 143, result.output
    assert "SIGTERM: training stopped at step 2 of 4" in result.output
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0000002.pt"]
    assert not (run_dir / "eval").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored after training


def test_a_second_ctrl_c_stops_at_once(reduced, blender_root, tmp_path, monkeypatch):
    signal_during_step(monkeypatch, 1, signal.SIGINT, signal.SIGINT)
    run_dir = tmp_path / "run"
    args = ["--experiment", "nerf_synthetic", *reduced(blender_root, 4), "--run-dir", str(run_dir)]
    result = CliRunner().invoke(main, [*args, "train.checkpoint_interval=1"])
    assert result.exit_code == 130, result.output
    assert "stopped at once" in result.output
    assert "the newest checkpoint is" in result.output and "step_0000001.pt" in result.output
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0000001.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_falls_back_when_the_newest_checkpoint_is_unreadable(
    reduced, blender_root, tmp_path
):
    overrides = [*reduced(blender_root, 4), "train.checkpoint_interval=1"]
    config = load_config("nerf_synthetic", overrides)
    prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=False)
    Trainer(config, tmp_path / "run", echo=lambda _: None).run(stop_at=2)
    newest = tmp_path / "run" / "checkpoints" / "step_0000002.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # damaged on disk (not by our writes)
    lines = []
    resumed = Trainer(config, tmp_path / "run", resume=True, echo=lines.append)
    assert resumed.step == 1
    assert any(line.startswith(f"warning: cannot read checkpoint {newest}") for line in lines)


def test_overrides_given_with_resume_are_saved_in_config_toml(reduced, blender_root, tmp_path):
    run_dir = tmp_path / "run"
    config = load_config("nerf_synthetic", reduced(blender_root))
    prepare_run_dir(run_dir, config, resume=False, overwrite=False)
    before = (run_dir / "config.toml").read_text()
    same = load_saved_config(run_dir / "config.toml")
    prepare_run_dir(run_dir, same, resume=True, overwrite=False)
    assert (run_dir / "config.toml").read_text() == before  # unchanged: not rewritten
    changed = load_saved_config(run_dir / "config.toml", ["optim.batch_size=1"])
    prepare_run_dir(run_dir, changed, resume=True, overwrite=False)
    assert load_saved_config(run_dir / "config.toml").optim.batch_size.at(0) == 1


def test_a_run_directory_in_use_is_not_touched_by_a_second_process(reduced, blender_root, tmp_path):
    run_dir = tmp_path / "run"
    config = load_config("nerf_synthetic", reduced(blender_root))
    prepare_run_dir(run_dir, config, resume=False, overwrite=False)
    in_flight = run_dir / "checkpoints" / ".step_0000002.pt.abc123"  # another process's write
    in_flight.parent.mkdir()
    in_flight.write_bytes(b"partial")
    runner = CliRunner()
    with run_dir_lock(run_dir):  # "the other process": this one, through another descriptor
        for extra in (["--resume"], ["--overwrite"]):
            args = ["--run-dir", str(run_dir), *extra, "optim.batch_size=1"]
            if extra == ["--overwrite"]:
                args = ["--experiment", "nerf_synthetic", *reduced(blender_root), *args]
            result = runner.invoke(main, args)
            assert result.exit_code == 2, result.output
            assert f"another process (pid {os.getpid()}) is training into" in result.output
        assert in_flight.is_file()
        assert load_saved_config(run_dir / "config.toml").optim.batch_size.at(0) == 2
    with run_dir_lock(run_dir):  # released by the CLI and by the block above
        pass


def test_ctrl_c_in_the_final_evaluation_keeps_the_final_checkpoint(
    reduced, blender_root, tmp_path, monkeypatch
):
    def interrupted_evaluation(self):
        signal.raise_signal(signal.SIGINT)  # the handlers of the steps are gone by now

    monkeypatch.setattr(Trainer, "final_evaluation", interrupted_evaluation)
    run_dir = tmp_path / "run"
    args = ["--experiment", "nerf_synthetic", *reduced(blender_root, 2), "--run-dir", str(run_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert "training had finished" in result.output
    assert "--resume only evaluates it" in result.output
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0000002.pt"]
