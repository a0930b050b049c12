"""The quality benchmark (benchmarks/bench_quality.py) on the CPU at a tiny size: a run, the
results file and its summary, and ``--resume`` skipping a finished run and continuing a stopped
one from its checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from meshtryoshka_data import write_blender_scene

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "bench_quality.py"
TINY = [
    "model.backend=reference", "train.device=cpu", "model.resolution={0=12}",
    "model.train_ssaa=1", "model.eval_ssaa=1", "optim.batch_size=2",
]  # fmt: skip


def bench(scenes: Path, out: Path, *extra: str) -> str:
    command = [
        sys.executable, str(SCRIPT), "--scenes-dir", str(scenes), "--scenes", "texture",
        "--steps", "4", "--seeds", "0", "--variants", "default", "--parallel", "1",
        "--threads", "1", "--eval-every", "0", "--out", str(out), "--override", *TINY, *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_run_then_resume_skips_it_and_continues_a_stopped_one(tmp_path):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    write_blender_scene(scenes / "texture", n_train=8, n_val=1, n_test=2, size=24, seed=0)
    (scenes / "texture" / ".complete").touch()
    printed = bench(scenes, out)
    assert "done texture/default/seed0/4" in printed
    [first] = rows(out)
    assert first["finished"] and first["last_step"] == 4 and first["layered_psnr"] > 5
    assert "| texture | default | 1 |" in printed  # the summary table

    assert "already finished: texture/default/seed0/4" in bench(scenes, out, "--resume")
    assert len(rows(out)) == 1  # nothing ran again

    # A run stopped after its last step's checkpoint but before its final evaluation (as
    # SIGTERM at a deadline leaves one): --resume evaluates it, from the checkpoint.
    run_dir = out / "runs" / "texture-default-s0-n4"
    metrics = run_dir / "metrics.jsonl"
    kept = [line for line in metrics.read_text().splitlines() if '"event": "test"' not in line]
    metrics.write_text("".join(line + "\n" for line in kept))
    printed = bench(scenes, out, "--resume")
    assert "done texture/default/seed0/4" in printed
    second = rows(out)[-1]
    assert second["finished"] and second["last_step"] == 4
    assert abs(second["layered_psnr"] - first["layered_psnr"]) < 1e-4  # the same field
    log = (out / "runs" / "texture-default-s0-n4.log").read_text()
    # the first run's output is kept: the resumed one is appended to its log
    assert 0 <= log.index("training 'nerf_synthetic'") < log.index("resumed from step 4")


def test_summary_compares_stopped_runs_at_the_last_evaluation_both_reached(
    tmp_path, capsys, monkeypatch
):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_quality", module)  # its dataclass looks itself up
    spec.loader.exec_module(module)

    def record(variant, seed, curve, finished, **extra):
        last = curve[-1][0]
        return {"scene": "thin", "variant": variant, "seed": seed, "steps": 3000,
                "last_step": last, "finished": finished, "layered_psnr": curve[-1][1],
                "surface_psnr": curve[-1][1], "layered_ssim": 0.9,
                "psnr_curve": [[s, v, 10.0 * s] for s, v in curve], **extra}  # fmt: skip

    records = [
        record("original", 0, [(1000, 20.0)], False),  # superseded by the longer record
        record("original", 0, [(1000, 20.0), (2000, 25.0)], False),
        record("default", 0, [(1000, 21.0), (2000, 26.5), (3000, 27.0)], True),
        record("default", 1, [(1000, 21.0), (2000, 26.0), (3000, 27.0)], True),  # no partner
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    module.summarize(path)
    printed = capsys.readouterr().out
    assert "| thin | original | 0 | 2000 | 20.00 | 25.00 |  |" in printed
    # the base is the first variant with a finished run (here `default`)
    assert "| thin | original | 0 | 2000 | 25.00 | 26.50 | -1.50 |" in printed
    assert "`original` against `default`: -1.50 dB on average, better on 0/1" in printed
