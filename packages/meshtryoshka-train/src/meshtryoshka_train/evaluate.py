"""Test-split evaluation: PSNR and SSIM of the "layered" and "surface" renders, JSON + PNGs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import Config
from .field import Field
from .metrics import psnr, ssim
from .rendering import Mode, extract_for_mode, render_extraction

__all__ = ["evaluate", "save_png"]


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """uint8 ``[H, W, 3]`` (CPU) of float ``[3, H, W]`` in [0, 1] (clipped)."""
    pixels = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy())


def save_png(path: Path, image: torch.Tensor) -> None:
    """Write float ``[3, H, W]`` in [0, 1] (clipped) as an 8-bit RGB PNG."""
    Image.fromarray(to_pixels(image)).save(path)


@torch.no_grad()
def evaluate(
    field: Field,
    dataset,
    config: Config,
    step: int,
    *,
    split: str = "test",
    modes: Sequence[Mode] = ("layered", "surface"),
    max_images: int = 0,
    out_dir: Path | None = None,
) -> dict:
    """Render `split` in every mode and measure it against the images.

    Each mode extracts its shells once (not once per image). "layered" renders the shells of
    step `step` with ``model.alpha_max``; "surface" renders the zero level set as an opaque
    mesh (alpha_max = 1). Both use ``model.eval_ssaa`` and ``model.eval_near``.

    Args:
        max_images: evaluate only the first this many images of the split (0 = all).
        out_dir: when given, writes ``out_dir/metrics.json`` and ``out_dir/<mode>/<name>.png``.
    Returns:
        ``{"step", "split", "images", <mode>: {"psnr", "ssim", "faces", "per_image": [...]}}``
        with means over the images (PSNR in dB).
    """
    model = config.model
    device = field.device
    indices = dataset.splits[split]
    count = len(indices) if max_images <= 0 else min(max_images, len(indices))
    result: dict = {"step": step, "split": split, "images": count}
    for mode in modes:
        extraction = extract_for_mode(field, model, step, mode)
        alpha_max = 1.0 if mode == "surface" else None
        rows = []
        if out_dir is not None:
            (Path(out_dir) / mode).mkdir(parents=True, exist_ok=True)
        for position, batch in enumerate(dataset.iterate(split, batch_size=1)):
            if position >= count:
                break
            image, _ = render_extraction(
                extraction,
                batch.world_to_camera.to(device),
                batch.intrinsics.to(device),
                (batch.height, batch.width),
                batch.background.to(device),
                model,
                ssaa=model.eval_ssaa,
                near=model.eval_near,
                alpha_max=alpha_max,
            )
            target = batch.images.to(device)
            index = int(batch.indices[0])
            name = f"{position:04d}_{Path(dataset.names[index]).stem}"
            rows.append(
                {
                    "name": name,
                    "index": index,
                    "psnr": float(psnr(image, target)[0]),
                    "ssim": float(ssim(image, target)[0]) if min(image.shape[-2:]) >= 11 else None,
                }
            )
            if out_dir is not None:
                save_png(Path(out_dir) / mode / f"{name}.png", image[0])
        ssims = [r["ssim"] for r in rows if r["ssim"] is not None]
        result[mode] = {
            "psnr": float(np.mean([r["psnr"] for r in rows])) if rows else float("nan"),
            "ssim": float(np.mean(ssims)) if ssims else None,
            "faces": extraction.num_faces,
            "per_image": rows,
        }
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
