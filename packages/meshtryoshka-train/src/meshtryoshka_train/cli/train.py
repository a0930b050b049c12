"""Training from the command line: one run (`train_one`), every scene of an experiment
(``train-all``), the progress console, and ``experiments``."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click

from ..config import (
    Config,
    ConfigError,
    experiment_names,
    experiment_scenes,
    load_config,
    load_saved_config,
)
from ..distributed import Distributed, torchrun_ranks
from ..run import RunDir, default_run_dir, prepare_run_dir, resolve_device, run_dir_lock
from ..trainer import Trainer, TrainingResult
from .errors import EXIT_FAILED, ErrorReport

__all__ = [
    "Console",
    "experiments_command",
    "progress_line",
    "train_all_command",
    "train_one",
    "workspace",
]


class Console:
    """Event lines on stdout; on a terminal, the progress line (with a bar) is rewritten in place.

    interactive: rewrite the progress line in place (default: stdout is a terminal).
    width: terminal columns (default: measured at each line).
    """

    def __init__(
        self, interactive: bool | None = None, width: int | None = None, quiet: bool = False
    ) -> None:
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.width = width
        self.open_line = False
        #: print nothing (the ranks of data-parallel training other than 0)
        self.quiet = quiet

    def echo(self, text: str) -> None:
        if self.quiet:
            return
        if self.open_line:
            click.echo("")
            self.open_line = False
        click.echo(text)

    def progress(self, step: int, total: int, text: str) -> None:
        """The progress line of `step` of `total` steps; `text` holds loss, PSNR, faces, rate."""
        if self.quiet:
            return
        if not self.interactive:
            click.echo(text)
            return
        columns = self.width or shutil.get_terminal_size().columns
        click.echo("\r" + progress_line(step, total, text, columns) + "\x1b[K", nl=False)
        self.open_line = True


def progress_line(step: int, total: int, text: str, columns: int) -> str:
    """``[#####-----]  50% <text>``, cut to fit `columns - 1` characters (a line that wraps
    cannot be rewritten in place); the bar shrinks first and is left out below 10 cells."""
    fraction = min(max(step / total, 0.0), 1.0) if total > 0 else 1.0
    cells = min(30, columns - 1 - len(text) - 8)
    if cells >= 10:
        filled = int(fraction * cells)
        text = f"[{'#' * filled}{'-' * (cells - filled)}] {fraction * 100:3.0f}% {text}"
    return text[: max(columns - 1, 1)]


def workspace() -> Path:
    """``$WORKSPACE``, default ``./workspace``."""
    return Path(os.environ.get("WORKSPACE", "workspace"))


# --- one run -------------------------------------------------------------------------------------


def train_one(
    experiment: str | None,
    overrides: list[str],
    run_dir: Path | None,
    resume: bool,
    overwrite: bool,
    console: Console,
    resume_command: str | None = None,
    data_parallel: bool = False,
) -> TrainingResult:
    """Train one run (the body of the bare command and of `train-all`).

    Errors end the command as `ErrorReport` says: status 1 (diverged, out of memory, bad data,
    a lost rank), 2 (bad configuration or command line), 130 (Ctrl-C) or 143 (SIGTERM); an
    interruption prints what was kept and `resume_command` (default: ``meshtryoshka-train
    --resume --run-dir RUN_DIR``).

    data_parallel: join the ranks that ``torchrun`` started (``WORLD_SIZE`` > 1) and train
        the run together (`meshtryoshka_train.distributed`); rank 0 alone prints and writes.
    """
    if experiment is None and not (resume and run_dir is not None):
        raise click.UsageError("give --experiment NAME (or --resume with --run-dir RUN_DIR)")
    with ErrorReport(console.echo, training=True) as report:
        report.resume_command = resume_command
        report.run_dir = run_dir
        config = None
        if experiment is not None:
            config = load_config(experiment, overrides)
            run_dir = report.run_dir = run_dir or default_run_dir(config, workspace())
        if resume:
            if not RunDir(run_dir).config_file.is_file():
                raise ConfigError(
                    f"cannot resume: {run_dir} has no config.toml (not a run directory); "
                    "start it without --resume"
                )
            config = load_saved_config(RunDir(run_dir).config_file, overrides)
        report.final_step = config.train.steps
        group = join_ranks(config) if data_parallel else Distributed()
        try:
            if not group.is_main:  # rank 0 alone prints (errors are printed by every rank)
                console = Console(quiet=True)
                report.echo = console.echo
            result = _train(config, run_dir, resume, overwrite, console, group)
        except BaseException:
            group.close()
            raise
        group.close(wait=True)  # the other ranks wait for rank 0's final evaluation
        return result


def join_ranks(config: Config) -> Distributed:
    """The ranks ``torchrun`` started (a single process without torchrun, or with one rank
    unless ``MESHTRYOSHKA_PROCESS_GROUP=always``): NCCL when ``train.device`` resolves to
    CUDA, else gloo; collectives wait ``train.distributed_timeout`` seconds at most."""
    use_cuda = resolve_device(config.train.device).type == "cuda"
    group = Distributed.from_environment(use_cuda, config.train.distributed_timeout)
    if group.enabled and config.viewer.enabled:
        group.close()
        raise ConfigError(
            "viewer.enabled does not work with several ranks (a paused viewer would stop "
            "them all); train with one process, or view the run afterwards: "
            "meshtryoshka-train view RUN_DIR"
        )
    return group


def _train(
    config: Config,
    run_dir: Path,
    resume: bool,
    overwrite: bool,
    console: Console,
    group: Distributed,
) -> TrainingResult:
    """Prepare `run_dir` under its lock (rank 0), build the trainer and train (with the viewer
    when ``viewer.enabled``)."""
    if config.viewer.enabled:
        from ..viewer import require_viser

        require_viser()  # before the run directory is touched
    # one training process per run directory: rank 0 holds the lock for all ranks
    with run_dir_lock(run_dir) if group.is_main else contextlib.nullcontext():
        if group.is_main:
            config = prepare_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
            console.echo(f"run directory: {run_dir}")
        group.barrier()  # the other ranks start once rank 0 has prepared the directory
        trainer = Trainer(
            config,
            run_dir,
            resume=resume,
            echo=console.echo,
            progress=console.progress,
            group=group,
        )
        ranks = f", {group.world_size} ranks ({group.backend})" if group.enabled else ""
        console.echo(
            f"training '{config.experiment}' on {config.dataset.scene} ({trainer.device}"
            f"{ranks}): {trainer.dataset}, {trainer.field.num_voxels} voxels"
        )
        if config.viewer.enabled:
            from ..viewer import run_with_viewer

            return run_with_viewer(trainer, console.echo)
        return trainer.run()


# --- every scene of an experiment ----------------------------------------------------------------


@dataclass
class SceneRun:
    """One scene of `train-all`: its overrides, run directory and final evaluation file."""

    scene: str
    overrides: list[str]
    run_dir: Path
    final_metrics: Path


def plan_scenes(experiment: str, scenes: str | None, overrides: tuple[str, ...]) -> list[SceneRun]:
    """The scenes to train (all that `experiment` lists under [scenes.*], or the `scenes`
    subset, comma-separated) with their configurations' run directories."""
    listed = experiment_scenes(experiment)
    if not listed:
        raise click.UsageError(f"experiment '{experiment}' lists no [scenes.*]")
    chosen = listed if scenes is None else [s.strip() for s in scenes.split(",") if s.strip()]
    if not chosen:
        raise click.UsageError(f"--scenes names no scene; '{experiment}' lists {listed}")
    unknown = sorted(set(chosen) - set(listed))
    if unknown:
        raise click.UsageError(f"unknown scenes {unknown}; '{experiment}' lists {listed}")
    plan = []
    for scene in chosen:
        scene_overrides = [*overrides, f"dataset.scene={scene}"]
        config = load_config(experiment, scene_overrides)
        run_dir = default_run_dir(config, workspace())
        final = RunDir(run_dir).eval_dir(config.train.steps) / "metrics.json"
        plan.append(SceneRun(scene, scene_overrides, run_dir, final))
    return plan


