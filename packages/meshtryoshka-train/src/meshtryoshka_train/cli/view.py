"""``meshtryoshka-train view RUN_DIR``: the web viewer of a checkpoint (needs viser)."""

from __future__ import annotations

from pathlib import Path

import click

from ..run import open_run
from ..viewer import Viewer, require_viser
from .errors import ErrorReport, warn

__all__ = ["view_command"]


@click.command("view")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--port", type=int, help="Port (default: the run's viewer.port, 8080).")
@click.option("--host", help="Address to listen on (default: the run's viewer.host, 127.0.0.1).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    help="Render device (default: the run's train.device).",
)
def view_command(run_dir: Path, port: int | None, host: str | None, device: str | None) -> None:
    """Serve the web viewer of RUN_DIR's newest checkpoint until Ctrl-C.

    Needs the optional dependency viser: pip install 'meshtryoshka-train[viewer]'.
    """
    overrides = [f"viewer.port={port}"] if port is not None else []
    overrides += [f'viewer.host="{host}"'] if host is not None else []
    with ErrorReport():  # device None: the run's train.device
        run = open_run(run_dir, device=device, overrides=overrides, warn=warn)
        require_viser()
        viewer = Viewer(run, training=False, echo=click.echo)
    click.echo(f"viewer of {run_dir} at step {run.step}: {viewer.url} (Ctrl-C to quit)")
    viewer.serve()
