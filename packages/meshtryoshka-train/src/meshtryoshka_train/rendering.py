"""Rendering the field for training and evaluation: "layered" (all shells) and "surface"."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from slang_rasterizer import Cameras, render

from .config import ModelConfig
from .field import Extraction, Field
from .run import shell_levels_at

__all__ = ["OPAQUE_SDF", "Mode", "extract_for_mode", "extract_opaque", "render_extraction"]

Mode = Literal["layered", "surface"]

OPAQUE_SDF = -1.0e4
"""Signed distance given to surface-mode vertices: sigmoid(k * s) = 0, so alpha = 1."""


@torch.no_grad()
def extract_for_mode(field: Field, model: ModelConfig, step: int, mode: Mode) -> Extraction:
    """The shells to render: the scheduled shells ("layered") or the zero level set alone,
    made opaque ("surface": every vertex gets `OPAQUE_SDF`; render it with alpha_max = 1).
    No gradients (evaluation and renders)."""
    if mode not in ("layered", "surface"):
        raise ValueError(f"mode must be 'layered' or 'surface', got {mode!r}")
    if mode == "layered":
        return field.extract(shell_levels_at(model, step), backend=model.backend)
    return extract_opaque(field, model, 0.0)


@torch.no_grad()
def extract_opaque(field: Field, model: ModelConfig, level: float) -> Extraction:
    """The level set `level` alone as an opaque mesh (every vertex gets `OPAQUE_SDF`; render
    it with alpha_max = 1). Level 0 is the "surface" mode. No gradients."""
    extraction = field.extract([level], backend=model.backend)
    extraction.sdf = torch.full_like(extraction.sdf, OPAQUE_SDF)
    return extraction


def render_extraction(
    extraction: Extraction,
    world_to_camera: Tensor,
    intrinsics: Tensor,
    image_size: tuple[int, int],
    background: Tensor,
    model: ModelConfig,
    *,
    ssaa: int,
    near: float,
    alpha_max: float | None = None,
    cull_backfaces: bool = True,
    check_cameras: bool = True,
) -> tuple[Tensor, Tensor]:
    """Render shells from B cameras; returns (image [B, 3, H, W], alpha [B, 1, H, W]).

    background: float32 ``[3]`` (one colour for every image) or ``[B, 3]`` (one per image;
        all equal is detected, which reads the values: a host sync). alpha_max: None uses the
        model's.
    cull_backfaces: False also draws faces seen from inside (the viewer's cut-away sections).
    check_cameras: False skips the camera checks that read values (host syncs): for a
    dataset's cameras, checked when it was loaded.
    """
    cameras = Cameras(
        world_to_camera.float(), intrinsics.float(), image_size, check_values=check_cameras
    )
    if background.dim() == 1:
        colour = background.contiguous()
    elif bool((background == background[:1]).all()):
        colour = background[0].contiguous()
    else:
        height, width = image_size
        colour = background[:, :, None, None].expand(-1, 3, height, width).contiguous()
    return render(
        cameras,
        extraction.mesh(),
        extraction.sdf,
        extraction.sh,
        model.sharpness,
        colour,
        mode=model.render_mode,
        ssaa=ssaa,
        near=near,
        alpha_max=model.alpha_max if alpha_max is None else alpha_max,
        cull_backfaces=cull_backfaces,
        backend=model.backend,
    )
