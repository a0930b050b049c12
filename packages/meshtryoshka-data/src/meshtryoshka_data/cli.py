"""``meshtryoshka-data``: check datasets, make them from photos, write synthetic scenes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .check import check_dataset
from .errors import DatasetError
from .from_images import CAMERA_MODELS, MATCHING, ReconstructionError, images_to_dataset
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


def _downscales(ctx, param, value: str) -> tuple[int, ...]:
    try:
        factors = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas, got {value!r}") from None
    if any(d < 2 for d in factors):
        raise click.BadParameter(f"factors must be >= 2, got {value!r}")
    return factors


# each command spells out its click options: alike by design
@main.command("from-images")
@click.argument("photos_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--matching",
    type=click.Choice(MATCHING),
    default="auto",
    show_default=True,
    help="exhaustive: every pair (unordered photos); sequential: neighbours by file name "
    "(video frames); auto: exhaustive up to --exhaustive-limit photos, else sequential.",
)
@click.option("--exhaustive-limit", default=300, show_default=True, help="See --matching.")
@click.option(
    "--camera-model",
    type=click.Choice(CAMERA_MODELS),
    default="SIMPLE_RADIAL",
    show_default=True,
    help="Lens model to estimate: OPENCV for wide-angle lenses, OPENCV_FISHEYE for fisheyes, "
    "SIMPLE_PINHOLE for rendered images. The output is undistorted to PINHOLE.",
)
@click.option(
    "--camera-per-image", is_flag=True, help="Estimate a camera per photo (zoom changed)."
)
@click.option(
    "--max-image-size",
    default=3200,
    show_default=True,
    help="Longest side photos are shrunk to for feature extraction.",
)
@click.option(
    "--downscales",
    default="2,4",
    show_default=True,
    callback=_downscales,
    help="images_<d>/ folders to write.",
)
@click.option(
    "--min-registered",
    default=0.5,
    show_default=True,
    help="Fraction of the photos that must get a pose, else exit 1 with advice.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR once the new one is complete.")
@click.option("--threads", default=-1, show_default=True, help="CPU threads (-1: all).")
@click.option("--seed", default=0, show_default=True, help="COLMAP's random seed.")
@click.option("--verbose", is_flag=True, help="Also print COLMAP's own log.")
def from_images(photos_dir: Path, out_dir: Path, **options):
    """Recover camera poses for the photos in PHOTOS_DIR (pycolmap) and write a COLMAP dataset
    in the Mip-NeRF 360 layout to OUT_DIR: images/, images_2/, images_4/, sparse/0.

    Needs the extra: pip install 'meshtryoshka-data[colmap]'. Video: extract frames first,
    e.g. ffmpeg -i video.mp4 -vf fps=2 -q:v 2 frames/frame_%05d.jpg, then use
    --matching sequential.
    """
    try:
        report = images_to_dataset(
            photos_dir,
            out_dir,
            matching=options["matching"],
            camera_model=options["camera_model"],
            single_camera=not options["camera_per_image"],
            max_image_size=options["max_image_size"],
            downscales=options["downscales"],
            min_registered=options["min_registered"],
            exhaustive_limit=options["exhaustive_limit"],
            overwrite=options["overwrite"],
            num_threads=options["threads"],
            seed=options["seed"],
            verbose=options["verbose"],
            echo=click.echo,
        )
    except ReconstructionError as error:
        if error.report is not None and error.report.n_models:
            click.echo(error.report.summary(), err=True)
        click.echo(f"error: {error}\nNothing was written to {out_dir}.", err=True)
        sys.exit(1)
    except (DatasetError, ValueError, ImportError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(report.summary())
    check = check_dataset(out_dir, decode=False)
    click.echo(f"check:        {'VALID' if check.ok else 'INVALID: ' + '; '.join(check.problems)}")
    click.echo(f"written:      {out_dir}")
    click.echo(
        "train it:     meshtryoshka-train --experiment mip360 "
        f"dataset.root={out_dir.parent} dataset.scene={out_dir.name}"
    )
    sys.exit(0 if check.ok else 1)
