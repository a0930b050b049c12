"""``meshtryoshka-train export-mesh RUN_DIR``: a level set of a checkpoint as a coloured mesh."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..export import FORMATS, export_mesh
from ..run import open_run
from .errors import ErrorReport, warn

__all__ = ["export_mesh_command"]


@click.command("export-mesh")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--step", type=int, help="Checkpoint step (default: the newest checkpoint).")
@click.option(
    "--shell", type=int, help="Export shell K of the step's schedule (0 = outermost) instead."
)
@click.option("--level", type=float, help="Export this signed-distance level (contracted units).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Output file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    help="File format (default: the output's suffix, else ply).",
)
@click.option(
    "--normalized", is_flag=True, help="Keep normalized training coordinates (no dataset read)."
)
@click.option(
    "--crop",
    type=float,
    help="Keep faces within CROP x model.center_radius of the centre (unbounded scenes).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def export_mesh_command(
    run_dir: Path,
    step: int | None,
    shell: int | None,
    level: float | None,
    output: Path | None,
    fmt: str | None,
    normalized: bool,
    crop: float | None,
    device: str,
) -> None:
    """Write the zero level set (or a shell) of RUN_DIR's newest checkpoint as a coloured mesh.

    The mesh is in the dataset's original coordinates (normalization and, for unbounded
    scenes, the contraction undone), with per-vertex colours from the degree-0 SH. Default
    output: RUN_DIR/mesh/mesh_step_XXXXXXX.ply (suffixed _shellK or _levelX).
    """
    if shell is not None and level is not None:
        raise click.UsageError("give --shell or --level, not both")
    hint = " (the dataset is needed to undo its normalization; --normalized skips it)"
    with ErrorReport(bad_values=True, dataset_hint=hint):
        run = open_run(run_dir, step=step, device=device, warn=warn)
        suffix, chosen = "", 0.0
        if shell is not None:
            picked = run.shell(shell, what="--shell")
            chosen, suffix = picked.level, picked.suffix
        elif level is not None:
            chosen, suffix = level, f"_level{level:g}"
        result = export_mesh(
            run,
            level=chosen,
            output=output,
            fmt=fmt,
            normalized=normalized,
            crop=crop,
            suffix=suffix,
        )
    mesh, edges = result.mesh, result.edges
    low, high = mesh.bounds()
    click.echo(
        f"step {run.step}, level {result.level:.6g}: {mesh.num_vertices} vertices, "
        f"{mesh.num_faces} faces ({result.merged} coincident vertices welded)"
    )
    click.echo(f"bounds ({result.frame} coordinates): min {_vec(low)} max {_vec(high)}")
    if edges.watertight:
        click.echo("watertight: yes")
    else:
        click.echo(
            f"watertight: no ({edges.boundary} boundary, {edges.non_manifold} non-manifold, "
            f"{edges.misoriented} misoriented edges)"
        )
    click.echo(f"written to {result.path}")


def _vec(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
