"""The scale rehearsal (benchmarks/bench_schedule.py) runs on the CPU at a tiny size: a COLMAP
scene repeated to more views, two compressed stages through a real resolution change, the
table, the extrapolation and the profile of each stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from meshtryoshka_data import read_colmap_model, write_colmap_scene

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "bench_schedule.py"


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_schedule", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repeat_views_extends_a_colmap_scene_with_the_same_poses(tmp_path):
    bench = _load_script()
    write_colmap_scene(tmp_path / "scene", n_images=5, sparse_formats=("bin",))
    bench.repeat_views(tmp_path / "scene", 12)
    model = read_colmap_model(tmp_path / "scene" / "sparse" / "0")
    images = sorted(model.images.values(), key=lambda image: image.name)
    assert len(images) == 12 and len({image.image_id for image in images}) == 12
    originals = {image.name: image for image in images if not image.name.startswith("repeat")}
    assert len(originals) == 5
    for image in images:
        assert (tmp_path / "scene" / "images" / image.name).is_file()
        source = originals[
            image.name.split("_", 1)[1] if image.name.startswith("repeat") else image.name
        ]
        assert (image.qvec == source.qvec).all() and (image.tvec == source.tvec).all()


def test_a_tiny_rehearsal_prints_every_stage_and_the_extrapolation(tmp_path):
    write_colmap_scene(tmp_path / "tiny", n_images=6, size=(32, 24), sparse_formats=("bin",))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--experiment", "mip360", "--source",
         str(tmp_path / "tiny"), "--size", "16x12", "--views", "9", "--steps-per-stage", "3",
         "--profile-steps", "1", "--device", "cpu", "model.backend=reference",
         "model.resolution={0 = 8, 100 = 12}", "model.arm_resolution={0 = 4}",
         "train.steps=200", "optim.batch_size=2", "dataset.llffhold=3"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "mip360: 16x12 images from tiny (9 views), 3 steps per stage" in out
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| 0-99 |") or line.startswith("| 100-199 |")
    ]
    assert [row.split("|")[2].strip() for row in rows] == ["8/4", "12/4"]
    assert out.count("profile stage") == 2 and "kernel launches" in out
    assert "full schedule (200 steps), extrapolated:" in out


def test_the_rehearsal_shows_where_a_refinement_stop_kept_the_grid(tmp_path):
    write_colmap_scene(tmp_path / "tiny", n_images=6, size=(32, 24), sparse_formats=("bin",))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--experiment", "mip360", "--source",
         str(tmp_path / "tiny"), "--size", "16x12", "--views", "9", "--steps-per-stage", "2",
         "--device", "cpu", "model.backend=reference", "model.max_voxels=1",
         "model.resolution={0 = 8, 100 = 12}", "model.arm_resolution={0 = 4}",
         "train.steps=200", "optim.batch_size=2", "dataset.llffhold=3"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 100-199 |")]
    assert rows and rows[0].split("|")[2].strip() == "8/4 (stopped; schedule 12/4)"


def test_a_host_sync_is_named_by_the_innermost_line_of_our_packages():
    import traceback

    bench = _load_script()
    frame = traceback.FrameSummary
    stack = [
        frame("/w/packages/meshtryoshka-train/benchmarks/bench_schedule.py", 160, "rehearse"),
        frame("/w/packages/meshtryoshka-train/src/meshtryoshka_train/trainer.py", 489, "step"),
        frame("/w/packages/slang-marching-cubes/src/slang_marching_cubes/api.py", 42, "_check"),
        frame("/venv/lib/python3.12/site-packages/torch/functional.py", 10, "unique"),
    ]
    assert bench.sync_location(stack) == "slang_marching_cubes/api.py:42 (_check)"
    assert bench.sync_location(stack[:1] + stack[3:]) == "functional.py:10 (unique)"


def test_the_sync_report_counts_each_blocking_line_of_one_step(monkeypatch):
    import warnings

    import torch

    bench = _load_script()
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def blocking_op():
        # what torch warns per sync (the stack, not the warning's own location, names it)
        warnings.warn("called a synchronizing CUDA operation", stacklevel=1)

    class Trainer:
        step = 7

        def apply_schedules(self, step):
            assert step == 7

        def train_step(self):
            blocking_op()
            blocking_op()
            warnings.warn("another sync", stacklevel=1)

    trainer = Trainer()
    filters = list(warnings.filters)
    points = bench.sync_points(trainer)
    assert modes == ["warn", "default"] and trainer.step == 8
    assert warnings.filters == filters  # the caller's warning filters are back
    counts = sorted(points.items())
    assert [count for _, count in counts] == [2, 1]
    assert counts[0][0].startswith("test_bench_schedule.py:") and "(blocking_op)" in counts[0][0]
    assert "(train_step)" in counts[1][0]
