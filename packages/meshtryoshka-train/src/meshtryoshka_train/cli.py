"""The ``meshtryoshka-train`` command line."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from meshtryoshka_data import DatasetError

from . import __version__
from .config import ConfigError, experiment_names, load_config

PACKAGES = ("slang-marching-cubes", "slang-rasterizer", "meshtryoshka-data", "meshtryoshka-train")


def installed_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Versions of Python, torch, CUDA, slangtorch and the Meshtryoshka packages."""
    found = {"python": platform.python_version()}
    try:
        import torch

        found["torch"] = torch.__version__
        found["cuda (torch build)"] = torch.version.cuda or "none (CPU build)"
        found["cuda device"] = (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        )
    except ImportError:
        found["torch"] = "not installed"
    found["slangtorch"] = installed_version("slangtorch")
    for name in PACKAGES:
        found[name] = installed_version(name)
    return found


class TrainGroup(click.Group):
    """A group whose bare invocation also takes `key=value` overrides after the options."""

    #: options of the group that take a value (their value is not a positional argument)
    VALUE_OPTIONS = ("--experiment", "-e", "--run-dir")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        positional = [
            a
            for i, a in enumerate(args)
            if not a.startswith("-") and not (i > 0 and args[i - 1] in self.VALUE_OPTIONS)
        ]
        if positional and positional[0] in self.commands:
            return super().parse_args(ctx, args)
        ctx.meta["overrides"] = [a for a in args if "=" in a and not a.startswith("-")]
        rest = [a for a in args if a not in ctx.meta["overrides"]]
        return super().parse_args(ctx, rest)


class Console:
    """Event lines on stdout; on a terminal, the progress line (with a bar) is rewritten in place.

    interactive: rewrite the progress line in place (default: stdout is a terminal).
    width: terminal columns (default: measured at each line).
    """

    def __init__(self, interactive: bool | None = None, width: int | None = None) -> None:
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.width = width
        self.open_line = False

    def echo(self, text: str) -> None:
        if self.open_line:
            click.echo("")
            self.open_line = False
        click.echo(text)

    def progress(self, step: int, total: int, text: str) -> None:
        """The progress line of `step` of `total` steps; `text` holds loss, PSNR, faces, rate."""
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


def train_one(
    experiment: str | None,
    overrides: list[str],
    run_dir: Path | None,
    resume: bool,
    overwrite: bool,
    console: Console,
    resume_command: str | None = None,
):
    """Train one run (the body of the bare command and of `train-all`).

    Exits with status 1 (diverged, out of memory, bad data), 2 (bad configuration or command
    line), 130 (Ctrl-C) or 143 (SIGTERM); an interruption prints what was kept and
    `resume_command` (default: ``meshtryoshka-train --resume --run-dir RUN_DIR``).
    """
    from .config import load_saved_config
    from .trainer import (
        OUT_OF_MEMORY,
        Trainer,
        TrainingDiverged,
        TrainingInterrupted,
        TrainingOutOfMemory,
        default_run_dir,
        prepare_run_dir,
        run_dir_lock,
    )

    if experiment is None and not (resume and run_dir is not None):
        raise click.UsageError("give --experiment NAME (or --resume with --run-dir RUN_DIR)")
    config = None

    def resume_hint() -> str:  # run_dir is known once the configuration is
        return resume_command or f"meshtryoshka-train --resume --run-dir {run_dir}"

    try:
        if experiment is not None:
            config = load_config(experiment, overrides)
            run_dir = run_dir or default_run_dir(config, workspace())
        if resume:
            if not (run_dir / "config.toml").is_file():
                raise ConfigError(
                    f"cannot resume: {run_dir} has no config.toml (not a run directory); "
                    "start it without --resume"
                )
            config = load_saved_config(run_dir / "config.toml", overrides)
        if config.viewer.enabled:
            from .viewer import require_viser

            require_viser()  # before the run directory is touched
        with run_dir_lock(run_dir):  # one training process per run directory
            config = prepare_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
            console.echo(f"run directory: {run_dir}")
            trainer = Trainer(
                config, run_dir, resume=resume, echo=console.echo, progress=console.progress
            )
            console.echo(
                f"training '{config.experiment}' on {config.dataset.scene} ({trainer.device}): "
                f"{trainer.dataset}, {trainer.field.num_voxels} voxels"
            )
            if config.viewer.enabled:
                from .viewer import run_with_viewer

                return run_with_viewer(trainer, console.echo)
            return trainer.run()
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    except (TrainingDiverged, TrainingOutOfMemory, DatasetError) as error:
        console.echo("")
        raise click.ClickException(str(error)) from None
    except OUT_OF_MEMORY as error:  # before training: loading the images, building the grid
        console.echo("")
        raise click.ClickException(
            f"out of GPU memory while setting up the run ({str(error).strip()[:200]}). Try "
            "dataset.device=cpu (training images in CPU memory), a lower model.resolution, or "
            "a smaller experiment, e.g. --experiment mip360_24gb (made for 24 GB GPUs)"
        ) from None
    except TrainingInterrupted as stopped:
        console.echo(f"{stopped}. Resume with: {resume_hint()}")
        sys.exit(128 + stopped.signal)
    except KeyboardInterrupt:
        from .checkpoint import list_checkpoints

        command = resume_hint()
        kept = list_checkpoints(run_dir) if run_dir is not None else []
        finished = (
            kept and config is not None and kept[-1].name == f"step_{config.train.steps:07d}.pt"
        )
        if finished:
            what = f"training had finished ({kept[-1]}); --resume only evaluates it"
        elif kept:
            what = f"the newest checkpoint is {kept[-1]}; steps after it are lost"
        else:
            what = "no checkpoint was written"
        console.echo(f"interrupted (Ctrl-C): stopped at once; {what}.")
        if kept:
            console.echo(f"Resume with: {command}")
        sys.exit(130)


