"""Public operations: validate the inputs, pick a backend, dispatch.

Every op has a pure-PyTorch reference (``slang_rasterizer.reference``, CPU and CUDA) and a Slang
implementation (``slang_rasterizer._slang``, CUDA). Which one runs is `resolve_backend`'s rule,
the same for every op of both kernel packages.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from slang_kernel_runtime import Backend

from . import reference
from .compilation import KERNELS
from .types import Cameras, Fragments, ShellMesh, describe

__all__ = [
    "MAX_FUSED_SHELLS",
    "Backend",
    "resolve_backend",
    "slang_available",
    "rasterize",
    "interpolate",
    "eval_sh",
    "composite",
    "render",
]


MAX_FUSED_SHELLS = 16
"""Most shells the fused mode supports (one slot per shell per pixel; MAX_SHELLS in Slang)."""

_FLOATS = (torch.float32, torch.float64)


#: ``(True, "")`` when the Slang backend can run here, else ``(False, reason)``.
slang_available = KERNELS.slang_available
#: ``resolve_backend(backend, device, dtype=None)``: which backend an op runs with. The one rule
#: of both kernel packages (`slang_kernel_runtime.KernelPackage.resolve_backend`).
resolve_backend = KERNELS.resolve_backend


def _check_type(value, cls, name: str):
    if not isinstance(value, cls):
        raise ValueError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")


def _check_near(near) -> float:
    if not isinstance(near, (int, float)) or isinstance(near, bool) or not near > 0:
        raise ValueError(f"near must be a finite number > 0, got {near!r}")
    if not math.isfinite(near):
        raise ValueError(f"near must be a finite number > 0, got {near!r}")
    return float(near)


def _check_same_device(device: torch.device, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if t.device != device:
            raise ValueError(f"{name} is on {t.device}, expected {device} (the mesh's device)")


def rasterize(
    cameras: Cameras,
    mesh: ShellMesh,
    near: float = 0.01,
    cull_backfaces: bool = True,
    backend: Backend = "auto",
) -> Fragments:
    """Nearest front-facing triangle per camera, shell and pixel (explicit mode).

    Args:
        cameras: B cameras, image size (H, W) (apply ``cameras.scaled(m)`` for SSAA yourself).
        mesh: S shells of one triangle list.
        near: near plane (camera z, world units, > 0). Faces with any vertex at z < near are
            culled (not clipped); this also removes faces behind the camera.
        cull_backfaces: drop faces whose outward normal points away from the camera centre.
        backend: "auto", "reference" or "slang".
    Returns:
        Fragments: face_index int32 [B, S, H, W] (-1 on a miss) and perspective-correct
        barycentrics float32 [B, S, H, W, 2] (l1, l2; l0 = 1 - l1 - l2). Not differentiable.
    """
    _check_type(cameras, Cameras, "cameras")
    _check_type(mesh, ShellMesh, "mesh")
    near = _check_near(near)
    if cameras.device != mesh.device:
        raise ValueError(f"cameras are on {cameras.device} but the mesh on {mesh.device}")
    if KERNELS.resolve_backend(backend, mesh.device, None, "mesh") == "slang":
        from . import _slang

        return _slang.rasterize(cameras, mesh, near, bool(cull_backfaces))
    return reference.rasterize(cameras, mesh, near, bool(cull_backfaces))


def interpolate(
    attributes: Tensor, faces: Tensor, fragments: Fragments, backend: Backend = "auto"
) -> Tensor:
    """Interpolate vertex attributes at the hits, differentiably w.r.t. ``attributes``.

    Args:
        attributes: float32/float64 [N] or [N, C] (shared by every camera) or [B, N, C]
            (per camera, e.g. the output of :func:`eval_sh`).
        faces: int32 [M, 3], the faces ``fragments`` refers to.
        fragments: output of :func:`rasterize`.
    Returns:
        [B, S, H, W] for [N] attributes, else [B, S, H, W, C]; zero where a shell is missed.
        The gradient of a missed shell is zero; a hit spreads its gradient over the face's three
        vertices with the barycentric weights.
    """
    _check_type(fragments, Fragments, "fragments")
    if not isinstance(attributes, Tensor) or attributes.dtype not in _FLOATS:
        raise ValueError(
            "attributes must be a float32 or float64 tensor [N], [N, C] or [B, N, C], got "
            + (
                describe(attributes)
                if isinstance(attributes, Tensor)
                else type(attributes).__name__
            )
        )
    if (
        not isinstance(faces, Tensor)
        or faces.dtype != torch.int32
        or faces.dim() != 2
        or (faces.shape[1] != 3)
    ):
        got = describe(faces) if isinstance(faces, Tensor) else type(faces).__name__
        raise ValueError(f"faces must be int32 [M, 3], got {got}")
    bsz = fragments.face_index.shape[0]
    if attributes.dim() not in (1, 2, 3) or (attributes.dim() == 3 and attributes.shape[0] != bsz):
        raise ValueError(
            f"attributes must be [N], [N, C] or [B, N, C] with B = {bsz}, "
            f"got {describe(attributes)}"
        )
    device = fragments.face_index.device
    _check_same_device(device, attributes=attributes, faces=faces)
    n = attributes.shape[-2] if attributes.dim() >= 2 else attributes.shape[0]
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= n):
        raise ValueError(f"faces must index attributes' {n} vertices, got indices out of range")
    if fragments.face_index.numel() and int(fragments.face_index.max()) >= faces.shape[0]:
        raise ValueError(f"fragments.face_index must be < M = {faces.shape[0]}")
    scalar = attributes.dim() == 1
    attrs = attributes[:, None] if scalar else attributes
    if KERNELS.resolve_backend(backend, device, attrs.dtype, "attributes") == "slang":
        from . import _slang

        out = _slang.interpolate(attrs, faces, fragments)
    else:
        out = reference.interpolate(attrs, faces, fragments)
    return out[..., 0] if scalar else out


def eval_sh(
    sh: Tensor, positions: Tensor, camera_centers: Tensor, backend: Backend = "auto"
) -> Tensor:
    """Per-camera vertex colors from spherical harmonics, differentiable w.r.t. ``sh``.

    Args:
        sh: float32/float64 [N, n_sh, 3], n_sh = (degree + 1)^2 with degree 0..3 (vertex-major).
        positions: float32 [N, 3], world space.
        camera_centers: float32 [B, 3], e.g. ``cameras.centers()``.
    Returns:
        colors [B, N, 3] = max(sum_k basis_k(d) sh[:, k] + 0.5, 0) with the standard real SH
        basis (3DGS sign convention) and d = normalize(position - centre). No upper clamp.
    """
    if (
        not isinstance(sh, Tensor)
        or sh.dtype not in _FLOATS
        or sh.dim() != 3
        or (sh.shape[1] not in (1, 4, 9, 16) or sh.shape[2] != 3)
    ):
        got = describe(sh) if isinstance(sh, Tensor) else type(sh).__name__
        raise ValueError(f"sh must be float [N, n_sh, 3] with n_sh in (1, 4, 9, 16), got {got}")
    if (
        not isinstance(positions, Tensor)
        or positions.shape != (sh.shape[0], 3)
        or (positions.dtype not in _FLOATS)
    ):
        got = describe(positions) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must be float [N, 3] with N = {sh.shape[0]}, got {got}")
    if (
        not isinstance(camera_centers, Tensor)
        or camera_centers.dim() != 2
        or (camera_centers.shape[1] != 3 or camera_centers.dtype not in _FLOATS)
    ):
        got = (
            describe(camera_centers) if isinstance(camera_centers, Tensor)
            else type(camera_centers).__name__
        )  # fmt: skip
        raise ValueError(f"camera_centers must be float [B, 3], got {got}")
    _check_same_device(positions.device, sh=sh, camera_centers=camera_centers)
    if KERNELS.resolve_backend(backend, sh.device, sh.dtype, "sh") == "slang":
        from . import _slang

        return _slang.eval_sh(sh, positions.float(), camera_centers.float())
    return reference.eval_sh(sh, positions, camera_centers)


def _check_scalar(value, name: str, lo: float, hi: float, lo_open: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bound = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise ValueError(f"{name} must be a finite number in {bound}, got {value!r}")
    return float(value)


def _check_background(background, bsz: int, h: int, w: int, device) -> Tensor:
    ok = isinstance(background, Tensor) and background.dtype in _FLOATS
    ok = ok and (background.shape == (3,) or background.shape == (bsz, 3, h, w))
    if not ok:
        got = describe(background) if isinstance(background, Tensor) else repr(background)
        raise ValueError(
            f"background must be float [3] or [B, 3, H, W] = [{bsz}, 3, {h}, {w}], got {got}"
        )
    if background.device != device:
        raise ValueError(f"background is on {background.device}, expected {device}")
    return background


def composite(
    sdf: Tensor,
    colors: Tensor,
    hit: Tensor,
    sharpness: float,
    background: Tensor | None = None,
    alpha_max: float = 0.99,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Composite the shells front to back (DESIGN §1), differentiably.

    Per pixel, over the hit shells in index order (outer to inner): ``Phi = sigmoid(k sdf)``,
    the outer value is 1 for the first hit shell, ``alpha = clamp((Phi_o - Phi_i + 1e-5) /
    (Phi_o + 1e-5), 0, alpha_max)``, ``C += T alpha color``, ``T *= 1 - alpha``. A missed shell
    changes neither T nor Phi_o. Finally ``image = C + T background``; nothing is clamped.

    Args:
        sdf: float [B, S, H, W], interpolated signed distance at each shell's hit.
        colors: float [B, S, H, W, 3], interpolated color at each shell's hit.
        hit: bool [B, S, H, W] (e.g. ``fragments.hit``).
        sharpness: k > 0 of the logistic CDF (no gradient).
        background: float [3] or [B, 3, H, W], or None for black (zero).
        alpha_max: cap of alpha in (0, 1]; 1.0 gives an opaque surface render.
    Returns:
        (image [B, 3, H, W], alpha [B, 1, H, W] = 1 - final transmittance), differentiable
        w.r.t. sdf, colors and background.
    """
    if not isinstance(sdf, Tensor) or sdf.dtype not in _FLOATS or sdf.dim() != 4:
        got = describe(sdf) if isinstance(sdf, Tensor) else type(sdf).__name__
        raise ValueError(f"sdf must be float [B, S, H, W], got {got}")
    if (
        not isinstance(colors, Tensor)
        or colors.dtype != sdf.dtype
        or colors.shape
        != (
            *sdf.shape,
            3,
        )
    ):
        got = describe(colors) if isinstance(colors, Tensor) else type(colors).__name__
        raise ValueError(
            f"colors must be {str(sdf.dtype)[6:]} [B, S, H, W, 3] = {[*sdf.shape, 3]}, got {got}"
        )
    if not isinstance(hit, Tensor) or hit.dtype != torch.bool or hit.shape != sdf.shape:
        got = describe(hit) if isinstance(hit, Tensor) else type(hit).__name__
        raise ValueError(f"hit must be bool [B, S, H, W] = {list(sdf.shape)}, got {got}")
    sharpness = _check_scalar(sharpness, "sharpness", 0.0, math.inf, True)
    alpha_max = _check_scalar(alpha_max, "alpha_max", 0.0, 1.0, True)
    bsz, _, h, w = sdf.shape
    _check_same_device(sdf.device, colors=colors, hit=hit)
    if background is None:
        background = torch.zeros(3, dtype=sdf.dtype, device=sdf.device)
    background = _check_background(background, bsz, h, w, sdf.device)
    if KERNELS.resolve_backend(backend, sdf.device, sdf.dtype, "sdf and colors") == "slang":
        from . import _slang

        c, t = _slang.composite(sdf, colors, hit, sharpness, alpha_max)
    else:
        c, t = reference.composite(
            sdf.transpose(0, 1), colors.transpose(0, 1), hit.transpose(0, 1), sharpness, alpha_max
        )
        c, t = c.permute(0, 3, 1, 2), t[:, None]
    return reference.finish(c, t, background, 1)


