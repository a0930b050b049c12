"""``meshtryoshka-train render RUN_DIR``: a camera path of a checkpoint to PNG frames and a GIF."""

from __future__ import annotations

from pathlib import Path

import click

from ..camera_path import parse_mode, parse_size, render_path
from ..run import open_run
from .errors import ErrorReport, warn

__all__ = ["render_command"]


# click declarations look alike across the commands of both packages (by design)
@click.command("render")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--path",
    "path_kind",
    type=click.Choice(["orbit", "test"]),
    default="orbit",
    show_default=True,
    help="An orbit around the scene, or the test cameras.",
)
@click.option("--frames", type=int, help="Orbit frames (default 60); test: at most this many.")
@click.option(
    "--mode",
    default="layered",
    show_default=True,
    help="layered (all shells), surface (zero level set, opaque) or shell:K (shell K, opaque; "
    "0 = outermost).",
)
@click.option("--size", help="Frame size WxH (default: the dataset's image size).")
@click.option("--step", type=int, help="Checkpoint step (default: the newest checkpoint).")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder (default RUN_DIR/renders/<path>_<mode>_step_XXXXXXX).",
)
@click.option("--fps", type=float, default=24.0, show_default=True, help="GIF frame rate.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def render_command(
    run_dir: Path,
    path_kind: str,
    frames: int | None,
    mode: str,
    size: str | None,
    step: int | None,
    output: Path | None,
    fps: float,
    device: str,
) -> None:
    """Render RUN_DIR along an orbit (or the test cameras) to PNG frames and an animated GIF.

    The orbit circles the scene centre at the training cameras' mean distance and height,
    looking at the centre, with the training intrinsics scaled to --size.
    """
    with ErrorReport(bad_values=True):
        parse_mode(mode)
        target = None if size is None else parse_size(size)
        run = open_run(run_dir, step=step, device=device, warn=warn)
        result = render_path(
            run, path=path_kind, frames=frames, mode=mode, size=target, output=output, fps=fps
        )
    click.echo(
        f"step {run.step}, {mode} ({result.faces} faces): {len(result.frames)} frames "
        f"written to {result.folder}, preview {result.gif.name}"
    )
