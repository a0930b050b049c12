"""The ``meshtryoshka-train`` command line."""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

import click

from . import __version__

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


@click.group(invoke_without_command=True)
@click.option("--experiment", help="Experiment to train (a TOML file shipped in the package).")
@click.version_option(__version__, prog_name="meshtryoshka-train")
@click.pass_context
def main(ctx: click.Context, experiment: str | None) -> None:
    """Train Meshtryoshka scenes: `meshtryoshka-train --experiment NAME [key=value ...]`."""
    if ctx.invoked_subcommand is not None:
        return
    if experiment is None:
        click.echo(ctx.get_help())
        return
    click.echo(
        f"meshtryoshka-train: training ('{experiment}') is not available in version "
        f"{__version__} yet.",
        err=True,
    )
    sys.exit(2)


@main.command("versions")
def versions_command() -> None:
    """Print the versions of Python, torch, CUDA, slangtorch and the Meshtryoshka packages."""
    for name, value in versions().items():
        click.echo(f"{name:20s} {value}")
