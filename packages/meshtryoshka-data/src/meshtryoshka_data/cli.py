"""``meshtryoshka-data``: check dataset folders, write synthetic scenes."""

from __future__ import annotations

import sys

import click

from .check import check_dataset
from .synthetic import write_blender_scene, write_colmap_scene


@click.group()
def main():
    """Meshtryoshka dataset tools."""


@main.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option("--downscale", default=1, show_default=True, help="Image downscale factor to check.")
@click.option("--no-decode", is_flag=True, help="Only read image headers (faster).")
def check(path: str, downscale: int, no_decode: bool):
    """Validate the dataset at PATH and print a summary; exit code 0 only if it is valid."""
    report = check_dataset(path, downscale=downscale, decode=not no_decode)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["blender", "colmap"]),
    default="blender",
    show_default=True,
)
@click.option("--size", default=32, show_default=True, help="Image width in pixels.")
@click.option("--images", "n_images", default=10, show_default=True, help="Number of images.")
@click.option("--seed", default=0, show_default=True)
def synthetic(path: str, fmt: str, size: int, n_images: int, seed: int):
    """Write a small synthetic scene (a coloured sphere) to PATH."""
    if fmt == "blender":
        n_test = max(1, n_images // 5)
        write_blender_scene(
            path, n_train=n_images - 2 * n_test, n_val=n_test, n_test=n_test, size=size, seed=seed
        )
    else:
        write_colmap_scene(path, n_images=n_images, size=(size, size * 3 // 4), seed=seed)
    click.echo(f"wrote a {fmt} scene to {path}")
