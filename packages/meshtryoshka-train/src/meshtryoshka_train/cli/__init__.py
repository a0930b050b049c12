"""The ``meshtryoshka-train`` command line (also ``python -m meshtryoshka_train``).

The group `main` trains when called without a command (``--experiment NAME [key=value ...]``,
`train.train_one`); the commands live in one module each: ``train-all`` and ``experiments``
(`train`), ``eval`` (`eval`), ``export-mesh`` (`export`), ``render`` (`render`), ``view``
(`view`), ``versions``, ``doctor``, ``precompile`` and ``clear-cache`` (`doctor`). Every
command ends on an error as `errors.ErrorReport` maps it to an exit status and a message.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from .doctor import (
    clear_cache_command,
    doctor_command,
    precompile_command,
    versions,
    versions_command,
)
from .errors import EXIT_FAILED, EXIT_USAGE, ErrorReport
from .eval import eval_command
from .export import export_mesh_command
from .render import render_command
from .train import (
    Console,
    experiments_command,
    progress_line,
    train_all_command,
    train_one,
    workspace,
)
from .view import view_command

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "Console",
    "ErrorReport",
    "TrainGroup",
    "main",
    "progress_line",
    "train_one",
    "versions",
    "workspace",
]


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
    Ctrl-C stops at once. `torchrun --nproc-per-node N -m meshtryoshka_train --experiment ...`
    trains one run on N processes (GPUs), each rendering its share of every batch.
    `--resume` (with --experiment, or --run-dir RUN_DIR) continues from the newest
    checkpoint, exactly as if never stopped; overrides given with it are kept.
    """
    if ctx.invoked_subcommand is not None:
        return
    overrides = ctx.meta.get("overrides", [])
    if experiment is None and not resume:
        if overrides:
            raise click.UsageError("overrides need an experiment: --experiment NAME key=value")
        click.echo(ctx.get_help())
        return
    train_one(experiment, overrides, run_dir, resume, overwrite, Console(), data_parallel=True)


for _command in (
    eval_command,
    train_all_command,
    experiments_command,
    versions_command,
    doctor_command,
    precompile_command,
    clear_cache_command,
    export_mesh_command,
    render_command,
    view_command,
):
    main.add_command(_command)
