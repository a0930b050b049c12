"""Scale rehearsal: every stage of an experiment's resolution schedule, at the real image size.

    python benchmarks/bench_schedule.py --experiment nerf_synthetic \
        --source datasets/quality/texture
    python benchmarks/bench_schedule.py --experiment mip360_24gb --source datasets/quality/garden \\
        --memory-gib 24

The scene is a benchmark scene (``scripts/render_quality_scenes.py``: realistic geometry and
textures) with its images resized to the real dataset's size (``--size``; default 800x800 for
NeRF-synthetic-format sources, 1236x824 for COLMAP ones, like bicycle's ``images_4``) and the
same cameras, so the grid, the faces and the pixels per step are those of a real run. The
experiment's schedule is compressed: each stage (a span of steps with one resolution) runs
``--steps-per-stage`` steps with the stage's resolution, SH degree, shells and largest batch
size, through the real resolution changes (occupancy, transfer, optimizer). Per stage the
table gives the grid resolution, voxels, faces of all shells, the median ms per step of the
stage's second half (each step synchronized), and the peak of
``torch.cuda.max_memory_allocated``. The full schedule's wall time is extrapolated as the sum
over stages of (real steps in the stage) x (ms per step), plus the periodic and final
evaluations (one evaluation timed at the end).

``--memory-gib G`` caps the process at G GiB with ``torch.cuda.set_per_process_memory_fraction``
(the smaller GPUs' stand-in): the rehearsal stops at the first stage that runs out of memory
and says so. On a CPU (``--device cpu``, reference kernels) it runs too, slowly: tests use it at
tiny sizes.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
from PIL import Image

from meshtryoshka_data import read_colmap_model, write_colmap_model
from meshtryoshka_train.config import load_config
from meshtryoshka_train.evaluate import evaluate
from meshtryoshka_train.run import prepare_run_dir
from meshtryoshka_train.trainer import OUT_OF_MEMORY, Trainer, format_count


def resized_scene(
    source: Path, size: tuple[int, int] | None, out: Path, views: int | None = None
) -> Path:
    """A copy of the scene at `source` with every image resized to ``size = (W, H)``.

    NeRF-synthetic scenes keep their JSON (the field of view is resolution independent);
    COLMAP scenes keep ``sparse/`` (the loader scales the intrinsics to the images), and with
    `views` their images are repeated cyclically (same poses, new names) up to that many, the
    real dataset's count (the images' memory and the visibility test scale with it).
    """
    scene = out / source.name
    shutil.copytree(source, scene, ignore=shutil.ignore_patterns("images_*"))
    if views and (scene / "sparse" / "0").is_dir():
        repeat_views(scene, views)
    if size is None:
        return scene
    for path in scene.rglob("*"):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            with Image.open(path) as image:
                resized = image.resize(size, Image.Resampling.BICUBIC)
            if path.suffix.lower() == ".png":
                resized.save(path)
            else:
                resized.save(path, quality=95)
    return scene


def repeat_views(scene: Path, views: int) -> None:
    """Extend the COLMAP scene at `scene` to `views` images by repeating its images in order."""
    model = read_colmap_model(scene / "sparse" / "0")
    originals = sorted(model.images.values(), key=lambda image: image.name)
    images = dict(model.images)
    next_id = max(images) + 1
    for k in range(views - len(originals)):
        image = originals[k % len(originals)]
        name = f"repeat{k // len(originals)}_{image.name}"
        shutil.copyfile(scene / "images" / image.name, scene / "images" / name)
        images[next_id] = dataclasses.replace(image, image_id=next_id, name=name)
        next_id += 1
    write_colmap_model(scene / "sparse" / "0", dataclasses.replace(model, images=images))


def compressed_overrides(config, steps_per_stage: int) -> tuple[list[str], list[tuple]]:
    """Overrides that run each resolution stage for `steps_per_stage` steps, and the stages
    as ``(first real step, last real step + 1, centre resolution, arm resolution)``."""
    model, optim = config.model, config.optim
    starts = sorted(set(model.resolution.values) | set(model.arm_resolution.values))
    starts = [s for s in starts if s < config.train.steps]
    ends = [*starts[1:], config.train.steps]
    stages = [
        (a, b, model.resolution.at(a), model.arm_resolution.at(a))
        for a, b in zip(starts, ends, strict=True)
    ]

    def table(values) -> str:
        return "{" + ", ".join(f"{j * steps_per_stage} = {v}" for j, v in enumerate(values)) + "}"

    # the SH degree and shells of the stage's end, its largest batch (the worst case)
    def largest(schedule, a: int, b: int):
        """The largest value `schedule` takes in steps [a, b)."""
        return max([schedule.at(a), *(v for k, v in schedule.values.items() if a < k < b)])

    batches = [largest(optim.batch_size, a, b) for a, b, *_ in stages]
    overrides = [
        f"model.resolution={table(s[2] for s in stages)}",
        f"model.arm_resolution={table(s[3] for s in stages)}",
        f"model.sh_degree={table(model.sh_degree.at(b - 1) for _, b, *_ in stages)}",
        "model.shells={"
        + ", ".join(
            f"{j * steps_per_stage} = {json.dumps(model.shells.at(b - 1))}"
            for j, (_, b, *_) in enumerate(stages)
        )
        + "}",
        f"optim.batch_size={table(batches)}",
        f"train.steps={len(stages) * steps_per_stage}",
        "train.eval_interval=0",
        "train.checkpoint_interval=0",
        "model.init_freeze_steps=0",
        "model.init_blend_steps=0",
    ]
    return overrides, stages


def rehearse(args) -> None:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and args.memory_gib:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_gib * 2**30 / total))
    base = load_config(args.experiment, args.override)
    work = Path(tempfile.mkdtemp(prefix="bench_schedule_"))
    try:
        size = args.size or ((800, 800) if base.dataset.format == "blender" else (1236, 824))
        scene = resized_scene(args.source, size, work, args.views)
        compressed, stages = compressed_overrides(base, args.steps_per_stage)
        overrides = [
            *args.override,
            *compressed,  # after the user's: the compressed schedules replace theirs
            f"dataset.root={work}",
            f"dataset.scene={scene.name}",
            "dataset.downscale=1",
            f"train.device={args.device}",
        ]
        config = load_config(args.experiment, overrides)
        run_dir = work / "run"
        prepare_run_dir(run_dir, config, resume=False, overwrite=True)
        trainer = Trainer(config, run_dir, echo=lambda _: None)
        rows, failed = [], None
        for j, (first, end, center, arm) in enumerate(stages):
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            times, stats = [], {}
            try:
                for _ in range(args.steps_per_stage - args.profile_steps):
                    trainer.apply_schedules(trainer.step)
                    started = time.perf_counter()
                    stats = trainer.train_step()
                    if cuda:
                        torch.cuda.synchronize(device)
                    times.append(time.perf_counter() - started)
                    trainer.step += 1
            except OUT_OF_MEMORY as error:
                failed = (j, center, str(error).splitlines()[0][:120])
                break
            timed = times[len(times) // 2 :]
            # the grid's own resolution: a refinement stop (`model.min_voxel_pixels`,
            # `model.max_voxels`) may have kept it below the stage's
            actual = (trainer.field.center_resolution, trainer.field.arm_resolution)
            resolution = _resolution_label(*actual)
            if actual != (center, arm):
                resolution += f" (stopped; schedule {_resolution_label(center, arm)})"
            rows.append(
                {
                    "stage": j,
                    "steps": f"{first}-{end - 1}",
                    "resolution": resolution,
                    "batch": config.optim.batch_size.at(trainer.step - 1),
                    "voxels": trainer.field.num_voxels,
                    "faces": int(stats["faces"]),
                    "ms": 1e3 * statistics.median(timed),
                    "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0,
                    "real_steps": end - first,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            if args.profile_steps:
                profile_steps(trainer, args.profile_steps, f"stage {j} ({center}/{arm})")
        eval_seconds = 0.0
        if failed is None:
            started = time.perf_counter()
            evaluate(trainer.field, trainer.dataset, trainer.config, trainer.step)
            eval_seconds = time.perf_counter() - started
        report(args, base, rows, failed, eval_seconds, size, len(trainer.dataset))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _resolution_label(center: int, arm: int) -> str:
    return str(center) if not arm else f"{center}/{arm}"


def advance(trainer: Trainer) -> None:
    """One training step with the schedules of its step, without logging or evaluation."""
    trainer.apply_schedules(trainer.step)
    trainer.train_step()
    trainer.step += 1


def profile_steps(trainer: Trainer, steps: int, label: str) -> None:
    """Print where `steps` more training steps spend their time: the top operators by self CPU
    time and (on a GPU) by self GPU time, and per step the kernel launches, host syncs and CPU
    vs GPU busy time (the fixed per-step costs: a step whose CPU time exceeds its GPU time is
    launch-bound). On a GPU with `steps` >= 2 the last step is not profiled but lists the host
    syncs by line of our code (`sync_points`)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    list_syncs = cuda and steps >= 2
    profiled = steps - 1 if list_syncs else steps
    activities = [ProfilerActivity.CPU]
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(profiled):
            advance(trainer)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    count = {e.key: e.count for e in events}
    launches = sum(n for k, n in count.items() if k in ("cudaLaunchKernel", "cuLaunchKernel"))
    launches += sum(n for k, n in count.items() if k.startswith("cudaLaunchKernelEx"))
    syncs = sum(
        n
        for k, n in count.items()
        if k in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy")
        or k.startswith("cuStreamSynchronize")
    )
    cpu_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / profiled
    gpu_ms = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e3 / profiled
    print(
        f"profile {label}: per step {launches / profiled:.0f} kernel launches, "
        f"{syncs / profiled:.1f} host syncs, {cpu_ms:.1f} ms CPU self time, "
        f"{gpu_ms:.1f} ms GPU kernel time"
    )
    for key in ("self_cpu_time_total", "self_device_time_total")[: 1 + cuda]:
        print(events.table(sort_by=key, row_limit=15, max_name_column_width=60))
    if list_syncs:
        points = sync_points(trainer)
        print(f"host syncs of one step (torch.cuda.set_sync_debug_mode): {sum(points.values())}")
        for where, count in points.most_common():
            print(f"  {count} x {where}")


