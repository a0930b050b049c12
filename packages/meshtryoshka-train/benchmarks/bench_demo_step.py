"""Benchmark: one training step of the demo experiment on the CPU, per grid resolution.

Builds the demo field at 32^3, refines it to each resolution asked for (as the schedule does:
shells kept, occupancy dilated, unseen voxels dropped), then times training steps there: the
reference marching cubes, the reference rasterizer (forward + backward), the regularizers and
Adam. CPU time (all threads) and wall time per step, median over the repeats.

    python benchmarks/bench_demo_step.py --resolutions 32 48 64 --threads 1 2

Measured (torch 2.13 CPU, one thread of a shared 2-core VM): about 0.2 s of CPU per step at
32^3 and 0.45 s at 64^3 in the demo's own schedule (32 -> 48 -> 64; this script's direct
refinement from 32^3 keeps a wider band, so its 64^3 rows are slower); the whole 1000-step demo,
evaluation and mesh export included, takes 300 s of CPU time. Idle 2-core VM, 48^3: 0.28-0.33 s
wall per step with one thread, 0.22 s with two. On a machine whose cores are busy with other
work, two torch threads were up to 10x slower than one (threads wait for each other).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from meshtryoshka_train.config import load_config
from meshtryoshka_train.trainer import Trainer


def bench(resolution: int, threads: int, steps: int) -> dict:
    torch.set_num_threads(threads)
    schedule = "{0=32}" if resolution == 32 else f"{{0=32,2={resolution}}}"
    config = load_config("demo", [f"model.resolution={schedule}", "train.device=cpu"])
    run_dir = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    try:
        trainer = Trainer(config, run_dir, echo=lambda _: None)
        for _ in range(3):  # two steps at 32^3, then the refinement and one warm-up step
            trainer.apply_schedules(trainer.step)
            trainer.train_step()
            trainer.step += 1
        cpu, wall = [], []
        for _ in range(steps):
            trainer.apply_schedules(trainer.step)
            c0, w0 = time.process_time(), time.perf_counter()
            stats = trainer.train_step()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            trainer.step += 1
        return {
            "resolution": resolution,
            "threads": threads,
            "voxels": trainer.field.num_voxels,
            "faces": int(stats["faces"]),
            "cpu_s": statistics.median(cpu),
            "wall_s": statistics.median(wall),
        }
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 48, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    args = parser.parse_args()
    print("| resolution | threads | voxels | faces | CPU s/step | wall s/step |")
    print("|---:|---:|---:|---:|---:|---:|")
    for resolution in args.resolutions:
        for threads in args.threads:
            row = bench(resolution, threads, args.steps)
            print(
                f"| {row['resolution']} | {row['threads']} | {row['voxels']} | {row['faces']} "
                f"| {row['cpu_s']:.3f} | {row['wall_s']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