def train_scene(
    experiment: str,
    scene: SceneRun,
    resume: bool,
    overwrite: bool,
    console: Console,
    resume_command: str,
) -> dict:
    """The final evaluation of one scene: read when the run finished before (unless
    `overwrite`), else trained (continued with `resume` when it has a run directory)."""
    if scene.final_metrics.is_file() and not overwrite:
        console.echo(f"{scene.scene}: already trained ({scene.final_metrics}), skipped")
        return json.loads(scene.final_metrics.read_text())
    has_run = RunDir(scene.run_dir).config_file.is_file()
    console.echo(f"=== {scene.scene}")
    outcome = train_one(
        experiment,
        scene.overrides,
        scene.run_dir,
        resume and has_run,
        overwrite,
        console,
        resume_command=resume_command,
    )
    return outcome.evaluation


def write_summary(experiment: str, results: dict[str, dict], path: Path, console: Console) -> None:
    """Print the PSNR table of `results` (scene -> final evaluation) and write it to `path`."""
    table = [(s, r["layered"]["psnr"], r["surface"]["psnr"]) for s, r in results.items()]
    console.echo(f"{'scene':12s} {'layered':>8s} {'surface':>8s}")
    for scene, layered, surface in table:
        console.echo(f"{scene:12s} {layered:8.2f} {surface:8.2f}")
    mean_l = sum(t[1] for t in table) / len(table)
    mean_s = sum(t[2] for t in table) / len(table)
    console.echo(f"{'mean':12s} {mean_l:8.2f} {mean_s:8.2f}")
    summary = {
        "experiment": experiment,
        "psnr": {scene: {"layered": lay, "surface": sur} for scene, lay, sur in table},
        "mean": {"layered": mean_l, "surface": mean_s},
    }
    path.write_text(json.dumps(summary, indent=2) + "\n")
    console.echo(f"written to {path}")


