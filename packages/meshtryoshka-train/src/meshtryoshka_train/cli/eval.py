"""``meshtryoshka-train eval RUN_DIR``: PSNR and SSIM of a checkpoint's renders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..evaluate import evaluate
from ..run import open_run
from .errors import ErrorReport, warn

__all__ = ["eval_command"]


@click.command("eval")
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
    with ErrorReport():
        run = open_run(run_dir, step=step, device=device, warn=warn)
        dataset = run.dataset
    if split not in dataset.splits or not len(dataset.splits[split]):
        known = ", ".join(f"{k} ({len(v)})" for k, v in dataset.splits.items())
        raise click.UsageError(f"--split {split!r} is empty or unknown; this dataset has {known}")
    out_dir = run.files.eval_dir(run.step, split)
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
