"""Data-parallel training of the demo with torchrun on the CPU (gloo), against one process.

Four runs of 6 steps (a resolution change 16 -> 24 at step 3, the SH degree growing at step 2)
share the module: one process, two ranks, and each of them stopped after step 3 and resumed on
the other rank count. The two ranks' summed gradient is the one-process gradient up to float
summation order; Adam then turns that rounding into larger differences where a gradient is
near zero (its first step moves a value by ``lr * g / (|g| + 1e-8)``, so a gradient of 1e-7
that rounds to 0 or 2e-7 moves by 0 or ~lr): see the tolerances below.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from meshtryoshka_train.config import load_config
from meshtryoshka_train.run import prepare_run_dir, read_metrics
from meshtryoshka_train.trainer import Trainer

STEPS, RESUME_AT = 6, 3
OVERRIDES = [
    f"train.steps={STEPS}",
    "model.resolution={0=16, 3=24}",
    "model.min_voxel_pixels=0",  # tiny images: follow the schedule
    "model.sh_degree={0=0, 2=1}",
    "model.backend=reference",
    "model.eval_ssaa=1",
    "train.device=cpu",
    "train.log_interval=1",
    "train.eval_interval=0",
    "train.checkpoint_interval=1",
    "train.keep_checkpoints=10",
    "train.export_mesh=false",
    "train.distributed_timeout=60",
]
#: the demo's learning rate of the signed distance (optim.lr)
LR = load_config("demo").optim.lr

#: Step 1, Adam's first moment ``0.1 * gradient``: equal up to float32 rounding of the summed
#: gradient, relative to its largest value (measured: 1.4e-7 for sdf, 0 for sh_dc).
GRADIENT_RTOL = 1e-6
#: After 6 steps and a resolution change (the grids must be identical): at most this fraction
#: of the values differs by more than 1e-4 (measured: up to 1.5%, for sdf; Adam amplifies the
#: rounding where a gradient is ~0, and the moved values feed the next steps), and none by more
#: than `MAX_LR_FRACTION` of the learning rate (measured: 0.19, i.e. 0.0056 for sdf values of
#: up to 54). The loss logged at each step agrees to `LOSS_RTOL` (measured: 1e-4).
LOOSE_FRACTION, MAX_LR_FRACTION, LOSS_RTOL = 0.10, 0.5, 1e-3


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _one_process(run_dir: Path, resume: bool = False) -> None:
    config = load_config("demo", OVERRIDES)
    if not resume:
        prepare_run_dir(run_dir, config, resume=False, overwrite=False)
    Trainer(config, run_dir, resume=resume, echo=lambda text: None).run()


def _two_ranks(torchrun, run_dir: Path, resume: bool = False) -> subprocess.CompletedProcess:
    args = ["-m", "meshtryoshka_train", "--run-dir", str(run_dir)]
    args += ["--resume"] if resume else ["--experiment", "demo", *OVERRIDES]
    return torchrun(*args, timeout=120)


def _stopped_copy(source: Path, target: Path) -> Path:
    """`source` as a run stopped after step `RESUME_AT`: its config and that checkpoint."""
    (target / "checkpoints").mkdir(parents=True)
    shutil.copy(source / "config.toml", target / "config.toml")
    name = f"step_{RESUME_AT:07d}.pt"
    shutil.copy(source / "checkpoints" / name, target / "checkpoints" / name)
    return target


@pytest.fixture(scope="module")
def runs(tmp_path_factory, torchrun) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data_parallel")
    runs = {"one": root / "one", "two": root / "two"}
    _one_process(runs["one"])
    runs["two_output"] = _two_ranks(torchrun, runs["two"]).stdout
    runs["two_then_one"] = _stopped_copy(runs["two"], root / "two_then_one")
    _one_process(runs["two_then_one"], resume=True)
    runs["one_then_two"] = _stopped_copy(runs["one"], root / "one_then_two")
    _two_ranks(torchrun, runs["one_then_two"], resume=True)
    return runs


def _checkpoint(run_dir: Path, step: int) -> dict:
    return torch.load(run_dir / "checkpoints" / f"step_{step:07d}.pt", weights_only=False)


def _parameters(state: dict) -> dict[str, torch.Tensor]:
    field = state["field"]
    named = {"sdf": field["sdf"], "sh_dc": field["sh_dc"]}
    named.update({f"sh_band{i}": t for i, t in enumerate(field["sh_bands"], start=1)})
    return named


def _same(a, b) -> bool:
    """Whether nested tuples/lists/dicts of tensors and plain values are exactly equal."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _assert_close_after_training(a: dict, b: dict, what: str) -> None:
    assert a["step"] == b["step"] and torch.equal(a["batch_generator"], b["batch_generator"])
    assert _same(a["field"]["grids"], b["field"]["grids"]), what  # occupancy, voxel for voxel
    for name, pa in _parameters(a).items():
        pb = _parameters(b)[name]
        assert pa.shape == pb.shape, (what, name)
        difference = (pa - pb).abs()
        loose = float((difference > 1e-4).float().mean())
        worst = float(difference.max())
        assert loose <= LOOSE_FRACTION, f"{what} {name}: {loose:.1%} of values differ > 1e-4"
        assert worst <= MAX_LR_FRACTION * LR, f"{what} {name}: max |difference| {worst:.3g}"