def gather_summary(experiment: str, plan: list[SceneRun], console: Console, again: str) -> bool:
    """Gather the final evaluations of every scene of `plan` from their run directories into
    the summary table (`write_summary`, ``summary.json`` beside the runs); returns False, and
    names the missing scenes and the command `again` that gathers them later, while some
    scene (another shard's, another GPU's) has not finished."""
    missing = [scene.scene for scene in plan if not scene.final_metrics.is_file()]
    if missing:
        console.echo(
            f"{len(missing)} of {len(plan)} scenes have no final evaluation yet "
            f"({', '.join(missing)}); once they have, gather the table with: {again}"
        )
        return False
    results = {scene.scene: json.loads(scene.final_metrics.read_text()) for scene in plan}
    write_summary(experiment, results, plan[-1].run_dir.parent / "summary.json", console)
    return True


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``--shard I/N`` -> ``(I, N)`` with ``0 <= I < N``; None when not given."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        message = f"expected I/N (e.g. 0/4), got {text!r}"
        raise click.BadParameter(message, param_hint="--shard") from None
    if not 0 <= index < count:
        raise click.BadParameter(f"I/N needs 0 <= I < N, got {text!r}", param_hint="--shard")
    return index, count


def visible_gpus() -> list[str]:
    """The GPUs `train-all` may put one scene each on: ``CUDA_VISIBLE_DEVICES``'s entries, or
    ``0 .. device_count - 1``."""
    import torch

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() and gpu.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())]