@click.group(cls=TrainGroup, invoke_without_command=True)
@click.option(
    "--experiment",
    "-e",
    help="Experiment to train: a shipped name (see `experiments`) or a .toml path.",
)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    help="Output folder (default: $WORKSPACE/<experiment>/<scene>, WORKSPACE=./workspace).",
)
@click.option(
    "--resume", is_flag=True, help="Continue the run (its config.toml) from its newest checkpoint."
)
@click.option("--overwrite", is_flag=True, help="Delete an existing run directory first.")
@click.version_option(__version__, prog_name="meshtryoshka-train")
@click.pass_context
def main(
    ctx: click.Context,
    experiment: str | None,
    run_dir: Path | None,
    resume: bool,
    overwrite: bool,
) -> None:
    """Train Meshtryoshka scenes: `meshtryoshka-train --experiment NAME [key=value ...]`.

    Every configuration key can be overridden as `section.key=value` (TOML values), e.g.
    `meshtryoshka-train --experiment mip360 dataset.scene=bicycle model.render_mode=explicit`.
    Outputs go to $WORKSPACE/<experiment>/<scene> (WORKSPACE defaults to ./workspace):
    config.toml, metrics.jsonl, checkpoints/ and eval/ (test PSNR/SSIM and renders).

    Ctrl-C finishes the current step, writes its checkpoint and exits (status 130); a second
    Ctrl-C stops at once. `--resume` (with --experiment, or --run-dir RUN_DIR) continues from
    the newest checkpoint, exactly as if never stopped; overrides given with it are kept.
    """
    if ctx.invoked_subcommand is not None:
        return
    overrides = ctx.meta.get("overrides", [])
    if experiment is None and not resume:
        if overrides:
            raise click.UsageError("overrides need an experiment: --experiment NAME key=value")
        click.echo(ctx.get_help())
        return
    train_one(experiment, overrides, run_dir, resume, overwrite, Console())


@main.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--split", default="test", show_default=True, help="Dataset split to evaluate.")
@click.option("--step", type=int, help="Evaluate this checkpoint (default: the newest).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Render device (auto: CUDA when available).",
)
@click.option("--no-images", is_flag=True, help="Write metrics.json only, no PNG renders.")
def eval_command(run_dir: Path, split: str, step: int | None, device: str, no_images: bool) -> None:
    """PSNR and SSIM of the "layered" and "surface" renders of a checkpoint of RUN_DIR.

    "layered" composites all the shells (the training render); "surface" renders the zero
    level set as an opaque mesh. Writes RUN_DIR/eval/step_XXXXXXX/ (suffixed _<split> for a
    split other than test): metrics.json (means and per image) and, unless --no-images,
    layered/*.png and surface/*.png.
    """
    from .evaluate import evaluate
    from .saved_run import RunError, open_run

    try:
        run = open_run(run_dir, step=step, device=device)
        dataset = run.dataset
    except (RunError, ConfigError) as error:
        raise click.UsageError(str(error)) from None
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    if split not in dataset.splits or not len(dataset.splits[split]):
        known = ", ".join(f"{k} ({len(v)})" for k, v in dataset.splits.items())
        raise click.UsageError(f"--split {split!r} is empty or unknown; this dataset has {known}")
    suffix = "" if split == "test" else f"_{split}"
    out_dir = run_dir / "eval" / f"step_{run.step:07d}{suffix}"
    result = evaluate(
        run.field,
        dataset,
        run.config,
        run.step,
        split=split,
        out_dir=None if no_images else out_dir,
    )
    if no_images:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    for mode in ("layered", "surface"):
        ssim = result[mode]["ssim"]
        click.echo(
            f"{mode:8s} PSNR {result[mode]['psnr']:.2f} dB  SSIM "
            f"{'n/a' if ssim is None else f'{ssim:.4f}'}  faces {result[mode]['faces']}"
        )
    click.echo(f"step {run.step}, {result['images']} {split} images; written to {out_dir}")