def test_the_summed_gradient_of_two_ranks_is_the_one_process_gradient(runs):
    one, two = _checkpoint(runs["one"], 1), _checkpoint(runs["two"], 1)
    for group, (state_a, state_b) in enumerate(
        zip(one["optimizer"]["state"].values(), two["optimizer"]["state"].values(), strict=True)
    ):
        a, b = state_a["exp_avg"], state_b["exp_avg"]  # 0.1 * the step-1 gradient
        scale = float(a.abs().max())
        assert scale > 0
        worst = float((a - b).abs().max())
        assert worst <= GRADIENT_RTOL * scale, f"group {group}: {worst:.3g} of {scale:.3g}"


def test_two_ranks_train_like_one_process_through_a_resolution_change(runs):
    final_one, final_two = _checkpoint(runs["one"], STEPS), _checkpoint(runs["two"], STEPS)
    assert final_one["field"]["center_resolution"] == 24
    assert len(final_one["field"]["sh_bands"]) == 1
    _assert_close_after_training(final_one, final_two, "one process vs two ranks")
    losses = {}
    for name in ("one", "two"):
        losses[name] = [e["total"] for e in read_metrics(runs[name]) if e["event"] == "train"]
    assert losses["one"] == pytest.approx(losses["two"], rel=LOSS_RTOL)


def test_a_checkpoint_resumes_on_another_number_of_ranks(runs):
    one, two = _checkpoint(runs["one"], STEPS), _checkpoint(runs["two"], STEPS)
    _assert_close_after_training(one, _checkpoint(runs["two_then_one"], STEPS), "2 -> 1 rank")
    _assert_close_after_training(two, _checkpoint(runs["two_then_one"], STEPS), "2 -> 1 rank")
    _assert_close_after_training(one, _checkpoint(runs["one_then_two"], STEPS), "1 -> 2 ranks")


def test_rank_zero_alone_writes_and_prints(runs):
    one, two = runs["one"], runs["two"]
    files = {p.relative_to(one) for p in one.rglob("*")}
    assert {p.relative_to(two) for p in two.rglob("*")} == files
    steps = [e["step"] for e in read_metrics(two) if e["event"] == "train"]
    assert steps == list(range(1, STEPS + 1))  # each step logged once
    assert len([e for e in read_metrics(two) if e["event"] == "test"]) == 1
    output = runs["two_output"]
    assert output.count("step 1/6 ") == 1 and output.count("test PSNR at step 6") == 1
    assert "2 ranks (gloo)" in output


# --- a lost or stopped rank: every rank stops, none hangs --------------------------------------