def train_on_gpus(
    experiment: str,
    plan: list[SceneRun],
    gpus: list[str],
    resume: bool,
    overwrite: bool,
    console: Console,
) -> list[str]:
    """Train the scenes of `plan` in parallel, one scene per GPU of `gpus` at a time: each in
    its own ``meshtryoshka-train`` process with ``CUDA_VISIBLE_DEVICES`` set to its GPU, its
    output in ``<run dir>.log``; a GPU takes the next scene when its scene ends. Returns the
    scenes that failed (the others' final evaluations are in their run directories)."""
    todo: queue.Queue[SceneRun] = queue.Queue()
    for scene in plan:
        if scene.final_metrics.is_file() and not overwrite:
            console.echo(f"{scene.scene}: already trained ({scene.final_metrics}), skipped")
        else:
            todo.put(scene)
    failed: list[str] = []
    lock = threading.Lock()

    def work(gpu: str) -> None:
        while True:
            try:
                scene = todo.get_nowait()
            except queue.Empty:
                return
            has_run = RunDir(scene.run_dir).config_file.is_file()
            flags = ["--resume"] if resume and has_run else []
            flags += ["--overwrite"] if overwrite else []
            command = [sys.executable, "-m", "meshtryoshka_train", "--experiment", experiment]
            command += ["--run-dir", str(scene.run_dir), *flags, *scene.overrides]
            log = scene.run_dir.with_name(scene.run_dir.name + ".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            with lock:
                console.echo(f"=== {scene.scene} on GPU {gpu} (output in {log})")
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
            for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # a single process each
                env.pop(name, None)
            with open(log, "w") as out:
                status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            with lock:
                if status.returncode == 0:
                    console.echo(f"{scene.scene}: finished on GPU {gpu}")
                else:
                    failed.append(scene.scene)
                    console.echo(
                        f"{scene.scene}: failed on GPU {gpu} (status {status.returncode}); "
                        f"see {log}"
                    )

    threads = [threading.Thread(target=work, args=(gpu,), daemon=True) for gpu in gpus]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed


@click.command("train-all", context_settings={"ignore_unknown_options": True})
@click.option("--experiment", "-e", default="mip360", show_default=True)
@click.option("--scenes", help="Comma-separated subset of the experiment's scenes.")
@click.option("--resume", is_flag=True, help="Continue runs that have checkpoints.")
@click.option("--overwrite", is_flag=True, help="Delete existing run directories first.")
@click.option(
    "--shard",
    metavar="I/N",
    help="Train only the scenes I, I+N, I+2N, ... (0-based) of the list: one of N machines "
    "or Slurm array tasks (--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).",
)
@click.option(
    "--gpus",
    type=int,
    help="Scenes trained at once, one per GPU (default: every visible GPU; 1: one after "
    "another in this process).",
)
@click.option(
    "--summarize",
    is_flag=True,
    help="Train nothing: gather the finished scenes' evaluations into the summary table.",
)
@click.argument("overrides", nargs=-1)
def train_all_command(
    experiment: str,
    scenes: str | None,
    resume: bool,
    overwrite: bool,
    shard: str | None,
    gpus: int | None,
    summarize: bool,
    overrides: tuple[str, ...],
) -> None:
    """Train every scene the experiment lists under [scenes.*].

    `meshtryoshka-train train-all --experiment mip360` trains the nine Mip-NeRF 360 scenes
    with their per-scene settings (e.g. the flowers scene's near plane, in the experiment's
    [scenes.flowers] table), then prints a table of test PSNRs and writes it to
    $WORKSPACE/<experiment>/summary.json. A scene whose run already finished (its final
    evaluation exists) is skipped; after an interruption, --resume continues where it stopped.

    With several GPUs, one scene trains on each GPU at a time (each in its own process, its
    output in $WORKSPACE/<experiment>/<scene>.log). On several machines, give each one a
    --shard I/N (or start train-all with torchrun: each process takes the scenes of its rank,
    on the GPU of its local rank); whichever finishes last writes the table when the run
    directories are on a shared file system, else gather it with --summarize.
    """
    with ErrorReport():
        plan = plan_scenes(experiment, scenes, overrides)
        part = parse_shard(shard)
    console = Console()
    again = ["meshtryoshka-train", "train-all", "--experiment", experiment]
    selection = ["--scenes", ",".join(s.scene for s in plan)] if scenes is not None else []
    gather = shlex.join([*again, *selection, "--summarize", *overrides])
    if summarize:
        sys.exit(0 if gather_summary(experiment, plan, console, gather) else 1)
    mine = plan if part is None else plan[part[0] :: part[1]]
    worker = torchrun_ranks()
    worker = worker if worker is not None and worker[1] > 1 else None  # one of several ranks
    if worker is not None:  # torchrun: this process is one worker among several
        rank, world, local = worker
        mine = mine[rank::world]
        gpus = 1
        _use_local_gpu(local)
        console.echo(f"torchrun worker {rank} of {world}: scenes {[s.scene for s in mine]}")
    elif part is not None:
        console.echo(f"shard {part[0]}/{part[1]}: scenes {[s.scene for s in mine]}")
    resume_command = shlex.join([*again, "--resume", *selection, *_shard_args(shard), *overrides])
    on_gpus = visible_gpus() if gpus is None else visible_gpus()[: max(gpus, 0)]
    if len(on_gpus) > 1 and len(mine) > 1 and _wants_cuda(experiment, overrides):
        failed = train_on_gpus(experiment, mine, on_gpus, resume, overwrite, console)
        if failed:
            console.echo(f"failed: {', '.join(failed)}; continue with: {resume_command}")
            gather_summary(experiment, plan, console, gather)
            sys.exit(EXIT_FAILED)
    else:
        for scene in mine:
            train_scene(experiment, scene, resume, overwrite, console, resume_command)
    gather_summary(experiment, plan, console, gather)


def _shard_args(shard: str | None) -> list[str]:
    return [] if shard is None else ["--shard", shard]


def _wants_cuda(experiment: str, overrides: tuple[str, ...]) -> bool:
    """Whether the experiment (with `overrides`) trains on CUDA here."""
    config = load_config(experiment, list(overrides))
    return resolve_device(config.train.device).type == "cuda"


def _use_local_gpu(local_rank: int) -> None:
    """A torchrun worker of `train-all` trains on ``cuda:LOCAL_RANK`` (when there are GPUs)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())


@click.command("experiments")
def experiments_command() -> None:
    """List the shipped experiments."""
    for name in experiment_names():
        click.echo(name)
