"""Benchmark: data-parallel scaling of one scene, 1, 2, 4, 8 ranks (torchrun, NCCL or gloo).

For each rank count the script launches ``torchrun --nproc-per-node N`` on itself; every rank
builds the same `Trainer` (rank 0 prepares a temporary run directory), takes `--warmup` steps,
then `--steps` timed steps of the same global batch (`--batch-size` images split over the
ranks), with a device synchronization and a barrier around the timed loop. Each rank reports
its steps per second and its peak memory (GPU: ``torch.cuda.max_memory_allocated``; CPU: the
process's peak resident set), and the table gives the slowest rank's rate and the largest
peak. Every row, one rank included, runs through a process group (NCCL on GPUs, gloo on the
CPU), so the one-rank row pays for the all_reduce too; ``--plain-single`` runs one rank as a
plain process instead.

    # GPUs: one GPU per rank
    python benchmarks/bench_distributed.py --ranks 1 2 4 8 --experiment nerf_synthetic \\
        --set dataset.root=/data/nerf_synthetic --set dataset.scene=lego --resolution 128
    # CPU smoke run (gloo)
    python benchmarks/bench_distributed.py --ranks 1 2 --device cpu --steps 2 --warmup 1

Measured: nothing on GPUs yet. No machine with several GPUs was available, so the scaling
is unmeasured; the CPU run only shows that the script works (two ranks on a 2-core VM share
the cores with everything else).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    """One rank (under torchrun): train `warmup` steps, time `steps`, write a JSON line."""
    import torch

    from meshtryoshka_train.config import load_config
    from meshtryoshka_train.distributed import Distributed
    from meshtryoshka_train.run import prepare_run_dir, resolve_device
    from meshtryoshka_train.trainer import Trainer

    overrides = [
        f"train.device={args.device}",
        f"optim.batch_size={args.batch_size}",
        f"model.resolution={{0={args.resolution}}}",
        f"train.steps={args.warmup + args.steps + 1}",
        *(["model.backend=reference"] if args.device == "cpu" else []),
        *args.set,
    ]
    config = load_config(args.experiment, overrides)
    use_cuda = resolve_device(config.train.device).type == "cuda"
    group = Distributed.from_environment(use_cuda, timeout=600)
    run_dir = Path(args.run_dir)
    if group.is_main:
        prepare_run_dir(run_dir, config, resume=False, overwrite=True)
    group.barrier()
    trainer = Trainer(config, run_dir, echo=lambda _: None, group=group)

    def steps(count: int) -> None:
        for _ in range(count):
            trainer.apply_schedules(trainer.step)
            trainer.train_step()
            trainer.step += 1

    def synchronize() -> None:
        if use_cuda:
            torch.cuda.synchronize(trainer.device)
        group.barrier()

    steps(args.warmup)
    if use_cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    synchronize()
    start = time.perf_counter()
    steps(args.steps)
    synchronize()
    elapsed = time.perf_counter() - start
    if use_cuda:
        peak = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    else:  # ru_maxrss: KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    row = {
        "rank": group.rank,
        "world_size": group.world_size,
        "backend": group.backend or "none",
        "device": str(trainer.device),
        "steps_per_second": args.steps / elapsed,
        "peak_gib": peak,
        "peak_kind": "cuda allocated" if use_cuda else "process RSS",
        "voxels": trainer.field.num_voxels,
    }
    with open(Path(args.out) / f"rank{group.rank}.json", "w") as file:
        file.write(json.dumps(row) + "\n")
    group.close(wait=True)  # all ranks leave together (one leaving early can abort at exit)


def launch(ranks: int, args: argparse.Namespace, out: Path, run_dir: Path) -> list[dict]:
    """Run this script under ``torchrun --nproc-per-node ranks``; the ranks' rows."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
        "--master-port", str(port), __file__, "--worker", "--out", str(out),
        "--run-dir", str(run_dir), "--experiment", args.experiment, "--device", args.device,
        "--batch-size", str(args.batch_size), "--resolution", str(args.resolution),
        "--steps", str(args.steps), "--warmup", str(args.warmup),
        *(f"--set={item}" for item in args.set),
    ]  # fmt: skip
    env = dict(os.environ)
    if not (ranks == 1 and args.plain_single):
        env["MESHTRYOSHKA_PROCESS_GROUP"] = "always"  # one rank still all_reduces
    if args.device == "cpu":
        env.setdefault("OMP_NUM_THREADS", "1")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{ranks} ranks failed:\n{result.stdout}\n{result.stderr}")
    return [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=8, help="global batch (images)")
    parser.add_argument("--resolution", type=int, default=32, help="fixed grid resolution")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--set", action="append", default=[], help="a key=value override")
    parser.add_argument("--plain-single", action="store_true", help="1 rank: no group")
    parser.add_argument("--json", type=Path, help="also append the rows to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(
        f"{args.experiment}, resolution {args.resolution}, global batch {args.batch_size}, "
        f"{args.steps} timed steps after {args.warmup}"
    )
    print("| ranks | backend | device (rank 0) | steps/s (slowest rank) | speed-up | peak GiB |")
    print("|---:|---|---|---:|---:|---:|")
    base = None
    for ranks in args.ranks:
        scratch = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
        try:
            out = scratch / "out"
            out.mkdir()
            rows = launch(ranks, args, out, scratch / "run")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        rate = min(row["steps_per_second"] for row in rows)
        peak = max(row["peak_gib"] for row in rows)
        base = base or rate
        print(
            f"| {ranks} | {rows[0]['backend']} | {rows[0]['device']} | {rate:.2f} "
            f"| {rate / base:.2f}x | {peak:.2f} ({rows[0]['peak_kind']}) |",
            flush=True,
        )
        if args.json:
            with open(args.json, "a") as file:
                for row in rows:
                    file.write(json.dumps({**row, "ranks": ranks, **_setting(args)}) + "\n")


def _setting(args: argparse.Namespace) -> dict:
    keys = ("experiment", "device", "batch_size", "resolution", "steps", "warmup", "set")
    return {key: getattr(args, key) for key in keys}


if __name__ == "__main__":
    main()
