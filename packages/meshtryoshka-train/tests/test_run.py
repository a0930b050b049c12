"""The run directory (meshtryoshka_train.run): its paths, atomic checkpoint writes, rotation
and loading, the metrics log, the shells of a step, and Snapshot / open_run."""

import json
import math
import shutil

import pytest
import torch

from meshtryoshka_train.config import ConfigError, load_config
from meshtryoshka_train.run import (
    CHECKPOINT_FORMAT,
    RunDir,
    RunError,
    Snapshot,
    list_checkpoints,
    load_latest_checkpoint,
    open_run,
    prepare_run_dir,
    read_metrics,
    save_checkpoint,
    shell_levels_at,
    shells_at,
    trim_metrics,
    write_atomic,
)
from meshtryoshka_train.trainer import Trainer

# --- paths -------------------------------------------------------------------------------------


def test_run_dir_names_every_path_of_the_layout(tmp_path):
    files = RunDir(tmp_path / "ws" / "demo")
    root = tmp_path / "ws" / "demo"
    assert files.config_file == root / "config.toml"
    assert files.metrics_file == root / "metrics.jsonl"
    assert files.checkpoint(42) == root / "checkpoints" / "step_0000042.pt"
    assert files.eval_dir(42) == root / "eval" / "step_0000042"
    assert files.eval_dir(42, "val") == root / "eval" / "step_0000042_val"
    assert files.mesh_file(7, "glb", "_shell0") == root / "mesh" / "mesh_step_0000007_shell0.glb"
    assert files.render_dir("orbit", "shell:2", 7) == root / "renders" / "orbit_shell2_step_0000007"
    assert files.viewer_dir == root / "viewer"
    assert files.lock_file == root.parent / ".demo.lock"  # beside it: --overwrite deletes it


# --- atomic writes and checkpoints --------------------------------------------------------------


def test_save_load_and_rotate(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, {"step": step, "x": torch.arange(step)}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_0000020.pt", "step_0000030.pt"]
    state = load_latest_checkpoint(tmp_path)
    assert state["step"] == 30 and torch.equal(state["x"], torch.arange(30))


def test_no_checkpoint_gives_none(tmp_path):
    assert load_latest_checkpoint(tmp_path) is None


def test_a_failing_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "file.bin"
    write_atomic(target, lambda f: f.write(b"complete"))

    def crash(file):
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, crash)
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_temporary_files_are_not_listed_as_checkpoints(tmp_path):
    save_checkpoint(tmp_path, 5, {"step": 5})
    (tmp_path / "checkpoints" / ".step_0000009.pt.abc").write_bytes(b"partial")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000005.pt"]
    assert load_latest_checkpoint(tmp_path)["step"] == 5


# --- the metrics log ---------------------------------------------------------------------------


def test_trim_metrics_drops_later_entries_and_a_cut_line(tmp_path):
    lines = [{"event": "train", "step": 1}, {"event": "eval", "step": 2}, {"event": "train"}]
    lines += [{"event": "train", "step": 3}]
    text = "".join(json.dumps(e) + "\n" for e in lines) + '{"event": "train", "st'
    RunDir(tmp_path).metrics_file.write_text(text)
    assert [e.get("step") for e in read_metrics(tmp_path)] == [1, 2, None, 3]
    trim_metrics(tmp_path, 2)
    assert read_metrics(tmp_path) == lines[:3]  # an entry without a step counts as step 0
    trim_metrics(tmp_path / "none", 2)  # no log: nothing to do
    assert read_metrics(tmp_path / "none") == []


# --- shells ------------------------------------------------------------------------------------


def test_shells_are_numbered_from_0_outermost_first():
    model = load_config("demo", ["model.shells={0=[0.9, 0.5, 0.1], 5=[0.5]}"]).model
    shells = shells_at(model, 4)
    assert [s.number for s in shells] == [0, 1, 2]
    assert [s.cdf for s in shells] == [0.9, 0.5, 0.1]
    k = model.sharpness
    expected = [math.log(9) / k, 0.0, -math.log(9) / k]  # logit(p) / k
    assert [s.level for s in shells] == pytest.approx(expected)
    assert shell_levels_at(model, 4) == [s.level for s in shells]
    assert [s.suffix for s in shells] == ["_shell0", "_shell1", "_shell2"]
    assert shells[0].label == "shell 0 (p=0.9)"
    assert [s.cdf for s in shells_at(model, 5)] == [0.5]  # the schedule's later entry