def render(
    cameras: Cameras,
    mesh: ShellMesh,
    sdf: Tensor,
    sh: Tensor,
    sharpness: float,
    background: Tensor,
    mode: Literal["fused", "explicit"] = "fused",
    ssaa: int = 1,
    near: float = 0.01,
    alpha_max: float = 0.99,
    cull_backfaces: bool = True,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Render the shells from every camera: rasterize, interpolate, shade, composite.

    Args:
        cameras: B cameras; the output has their image size (H, W).
        mesh: S shells (outermost first) of one triangle list, N vertices.
        sdf: float32 [N] vertex signed distance (differentiable).
        sh: float32 [N, n_sh, 3] vertex SH coefficients, n_sh in (1, 4, 9, 16) (differentiable).
        sharpness: k of ``Phi(s) = sigmoid(k s)`` (> 0, no gradient).
        background: float32 [3] or [B, 3, H, W] at the output resolution (differentiable).
        mode: "fused" (default: one tile pass, backward re-walks the tiles, memory O(B H W)
            beyond the mesh; at most MAX_FUSED_SHELLS shells) or "explicit" (rasterize +
            interpolate + composite, keeps 12 B S H W m^2 bytes of hits). Same result.
        ssaa: supersampling factor m >= 1: render at (mH, mW) and box-filter down.
        near: near plane (> 0): faces with any vertex at camera z < near are culled.
        alpha_max: cap of the per-shell alpha in (0, 1] (1.0: opaque surface render).
        cull_backfaces: drop faces whose outward normal points away from the camera.
        backend: "auto", "reference" or "slang".
    Returns:
        image float32 [B, 3, H, W] (not clamped) and alpha float32 [B, 1, H, W] (1 minus the
        final transmittance), both differentiable w.r.t. sdf, sh and background.
    """
    _check_type(cameras, Cameras, "cameras")
    _check_type(mesh, ShellMesh, "mesh")
    n = mesh.positions.shape[0]
    if not isinstance(sdf, Tensor) or sdf.dtype not in _FLOATS or sdf.shape != (n,):
        got = describe(sdf) if isinstance(sdf, Tensor) else type(sdf).__name__
        raise ValueError(f"sdf must be float32 [N] with N = {n} (mesh vertices), got {got}")
    if (
        not isinstance(sh, Tensor)
        or sh.dtype != sdf.dtype
        or sh.dim() != 3
        or (sh.shape[0] != n or sh.shape[1] not in (1, 4, 9, 16) or sh.shape[2] != 3)
    ):
        got = describe(sh) if isinstance(sh, Tensor) else type(sh).__name__
        raise ValueError(
            f"sh must be {str(sdf.dtype)[6:]} [N, n_sh, 3] with N = {n} and n_sh in "
            f"(1, 4, 9, 16), got {got}"
        )
    if mode not in ("fused", "explicit"):
        raise ValueError(f"mode must be 'fused' or 'explicit', got {mode!r}")
    if not isinstance(ssaa, int) or isinstance(ssaa, bool) or not 1 <= ssaa <= 16:
        raise ValueError(f"ssaa must be an int in [1, 16], got {ssaa!r}")
    near = _check_near(near)
    sharpness = _check_scalar(sharpness, "sharpness", 0.0, math.inf, True)
    alpha_max = _check_scalar(alpha_max, "alpha_max", 0.0, 1.0, True)
    device = mesh.device
    if cameras.device != device:
        raise ValueError(f"cameras are on {cameras.device} but the mesh on {device}")
    _check_same_device(device, sdf=sdf, sh=sh)
    h, w = cameras.image_size
    background = _check_background(background, cameras.batch_size, h, w, device)
    if mode == "fused" and mesh.num_shells > MAX_FUSED_SHELLS:
        raise ValueError(
            f"mode='fused' supports at most {MAX_FUSED_SHELLS} shells, got "
            f"mesh.num_shells = {mesh.num_shells}; use mode='explicit'"
        )
    args = (cameras, mesh, sdf, sh, sharpness, background, mode, ssaa, near, alpha_max)
    if KERNELS.resolve_backend(backend, device, sdf.dtype, "sdf and sh") == "slang":
        from . import _slang

        return _slang.render(*args, bool(cull_backfaces))
    return reference.render(*args, bool(cull_backfaces))
