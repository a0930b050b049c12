"""The ``meshtryoshka-train`` command line."""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

import click

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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        positional = [
            a
            for i, a in enumerate(args)
            if not a.startswith("-") and not (i > 0 and args[i - 1] in ("--experiment", "-e"))
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
@click.version_option(__version__, prog_name="meshtryoshka-train")
@click.pass_context
def main(ctx: click.Context, experiment: str | None) -> None:
    """Train Meshtryoshka scenes: `meshtryoshka-train --experiment NAME [key=value ...]`.

    Every configuration key can be overridden as `section.key=value` (TOML values), e.g.
    `meshtryoshka-train --experiment mip360 dataset.scene=bicycle model.render_mode=explicit`.
    """
    if ctx.invoked_subcommand is not None:
        return
    overrides = ctx.meta.get("overrides", [])
    if experiment is None:
        if overrides:
            raise click.UsageError("overrides need an experiment: --experiment NAME key=value")
        click.echo(ctx.get_help())
        return
    try:
        config = load_config(experiment, overrides)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    click.echo(
        f"meshtryoshka-train: configuration '{config.experiment}' is valid, but training is not "
        f"available in version {__version__} yet.",
        err=True,
    )
    sys.exit(2)


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
