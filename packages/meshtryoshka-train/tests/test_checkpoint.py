"""Atomic checkpoint writes, rotation and loading."""

import pytest
import torch

from meshtryoshka_train.checkpoint import (
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
    write_atomic,
)


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