def _start(port: int, run_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(port), "-m", "meshtryoshka_train", "--experiment", "demo",
        "--run-dir", str(run_dir), *OVERRIDES, "train.steps=100000",
        "train.checkpoint_interval=0", *overrides,
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _rank_pids(launcher: subprocess.Popen, run_dir: Path) -> dict[int, int]:
    """{rank: pid} of torchrun's workers, once both have taken a training step."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise AssertionError(f"torchrun ended early:\n{launcher.stdout.read()}")
        if any(e.get("event") == "train" for e in read_metrics(run_dir)):
            return _children(launcher.pid)
        time.sleep(0.2)
    raise AssertionError("no training step within 60 s")


def _children(parent: int) -> dict[int, int]:
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        for variable in environment:
            if variable.startswith(b"RANK="):
                ranks[int(variable[5:])] = int(entry.name)
    return ranks


def _wait(launcher: subprocess.Popen, seconds: float) -> str:
    try:
        output, _ = launcher.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        launcher.kill()
        output, _ = launcher.communicate()
        raise AssertionError(f"torchrun still running after {seconds} s:\n{output}") from None
    return output


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks' pids in /proc")
def test_a_killed_rank_stops_the_others(tmp_path, free_port):
    launcher = _start(free_port(), tmp_path / "run")
    pids = _rank_pids(launcher, tmp_path / "run")
    os.kill(pids[1], signal.SIGKILL)
    started = time.monotonic()
    output = _wait(launcher, 60)
    assert launcher.returncode != 0
    assert time.monotonic() - started < 60
    # torchrun names the rank that died first; rank 0 was stopped with it
    assert "Root Cause" in output and "Signal 9 (SIGKILL)" in output, output
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids.values())


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks' pids in /proc")
def test_a_stopped_rank_makes_the_others_fail_after_the_timeout(tmp_path, free_port):
    launcher = _start(free_port(), tmp_path / "run", "train.distributed_timeout=3")
    pids = _rank_pids(launcher, tmp_path / "run")
    os.kill(pids[1], signal.SIGSTOP)  # alive but silent: only the timeout notices
    started = time.monotonic()
    try:
        while Path(f"/proc/{pids[0]}").exists() and time.monotonic() - started < 60:
            time.sleep(0.2)
        waited = time.monotonic() - started
    finally:
        os.kill(pids[1], signal.SIGCONT)  # torchrun's SIGTERM then ends it at once
    output = _wait(launcher, 60)
    assert 3 <= waited < 30, waited
    assert launcher.returncode != 0
    assert "Error: rank 0 of 2: " in output and " failed (" in output, output
    assert "train.distributed_timeout = 3 s" in output, output


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks' pids in /proc")
@pytest.mark.parametrize("how", ["SIGTERM to rank 1", "Ctrl-C"])
def test_a_stop_request_stops_every_rank_after_the_same_step(tmp_path, free_port, how):
    run_dir = tmp_path / "run"
    launcher = _start(free_port(), run_dir)
    pids = _rank_pids(launcher, run_dir)
    if how == "Ctrl-C":  # a terminal signals the whole job (and torchrun passes it on again)
        os.killpg(launcher.pid, signal.SIGINT)
        name, status = "SIGINT", None  # torchrun, itself interrupted, prints no table
    else:
        os.kill(pids[1], signal.SIGTERM)
        name, status = "SIGTERM", 143
    output = _wait(launcher, 60)
    assert launcher.returncode != 0
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert len(checkpoints) == 1, output
    step = int(checkpoints[0].stem.split("_")[1])
    assert output.count(f"{name}: training stopped at step {step} of 100000") == 1, output
    if status is not None:  # torchrun's table of the ranks' statuses (128 + signal)
        assert output.count(f"exitcode  : {status}") == 2, output
    assert max(e["step"] for e in read_metrics(run_dir) if e["event"] == "train") == step


# --- the scaling benchmark, tiny, on the CPU -------------------------------------------------


def test_the_scaling_benchmark_runs_on_the_cpu(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "bench_distributed.py"
    rows = tmp_path / "rows.jsonl"
    command = [sys.executable, str(script), "--ranks", "1", "2", "--device", "cpu"]
    command += ["--steps", "2", "--warmup", "1", "--resolution", "16", "--batch-size", "2"]
    result = subprocess.run(
        [*command, "--json", str(rows)], capture_output=True, text=True, timeout=180, env=_env()
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in table[1:]] == ["1", "2"]
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [(row["ranks"], row["rank"]) for row in written] == [(1, 0), (2, 0), (2, 1)]
    assert all(row["backend"] == "gloo" and row["steps_per_second"] > 0 for row in written)