# --- Snapshot and open_run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(blender_root, tmp_path_factory):
    """Two checkpoints (steps 1 and 2) of a tiny CPU run."""
    overrides = [
        f"dataset.root={blender_root}",
        "dataset.scene=toy",
        "model.resolution={0=12}",
        "model.backend=reference",
        "model.train_ssaa=1",
        "model.eval_ssaa=1",
        "optim.batch_size=2",
        "train.steps=2",
        "train.checkpoint_interval=1",
        "train.device=cpu",
    ]
    config = load_config("nerf_synthetic", overrides)
    run_dir = tmp_path_factory.mktemp("run") / "run"
    prepare_run_dir(run_dir, config, resume=False, overwrite=False)
    trainer = Trainer(config, run_dir, echo=lambda _: None)
    trainer.run(stop_at=1)
    trainer.run()  # finishes: checkpoints 1 and 2
    return trainer


def test_open_run_reads_a_checkpoint_and_loads_the_dataset_lazily(trained):
    snapshot = open_run(trained.run_dir, device="cpu")
    assert snapshot.step == 2 and snapshot.run_dir == trained.run_dir
    assert torch.equal(snapshot.field.sdf, trained.field.sdf.detach())
    assert snapshot._dataset is None  # not read until asked for
    assert len(snapshot.dataset.splits["test"]) == 2
    assert snapshot.shell_levels() == shell_levels_at(trained.config.model, 2)
    assert open_run(trained.run_dir, step=1, device="cpu").step == 1
    with pytest.raises(RunError, match="it has steps 1, 2"):
        open_run(trained.run_dir, step=3)


def test_open_run_falls_back_from_a_damaged_newest_checkpoint(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained.run_dir, copy)
    newest = RunDir(copy).checkpoint(2)
    newest.write_bytes(newest.read_bytes()[:100])
    warnings = []
    snapshot = open_run(copy, device="cpu", warn=warnings.append)
    assert snapshot.step == 1
    assert warnings[0].startswith(f"warning: cannot read checkpoint {newest}")
    with pytest.raises(RunError, match="cannot read checkpoint"):
        open_run(copy, step=2)


def test_open_run_applies_overrides_and_the_run_s_device(trained):
    snapshot = open_run(trained.run_dir, device=None, overrides=["viewer.port=9999"])
    assert snapshot.config.viewer.port == 9999 and snapshot.field.device.type == "cpu"
    with pytest.raises(ConfigError, match="unknown configuration key"):
        open_run(trained.run_dir, overrides=["viewer.bogus=1"])


def test_open_run_refuses_another_checkpoint_format(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained.run_dir, copy)
    state = torch.load(RunDir(copy).checkpoint(2), weights_only=False)
    assert state["format"] == CHECKPOINT_FORMAT
    state["format"] = CHECKPOINT_FORMAT + 1
    torch.save(state, RunDir(copy).checkpoint(2))
    with pytest.raises(ConfigError, match=f"checkpoint format {CHECKPOINT_FORMAT + 1}"):
        open_run(copy, device="cpu")


def test_trainer_snapshot_is_the_live_state(trained):
    snapshot = trained.snapshot()
    assert isinstance(snapshot, Snapshot)
    assert snapshot.field is trained.field and snapshot.dataset is trained.dataset
    assert snapshot.files.mesh_file(2, "ply") == trained.run_dir / "mesh" / "mesh_step_0000002.ply"
    with pytest.raises(ValueError, match=r"--shell must be in 0..3 at step 2 \(4 shells\), got 4"):
        snapshot.shell(4, what="--shell")
    detached = Snapshot(trained.config, 2, trained.field)
    with pytest.raises(RunError, match="no run directory"):
        detached.files  # noqa: B018


def test_the_old_import_paths_still_work():
    from meshtryoshka_train import checkpoint, run, saved_run, trainer

    assert saved_run.SavedRun is run.Snapshot and saved_run.open_run is run.open_run
    assert checkpoint.write_atomic is run.write_atomic
    for name in ("prepare_run_dir", "run_dir_lock", "default_run_dir", "load_scene"):
        assert getattr(trainer, name) is getattr(run, name), name
