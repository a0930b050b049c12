"""The ``meshtryoshka-train`` command line."""

from __future__ import annotations

import json
import os
import platform
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
    """Event lines on stdout; the progress line rewritten in place on a terminal."""

    def __init__(self) -> None:
        self.interactive = sys.stdout.isatty()
        self.open_line = False

    def echo(self, text: str) -> None:
        if self.open_line:
            click.echo("")
            self.open_line = False
        click.echo(text)

    def progress(self, text: str) -> None:
        if self.interactive:
            click.echo("\r" + text + "\x1b[K", nl=False)
            self.open_line = True
        else:
            click.echo(text)


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
):
    """Train one run (the body of the bare command and of `train-all`)."""
    from .config import load_saved_config
    from .trainer import Trainer, TrainingDiverged, default_run_dir, prepare_run_dir

    if experiment is None and not (resume and run_dir is not None):
        raise click.UsageError("give --experiment NAME (or --resume with --run-dir RUN_DIR)")
    try:
        if experiment is not None:
            config = load_config(experiment, overrides)
            run_dir = run_dir or default_run_dir(config, workspace())
        if resume:
            config = load_saved_config(run_dir / "config.toml", overrides)
        if config.viewer.enabled:
            from .viewer import require_viser

            require_viser()  # before the run directory is touched
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
    except (TrainingDiverged, DatasetError) as error:
        console.echo("")
        raise click.ClickException(str(error)) from None


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
@click.option("--resume", is_flag=True, help="Continue the run from its newest checkpoint.")
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
@click.option("--no-images", is_flag=True, help="Write metrics.json only, no PNG renders.")
def eval_command(run_dir: Path, split: str, no_images: bool) -> None:
    """PSNR and SSIM of the "layered" and "surface" renders of RUN_DIR's newest checkpoint.

    Writes RUN_DIR/eval/step_XXXXXXX/metrics.json (means and per image) and, unless
    --no-images, layered/*.png and surface/*.png.
    """
    from .config import load_saved_config
    from .evaluate import evaluate
    from .trainer import Trainer

    if not (run_dir / "config.toml").is_file():
        raise click.UsageError(f"{run_dir} is not a run directory (no config.toml)")
    try:
        config = load_saved_config(run_dir / "config.toml")
        trainer = Trainer(config, run_dir, resume=True, echo=lambda _: None)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    if split not in trainer.dataset.splits or not len(trainer.dataset.splits[split]):
        raise click.UsageError(f"split '{split}' is empty or unknown for this dataset")
    out_dir = run_dir / "eval" / f"step_{trainer.step:07d}"
    result = evaluate(
        trainer.field,
        trainer.dataset,
        config,
        trainer.step,
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
    click.echo(f"step {trainer.step}, {result['images']} {split} images; written to {out_dir}")


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
    with their per-scene settings, then prints a table of test PSNRs. A scene whose run
    already finished (its final evaluation exists) is skipped.
    """
    from .config import experiment_scenes
    from .trainer import default_run_dir

    try:
        listed = experiment_scenes(experiment)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    if not listed:
        raise click.UsageError(f"experiment '{experiment}' lists no [scenes.*]")
    chosen = listed if scenes is None else [s.strip() for s in scenes.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(listed))
    if unknown:
        raise click.UsageError(f"unknown scenes {unknown}; '{experiment}' lists {listed}")
    console = Console()
    table = []
    for scene in chosen:
        scene_overrides = [*overrides, f"dataset.scene={scene}"]
        try:
            config = load_config(experiment, scene_overrides)
        except ConfigError as error:
            raise click.UsageError(str(error)) from None
        run_dir = default_run_dir(config, workspace())
        final = run_dir / "eval" / f"step_{config.train.steps:07d}" / "metrics.json"
        if final.is_file() and not overwrite:
            console.echo(f"{scene}: already trained ({final}), skipped")
            result = json.loads(final.read_text())
        else:
            has_run = (run_dir / "config.toml").is_file()
            console.echo(f"=== {scene}")
            outcome = train_one(
                experiment, scene_overrides, run_dir, resume and has_run, overwrite, console
            )
            result = outcome.evaluation
        table.append((scene, result["layered"]["psnr"], result["surface"]["psnr"]))
    console.echo(f"{'scene':12s} {'layered':>8s} {'surface':>8s}")
    for scene, layered, surface in table:
        console.echo(f"{scene:12s} {layered:8.2f} {surface:8.2f}")
    if table:
        mean_l = sum(t[1] for t in table) / len(table)
        mean_s = sum(t[2] for t in table) / len(table)
        console.echo(f"{'mean':12s} {mean_l:8.2f} {mean_s:8.2f}")


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
