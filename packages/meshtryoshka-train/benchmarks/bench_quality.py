"""Quality benchmark: train the shipped experiments on realistic scenes and compare recipes.

    python scripts/render_quality_scenes.py --out datasets/quality      # once (Mitsuba 3, CPU)
    python benchmarks/bench_quality.py --scenes-dir datasets/quality \\
        --steps 2000 --seeds 0 1 --variants default original --parallel 8

The scenes (``scripts/render_quality_scenes.py``): five NeRF-synthetic-format objects (200x200,
100 train / 25 test views: ``texture``, ``glossy``, ``thin``, ``hollow``, ``multi``) trained
with the ``nerf_synthetic`` experiment, and one unbounded COLMAP scene (``garden``) trained
with ``mip360``. Every run is a separate ``python -m meshtryoshka_train`` process with
``train.steps=N`` (so a run of N steps is a whole, shorter training, final evaluation on the
test split included) and a test-split evaluation every ``--eval-every`` steps; several run side
by side on one GPU (``--parallel``; their ms per step are then shared-GPU figures).

``--plan FILE`` runs several such matrices one after the other (a JSON list of
``{"steps", "seeds", "scenes", "variants"}``), most important first, for a time-boxed session.
A *variant* is a named list of overrides (`VARIANTS`; ``name+name`` combines them, and any
``key=value`` may be appended as ``name:key=value,key=value``). For each run the results file
(``OUT/results.jsonl``) holds test PSNR and SSIM (layered and surface), faces, voxels, ms per
step, peak memory, the PSNR at each evaluation and the training time to come within 0.2 dB
of the final PSNR. At the end (or with ``--summarize``) it prints, per variant and scene, the
means over the seeds, and per variant the mean over scenes with the paired difference to the
first variant.

``--deadline S`` stops starting runs that cannot finish in S seconds (estimated from the runs
so far) and stops the ones still running at S seconds (reported as unfinished; SIGTERM makes
each write a checkpoint of its last step), so a time-boxed GPU session always ends with the
results of the runs that finished. ``--resume`` (same ``--out`` and plan) then skips the runs
that finished and continues the stopped ones from their checkpoints, so long runs can span
several time-boxed calls.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshtryoshka_train.run import list_checkpoints, read_metrics

OBJECT_SCENES = ("texture", "glossy", "thin", "hollow", "multi")
UNBOUNDED_SCENES = ("garden",)

ORIGINAL_NERF_SYNTHETIC_RESOLUTION = (
    "model.resolution={0=32, 1201=64, 1601=128, 2001=192, 2401=256, 2801=320, 3201=384, "
    "3601=448, 4001=512, 4401=576, 4801=640, 5201=704, 5601=768, 6401=1024, 7201=1536, "
    "8001=2048}"
)

#: named override sets: a list for every experiment, or {experiment or "*": list}; "default"
#: is the shipped experiment as it is
VARIANTS: dict[str, list[str] | dict[str, list[str]]] = {
    "default": [],
    # every row of docs/recipe.md set to the original implementation's choice, and its
    # resolution schedule
    "original": {
        "*": [
            "loss.curvature_operator=laplacian",
            "loss.clip_prediction=true",
            "model.occupancy_rule=surface",
            "model.readd_initializer=true",
            "model.alpha_max=1.0",
            "optim.resample_state=reset",
            "optim.lr_decay_start=1.0",
            "model.point_cloud_init=fade",
            "model.min_voxel_pixels=0",
            "model.max_voxels=0",
        ],
        "nerf_synthetic": [ORIGINAL_NERF_SYNTHETIC_RESOLUTION],
    },
    # every row set to this project's earlier choice (before the recipe was aligned)
    "previous": {
        "*": [
            "loss.curvature_operator=gradient",
            "loss.clip_prediction=false",
            "model.occupancy_rule=shells",
            "model.readd_initializer=false",
            "model.alpha_max=0.99",
            "optim.resample_state=transfer",
            "optim.lr_decay_start=1.0",
            "model.point_cloud_init=baked",
            "model.min_voxel_pixels=0",
            "model.max_voxels=0",
        ],
        "nerf_synthetic": [ORIGINAL_NERF_SYNTHETIC_RESOLUTION],
    },
    # one row at a time: "original+<row>" flips that row to the previous choice
    "gradient_curvature": ["loss.curvature_operator=gradient"],
    "no_clip": ["loss.clip_prediction=false"],
    "shell_occupancy": ["model.occupancy_rule=shells"],
    "no_readd": ["model.readd_initializer=false"],
    "alpha_cap": ["model.alpha_max=0.99"],
    "transfer_adam": ["optim.resample_state=transfer"],
    "baked_point_cloud": ["model.point_cloud_init=baked"],
    "no_stop": ["model.min_voxel_pixels=0"],  # refine to the schedule's last resolution
    # candidate improvements
    "lr_decay": ["optim.lr_decay_start=0.5", "optim.lr_decay_final=0.1"],
    "lr_decay_late": ["optim.lr_decay_start=0.7", "optim.lr_decay_final=0.1"],
    # nerf_synthetic's resolution schedule with the 64 and 128 stages 400 steps earlier (shipped
    # from the first to the second benchmark of 2026-12-02)
    "early_fine": {
        "nerf_synthetic": [
            "model.resolution={0=32, 801=64, 1201=128, 2001=192, 2401=256, 2801=320, "
            "3201=384, 3601=448, 4001=512, 4401=576, 4801=640, 5201=704, 5601=768, 6401=1024, "
            "7201=1536, 8001=2048}"
        ]
    },
    # 64, 128 and 192 earlier still (192 from step 1601 instead of 2001): shipped since the
    # second benchmark of 2026-12-02
    "fine192": {
        "nerf_synthetic": [
            "model.resolution={0=32, 601=64, 1001=128, 1601=192, 2401=256, 2801=320, "
            "3201=384, 3601=448, 4001=512, 4401=576, 4801=640, 5201=704, 5601=768, 6401=1024, "
            "7201=1536, 8001=2048}"
        ]
    },
}


def variant_overrides(spec: str, experiment: str) -> list[str]:
    """Overrides of ``name[+name...][:key=value,...]`` for `experiment` (later entries win)."""
    names, _, extra = spec.partition(":")
    out: list[str] = []
    for name in names.split("+"):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        entry = VARIANTS[name]
        if isinstance(entry, dict):
            out += entry.get("*", []) + entry.get(experiment, [])
        else:
            out += entry
    return out + [item for item in extra.split(",") if item]


def scene_setup(scene: str, scenes_dir: Path) -> tuple[str, list[str]]:
    """(experiment, overrides) that point the shipped experiment at a benchmark scene."""
    if not (scenes_dir / scene / ".complete").is_file():
        raise SystemExit(
            f"scene {scene!r} is missing from {scenes_dir}: render it with "
            "scripts/render_quality_scenes.py --out " + str(scenes_dir)
        )
    common = [f"dataset.root={scenes_dir}", f"dataset.scene={scene}"]
    if scene in UNBOUNDED_SCENES:
        return "mip360", [*common, "dataset.downscale=1"]
    return "nerf_synthetic", common


@dataclass
class Run:
    scene: str
    variant: str
    seed: int
    steps: int
    run_dir: Path
    command: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    log: object = None
    result: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.scene}/{self.variant}/seed{self.seed}/{self.steps}"

    def state(self) -> str:
        """Where the run stands: ``finished`` (its final test evaluation is logged),
        ``stopped`` (a checkpoint to go on from) or ``new``."""
        tests = [e for e in read_metrics(self.run_dir) if e.get("event") == "test"]
        if tests and tests[-1]["step"] == self.steps:
            return "finished"
        return "stopped" if list_checkpoints(self.run_dir) else "new"

    def resume_command(self) -> list[str]:
        """Go on from the newest checkpoint (the run's settings are in its config.toml)."""
        return [
            sys.executable, "-m", "meshtryoshka_train", "--resume", "--run-dir", str(self.run_dir)
        ]  # fmt: skip


def make_runs(args) -> list[Run]:
    """The runs of every group of the plan, group by group (within one: steps, seed, scene,
    variant, the last varying fastest)."""
    groups = (
        json.loads(args.plan.read_text())
        if args.plan
        else [{"steps": args.steps, "seeds": args.seeds, "scenes": args.scenes,
               "variants": args.variants}]
    )  # fmt: skip
    combos = []
    for group in groups:
        for variant in group["variants"]:
            variant_overrides(variant, "")  # fail early on a typo
        combos += itertools.product(
            group["steps"], group["seeds"], group["scenes"], group["variants"]
        )
    runs = []
    for steps, seed, scene, variant in combos:
        experiment, overrides = scene_setup(scene, args.scenes_dir)
        name = f"{scene}-{variant.replace(':', '_').replace('=', '-').replace(',', '_')}"
        run_dir = args.out / "runs" / f"{name}-s{seed}-n{steps}"
        every = args.eval_every if args.eval_every else steps
        command = [
            sys.executable, "-m", "meshtryoshka_train", "--experiment", experiment,
            "--run-dir", str(run_dir), "--overwrite", *overrides,
            f"train.steps={steps}", f"train.seed={seed}", f"train.eval_interval={every}",
            "train.eval_split=test", "train.eval_images=0", "train.log_interval=50",
            f"train.checkpoint_interval={steps}", "train.keep_checkpoints=1",
            *variant_overrides(variant, experiment), *args.override,
        ]  # fmt: skip
        runs.append(Run(scene, variant, seed, steps, run_dir, command))
    return runs


def read_result(run: Run) -> dict:
    """The figures of a finished (or stopped) run, from its metrics.jsonl."""
    out = {"scene": run.scene, "variant": run.variant, "seed": run.seed, "steps": run.steps}
    entries = read_metrics(run.run_dir)
    train = [e for e in entries if e.get("event") == "train"]
    evals = [e for e in entries if e.get("event") in ("eval", "test")]
    test = [e for e in entries if e.get("event") == "test"]
    if train:
        last = train[-1]
        rates = [e["steps_per_second"] for e in train[1:]] or [last["steps_per_second"]]
        out.update(
            last_step=last["step"],
            voxels=last["voxels"],
            train_faces=last["faces"],
            ms_per_step=1e3 / statistics.median(rates),
            peak_memory_gib=max(e.get("peak_memory_gib", 0.0) for e in train),
            train_seconds=last.get("elapsed"),
            curvature=last.get("curvature"),
            eikonal_neg=last.get("eikonal_neg"),
            rgb=last.get("rgb"),
        )
    if test:
        final = test[-1]
        for mode in ("layered", "surface"):
            out[f"{mode}_psnr"] = final.get(f"{mode}_psnr")
            out[f"{mode}_ssim"] = final.get(f"{mode}_ssim")
        out["faces"] = final.get("layered_faces")
        out["surface_faces"] = final.get("surface_faces")
    out["psnr_curve"] = [(e["step"], e.get("layered_psnr"), e.get("elapsed")) for e in evals]
    if test and out["psnr_curve"]:
        target = out["layered_psnr"] - 0.2
        reached = [elapsed for _, value, elapsed in out["psnr_curve"] if value >= target]
        out["seconds_to_quality"] = reached[0] if reached else None
    out["finished"] = bool(test) and test[-1]["step"] == run.steps
    return out


def run_all(args) -> None:
    runs = make_runs(args)
    if args.resume:
        finished = [run for run in runs if run.run_dir.is_dir() and run.state() == "finished"]
        for run in finished:
            print(f"already finished: {run.key}", flush=True)
        runs = [run for run in runs if run not in finished]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    pending, active, durations = list(runs), [], []
    start = time.perf_counter()
    print(f"{len(runs)} runs, {args.parallel} at a time", flush=True)
    while pending or active:
        now = time.perf_counter() - start
        for run in list(active):
            if run.process.poll() is not None:
                active.remove(run)
                run.log.close()
                durations.append(time.perf_counter() - run.started)
                run.result = read_result(run) | {
                    "wall_s": durations[-1],
                    "rc": run.process.returncode,
                }
                with open(results_path, "a") as file:
                    file.write(json.dumps(run.result) + "\n")
                r = run.result
                layered, surface = (
                    r.get(f"{m}_psnr") or float("nan") for m in ("layered", "surface")
                )
                print(
                    f"[{now:6.0f} s] done {run.key}: layered {layered:.2f} surface"
                    f" {surface:.2f} dB, {durations[-1]:.0f} s, rc {r['rc']}", flush=True,
                )  # fmt: skip
        if args.deadline and now > args.deadline:
            for run in active:
                run.process.send_signal(signal.SIGTERM)
            for run in active:
                run.process.wait(timeout=60)
                run.log.close()
                result = read_result(run) | {
                    "wall_s": time.perf_counter() - run.started,
                    "rc": "stopped",
                }
                with open(results_path, "a") as file:
                    file.write(json.dumps(result) + "\n")
                print(f"stopped at the deadline: {run.key}", flush=True)
            print(f"deadline: {len(pending)} runs not started", flush=True)
            break
        while pending and len(active) < args.parallel:
            typical = statistics.median(durations) if durations else 0.0
            if args.deadline and durations and now + typical * 1.1 > args.deadline:
                print(f"deadline: {len(pending)} runs not started (typical run {typical:.0f} s)")
                pending.clear()
                break
            run = pending.pop(0)
            run.run_dir.parent.mkdir(parents=True, exist_ok=True)
            go_on = args.resume and run.run_dir.is_dir() and run.state() == "stopped"
            log_path = args.out / "runs" / f"{run.run_dir.name}.log"
            run.log = open(log_path, "a" if go_on else "w")
            run.started = time.perf_counter()
            run.process = subprocess.Popen(
                run.resume_command() if go_on else run.command,
                stdout=run.log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            active.append(run)
        time.sleep(1.0)
    summarize(results_path)


def _mean(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(values) if values else float("nan")


def summarize(results_path: Path) -> None:
    """Print the tables of a results file (markdown)."""
    if not results_path.is_file():
        print(f"no results in {results_path}")
        return
    records = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    rows = [r for r in records if r.get("finished")]
    if not rows:
        print("no finished runs")
        return
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    scenes = list(dict.fromkeys(r["scene"] for r in rows))
    for steps in sorted({r["steps"] for r in rows}):
        print(f"\n### {steps} steps (mean over seeds; n = runs)\n")
        print("| scene | variant | n | PSNR layered | PSNR surface | SSIM layered | faces | voxels"
              " | ms/step | peak GiB | s to -0.2 dB |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        table: dict[tuple[str, str], float] = {}
        for scene, variant in itertools.product(scenes, variants):
            group = [
                r for r in rows if (r["scene"], r["variant"], r["steps"]) == (scene, variant, steps)
            ]
            if not group:
                continue
            values = [r["layered_psnr"] for r in group]
            table[(scene, variant)] = _mean(values)
            spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
            print(
                f"| {scene} | {variant} | {len(group)} | {_mean(values):.2f}{spread} |"
                f" {_mean([r['surface_psnr'] for r in group]):.2f} |"
                f" {_mean([r['layered_ssim'] for r in group]):.4f} |"
                f" {_mean([r.get('faces') for r in group]) / 1e3:.0f}k |"
                f" {_mean([r.get('voxels') for r in group]) / 1e3:.0f}k |"
                f" {_mean([r.get('ms_per_step') for r in group]):.1f} |"
                f" {_mean([r.get('peak_memory_gib') for r in group]):.2f} |"
                f" {_mean([r.get('seconds_to_quality') for r in group]):.0f} |"
            )  # fmt: skip
        base = variants[0]
        print(f"\nPer variant: mean layered PSNR over the scenes both ran, and the paired "
              f"difference to `{base}` (scenes better / scenes compared).\n")  # fmt: skip
        print("| variant | mean PSNR | vs " + base + " | better |")
        print("|---|---:|---:|---:|")
        for variant in variants:
            common = [s for s in scenes if (s, variant) in table and (s, base) in table]
            if not common:
                continue
            diffs = [table[(s, variant)] - table[(s, base)] for s in common]
            mean = _mean([table[(s, variant)] for s in common])
            better = sum(d > 0 for d in diffs)
            print(f"| {variant} | {mean:.2f} | {_mean(diffs):+.2f} | {better}/{len(common)} |")
        curves: dict[str, dict[int, list[float]]] = {}
        for r in rows:
            if r["steps"] != steps:
                continue
            for step, value, _ in r["psnr_curve"]:
                curves.setdefault(r["variant"], {}).setdefault(step, []).append(value)
        points = sorted({s for c in curves.values() for s in c})
        print("\nTest PSNR (layered) at each evaluation, mean over scenes and seeds:\n")
        print("| variant | " + " | ".join(str(s) for s in points) + " |")
        print("|---|" + "---:|" * len(points))
        for variant, curve in curves.items():
            cells = [f"{_mean(curve[s]):.2f}" if s in curve else "" for s in points]
            print(f"| {variant} | " + " | ".join(cells) + " |")
        if any(r["steps"] == steps and not r.get("finished") for r in records):
            print_stopped_runs(records, steps, base)


def newest_runs(records: list[dict], steps: int) -> dict[tuple[str, str, int], dict]:
    """The record of each run (scene, variant, seed) of `steps` steps that got furthest,
    stopped runs included; the later record wins a tie."""
    runs: dict[tuple[str, str, int], dict] = {}
    for r in records:
        key = (r["scene"], r["variant"], r["seed"])
        if r["steps"] == steps and r.get("psnr_curve"):
            if key not in runs or r.get("last_step", 0) >= runs[key].get("last_step", 0):
                runs[key] = r
    return runs


def evaluations(record: dict) -> dict[int, float]:
    """Test PSNR (layered, dB) of a results record by evaluation step."""
    return {step: value for step, value, _ in record["psnr_curve"]}


def print_stopped_runs(records: list[dict], steps: int, base: str) -> None:
    """For a group with runs stopped before their last step: every run's test PSNR (layered)
    at each evaluation, and each variant against `base` (same scene and seed) at the last
    evaluation both reached."""
    runs = newest_runs(records, steps)
    points = sorted({step for r in runs.values() for step, _, _ in r["psnr_curve"]})
    print(f"\nEvery run of {steps} steps, stopped ones included: test PSNR (layered) at each "
          "evaluation.\n")  # fmt: skip
    print("| scene | variant | seed | last step | " + " | ".join(map(str, points)) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(points))
    for (scene, variant, seed), r in runs.items():
        curve = evaluations(r)
        cells = [f"{curve[s]:.2f}" if s in curve else "" for s in points]
        print(
            f"| {scene} | {variant} | {seed} | {r.get('last_step')} | " + " | ".join(cells) + " |"
        )
    print(f"\nAgainst `{base}` at the last evaluation both runs reached (same scene and seed):\n")
    print(f"| scene | variant | seed | step | PSNR | {base} | difference |")
    print("|---|---|---:|---:|---:|---:|---:|")
    differences: dict[str, list[float]] = {}
    for (scene, variant, seed), r in runs.items():
        other = runs.get((scene, base, seed))
        if variant == base or other is None:
            continue
        mine, theirs = evaluations(r), evaluations(other)
        common = set(mine) & set(theirs)
        if not common:
            continue
        step = max(common)
        differences.setdefault(variant, []).append(mine[step] - theirs[step])
        print(f"| {scene} | {variant} | {seed} | {step} | {mine[step]:.2f} | {theirs[step]:.2f} |"
              f" {mine[step] - theirs[step]:+.2f} |")  # fmt: skip
    for variant, values in differences.items():
        better = sum(d > 0 for d in values)
        print(f"\n`{variant}` against `{base}`: {_mean(values):+.2f} dB on average, better on "
              f"{better}/{len(values)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes-dir", type=Path, default=Path("datasets/quality"))
    parser.add_argument("--scenes", nargs="+", default=[*OBJECT_SCENES, *UNBOUNDED_SCENES])
    parser.add_argument("--steps", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--override", nargs="*", default=[], help="key=value for every run")
    parser.add_argument("--parallel", type=int, default=4, help="runs side by side")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    parser.add_argument("--eval-every", type=int, default=500, help="0: only the final eval")
    parser.add_argument("--deadline", type=float, default=0.0, help="seconds; 0 = none")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip the runs of --out that finished, continue the stopped ones",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-quality"))
    parser.add_argument(
        "--plan",
        type=Path,
        help="JSON list of groups {steps, seeds, scenes, variants}, run in order (replaces "
        "--steps/--seeds/--scenes/--variants)",
    )
    parser.add_argument("--summarize", type=Path, help="print the tables of a results.jsonl")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    run_all(args)


if __name__ == "__main__":
    main()