@main.command("train-all", context_settings={"ignore_unknown_options": True})
@click.option("--experiment", "-e", default="mip360", show_default=True)
@click.option("--scenes", help="Comma-separated subset of the experiment's scenes.")
@click.option("--resume", is_flag=True, help="Continue runs that have checkpoints.")
@click.option("--overwrite", is_flag=True, help="Delete existing run directories first.")
@click.argument("overrides", nargs=-1)
def train_all_command(
    experiment: str, scenes: str | None, resume: bool, overwrite: bool, overrides: tuple[str, ...]
) -> None:
    """Train every scene the experiment lists under [scenes.*], one after another.

    `meshtryoshka-train train-all --experiment mip360` trains the nine Mip-NeRF 360 scenes
    with their per-scene settings (e.g. the flowers scene's near plane, in the experiment's
    [scenes.flowers] table), then prints a table of test PSNRs and writes it to
    $WORKSPACE/<experiment>/summary.json. A scene whose run already finished (its final
    evaluation exists) is skipped; after an interruption, --resume continues where it stopped.
    """
    import shlex

    from .config import experiment_scenes
    from .trainer import default_run_dir

    try:
        listed = experiment_scenes(experiment)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    if not listed:
        raise click.UsageError(f"experiment '{experiment}' lists no [scenes.*]")
    chosen = listed if scenes is None else [s.strip() for s in scenes.split(",") if s.strip()]
    if not chosen:
        raise click.UsageError(f"--scenes names no scene; '{experiment}' lists {listed}")
    unknown = sorted(set(chosen) - set(listed))
    if unknown:
        raise click.UsageError(f"unknown scenes {unknown}; '{experiment}' lists {listed}")
    console = Console()
    again = ["meshtryoshka-train", "train-all", "--experiment", experiment, "--resume"]
    again += ["--scenes", ",".join(chosen)] if scenes is not None else []
    resume_command = shlex.join([*again, *overrides])
    table = []
    summary_path = None
    for scene in chosen:
        scene_overrides = [*overrides, f"dataset.scene={scene}"]
        try:
            config = load_config(experiment, scene_overrides)
        except ConfigError as error:
            raise click.UsageError(str(error)) from None
        run_dir = default_run_dir(config, workspace())
        summary_path = run_dir.parent / "summary.json"
        final = run_dir / "eval" / f"step_{config.train.steps:07d}" / "metrics.json"
        if final.is_file() and not overwrite:
            console.echo(f"{scene}: already trained ({final}), skipped")
            result = json.loads(final.read_text())
        else:
            has_run = (run_dir / "config.toml").is_file()
            console.echo(f"=== {scene}")
            outcome = train_one(
                experiment,
                scene_overrides,
                run_dir,
                resume and has_run,
                overwrite,
                console,
                resume_command=resume_command,
            )
            result = outcome.evaluation
        table.append((scene, result["layered"]["psnr"], result["surface"]["psnr"]))
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
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    console.echo(f"written to {summary_path}")


@main.command("experiments")
def experiments_command() -> None:
    """List the shipped experiments."""
    for name in experiment_names():
        click.echo(name)


@main.command("versions")
def versions_command() -> None:
    """Print the versions of Python, torch, CUDA, slangtorch and the Meshtryoshka packages."""
    for name, value in versions().items():
        click.echo(f"{name:20s} {value}")


from . import doctor  # noqa: E402  (registered here, at the end, to keep cli.py's edits small)

main.add_command(doctor.doctor_command)
main.add_command(doctor.precompile_command)
main.add_command(doctor.clear_cache_command)

from . import export  # noqa: E402

main.add_command(export.export_mesh_command)

from . import camera_path  # noqa: E402

main.add_command(camera_path.render_command)

from .viewer import view_command  # noqa: E402

main.add_command(view_command)