def sync_points(trainer: Trainer) -> collections.Counter:
    """One more training step with ``torch.cuda.set_sync_debug_mode("warn")``: how often each
    line of our code blocked the host on the GPU (a sync or a pageable host-to-device copy)."""
    points: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        stack = traceback.extract_stack()[:-1]  # without this function
        while stack and stack[-1].filename == warnings.__file__:
            stack.pop()  # nor the warnings module's own frames
        points[sync_location(stack)] += 1

    with warnings.catch_warnings():  # restores the filters and `showwarning` on exit
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            advance(trainer)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return points


def sync_location(stack: list[traceback.FrameSummary]) -> str:
    """``package/module.py:line (function)`` of the innermost frame of `stack` in one of the
    monorepo's packages (``.../src/<package>/...``), or of the innermost frame when none is."""
    ours = [frame for frame in stack if "src" in Path(frame.filename).parts]
    frame = (ours or stack)[-1]
    parts = Path(frame.filename).parts
    short = "/".join(parts[parts.index("src") + 1 :]) if ours else parts[-1]
    return f"{short}:{frame.lineno} ({frame.name})"


def report(args, base, rows, failed, eval_seconds: float, size, views: int) -> None:
    interval = base.train.eval_interval
    evaluations = 1 + (base.train.steps // interval if interval else 0)
    train_seconds = sum(r["real_steps"] * r["ms"] / 1e3 for r in rows)
    print(
        f"\n{args.experiment}: {size[0]}x{size[1]} images from {args.source.name} "
        f"({views} views), "
        f"{args.steps_per_stage} steps per stage"
        + (f", memory capped at {args.memory_gib} GiB" if args.memory_gib else "")
        + "\n"
    )
    print("| steps | resolution | batch | voxels | faces | ms/step | peak GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['steps']} | {r['resolution']} | {r['batch']} | {format_count(r['voxels'])} |"
            f" {format_count(r['faces'])} | {r['ms']:.1f} | {r['peak_gib']:.2f} |"
        )
    if failed is not None:
        j, center, message = failed
        print(f"\nout of memory at stage {j} (resolution {center}): {message}")
        print("the full schedule does NOT fit this memory")
        return
    total = train_seconds + evaluations * eval_seconds
    peak = max((r["peak_gib"] for r in rows), default=0.0)
    print(
        f"\nfull schedule ({base.train.steps} steps), extrapolated: {total / 3600:.2f} h "
        f"({train_seconds / 3600:.2f} h of steps + {evaluations} evaluations of "
        f"{eval_seconds:.0f} s); peak {peak:.1f} GiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="nerf_synthetic")
    # argparse declarations: alike by design
    parser.add_argument("--source", type=Path, default=Path("datasets/quality/texture"))
    parser.add_argument(
        "--size", type=lambda s: tuple(int(x) for x in s.split("x")), help="WxH (default: real)"
    )
    parser.add_argument(
        "--views",
        type=int,
        default=200,
        help="COLMAP sources: repeat images up to this many (default 200, like bicycle)",
    )
    parser.add_argument("--steps-per-stage", type=int, default=30)
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="profile the last this many steps of each stage (torch.profiler) and print them; "
        "on a GPU the last of them lists its host syncs by line instead",
    )
    parser.add_argument("--memory-gib", type=float, default=0.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("override", nargs="*", help="key=value for the experiment")
    args = parser.parse_args()
    if not 0 <= args.profile_steps <= args.steps_per_stage - 2:
        parser.error("--profile-steps must leave at least 2 timed steps per stage")
    rehearse(args)


if __name__ == "__main__":
    main()
