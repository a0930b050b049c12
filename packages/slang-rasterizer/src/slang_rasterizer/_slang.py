"""The Slang backend: autograd Functions that launch the kernels of ``slang/rasterizer.slang``.

Same names, signatures and results as ``reference.py`` (the specification); the public
functions in ``api.py`` validate inputs and dispatch here for CUDA tensors. An autograd Function
behind an op is named after it in both modules (``_FusedRender`` is the fused mode of ``render``
in both; ``_Interpolate``, ``_Composite`` and ``_EvalSH`` exist only here, the reference is
differentiated by torch). Every kernel is in the one
entry module, compiled once per machine by the package's one ``SlangModule``
(``compilation.KERNELS``, from slang_kernel_runtime).

Pipeline of a render (both modes share the binning):
1. camera-space vertices [B, N, 3] (torch);
2. ``bin_count``: tiles overlapped per (camera, face); ``cumsum`` (int64); one host sync for
   the key total; ``bin_write``: keys ``(b * T + tile) << 32 | float bits of zmin`` and face ids;
3. ``torch.sort`` of the int64 keys; per (camera, tile) key ranges by ``searchsorted``;
4. fused: ``fused_fwd`` / ``fused_bwd`` (one block per tile, the backward walks again);
   explicit: ``raster_fwd`` then ``interpolate_*``, ``composite_*``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from slang_kernel_runtime import TENSOR_VIEW_BYTES

from . import compilation, reference
from .types import Cameras, Fragments, ShellMesh

_MODULE = compilation.KERNELS.slang_module()  # the package's one SlangModule (also precompile's)

TILE = 16  # must match raster_common.slang
_MAX_SHELLS = 16  # MAX_SHELLS of raster_common.slang
_THREADS = 256
_INT31 = 2**31
_VIEW_BYTES = TENSOR_VIEW_BYTES  # what one tensor view addresses (tests shrink it)


class TooManyOverlaps(ValueError):
    """The sort keys of one batch of cameras would not fit a tensor view (``render`` splits
    the batch and tries again)."""


def _blocks(n: int) -> tuple[int, int, int]:
    return ((n + _THREADS - 1) // _THREADS, 1, 1)


def key_layout(num_cameras: int, image_size: tuple[int, int], num_faces: int) -> tuple[int, int]:
    """(tiles_x, tiles_y) of the 16 x 16 tiling, after checking that the keys cannot wrap.

    A key packs ``b * T + tile`` (T = tiles_x * tiles_y) above 32 bits of depth in a signed
    int64, so ``B * T`` must stay below 2^31; face ids are int32 and (camera, face) pairs are
    counted in int32 threads, so ``M`` and ``B * M`` must stay below 2^31. Raises ValueError.
    """
    h, w = image_size
    tiles_x, tiles_y = -(-w // TILE), -(-h // TILE)
    if num_cameras * tiles_x * tiles_y >= _INT31:
        raise ValueError(
            f"cameras x tiles = {num_cameras} x {tiles_x * tiles_y} does not fit the 31-bit tile "
            f"field of the sort keys; render fewer cameras at once or a smaller image"
        )
    if num_cameras * num_faces >= _INT31:
        raise ValueError(
            f"cameras x faces = {num_cameras} x {num_faces} must be < 2^31; render fewer cameras "
            "at once"
        )
    return tiles_x, tiles_y


@dataclass
class _Bins:
    """Sorted tile keys of one batch of cameras (what the tile kernels walk)."""

    points: Tensor  # float32 [B, N, 3] camera-space vertices
    faces: Tensor  # int32 [M, 3]
    face_shell: Tensor  # int32 [M]
    intrinsics: Tensor  # float32 [B, 3, 3]
    ranges: Tensor  # int64 [B * T + 1]
    values: Tensor  # int32 [K] face id of each sorted key
    tiles: int  # T
    image_size: tuple[int, int]
    num_shells: int
    near: float
    cull_backfaces: bool

    def tile_args(self) -> dict:
        h, w = self.image_size
        return dict(
            points=self.points,
            faces=self.faces,
            face_shell=self.face_shell,
            intrinsics=self.intrinsics,
            ranges=self.ranges,
            values=self.values,
            num_shells=self.num_shells,
            H=h,
            W=w,
            near=self.near,
            cull_backfaces=self.cull_backfaces,
        )

    def grid(self, batch: int) -> tuple[int, int, int]:
        return (self.tiles, batch, 1)


def bin_faces(cameras: Cameras, mesh: ShellMesh, near: float, cull_backfaces: bool) -> _Bins:
    """Steps 1-3 of the module docstring."""
    bsz = cameras.batch_size
    h, w = cameras.image_size
    m = mesh.faces.shape[0]
    tiles_x, tiles_y = key_layout(bsz, (h, w), m)
    tiles = tiles_x * tiles_y
    device = mesh.device
    points = reference.camera_points(cameras, mesh.positions).contiguous()
    faces = mesh.faces.contiguous()
    intrinsics = cameras.intrinsics.contiguous()
    common = dict(
        points=points,
        faces=faces,
        intrinsics=intrinsics,
        num_faces=m,
        num_cameras=bsz,
        H=h,
        W=w,
        near=near,
        cull_backfaces=cull_backfaces,
    )
    counts = torch.empty(bsz * m, dtype=torch.int32, device=device)
    _MODULE.launch("bin_count", _blocks(bsz * m), (_THREADS, 1, 1), counts=counts, **common)
    ends = torch.cumsum(counts, 0, dtype=torch.int64)
    total = int(ends[-1]) if ends.numel() else 0  # the one host sync of a render
    if total * 8 >= _VIEW_BYTES:
        raise TooManyOverlaps(
            f"{total} (camera, face, tile) overlaps: their int64 keys exceed the 4 GiB a Slang "
            "tensor view addresses; render fewer cameras at once or at a lower resolution"
        )
    keys = torch.empty(total, dtype=torch.int64, device=device)
    values = torch.empty(total, dtype=torch.int32, device=device)
    if total:
        _MODULE.launch(
            "bin_write",
            _blocks(bsz * m),
            (_THREADS, 1, 1),
            starts=ends - counts,
            keys=keys,
            values=values,
            **common,
        )
        keys, order = torch.sort(keys)
        values = values[order]
        del order
    boundaries = torch.arange(bsz * tiles + 1, dtype=torch.int64, device=device)
    ranges = torch.searchsorted(keys >> 32, boundaries)
    return _Bins(
        points,
        faces,
        mesh.face_shells().int(),
        intrinsics,
        ranges,
        values,
        tiles,
        (h, w),
        mesh.num_shells,
        near,
        cull_backfaces,
    )


def rasterize(cameras: Cameras, mesh: ShellMesh, near: float, cull_backfaces: bool) -> Fragments:
    """Slang version of :func:`reference.rasterize`."""
    bsz = cameras.batch_size
    h, w = cameras.image_size
    s = mesh.num_shells
    device = mesh.device
    face_index = torch.full((bsz, s, h, w), -1, dtype=torch.int32, device=device)
    bary = torch.zeros((bsz, s, h, w, 2), device=device)
    if mesh.faces.shape[0] == 0 or s == 0:
        return Fragments(face_index, bary)
    if s > _MAX_SHELLS:  # the walk keeps 16 slots per pixel: rasterize 16 shells at a time
        off = mesh.face_offsets
        for first in range(0, s, _MAX_SHELLS):
            last = min(first + _MAX_SHELLS, s)
            lo, hi = int(off[first]), int(off[last])
            part = ShellMesh(mesh.positions, mesh.faces[lo:hi], off[first : last + 1] - lo)
            frags = rasterize(cameras, part, near, cull_backfaces)
            hit = frags.face_index >= 0
            face_index[:, first:last] = torch.where(hit, frags.face_index + lo, -1)
            bary[:, first:last] = frags.bary
        return Fragments(face_index, bary)
    bins = bin_faces(cameras, mesh, near, cull_backfaces)
    _MODULE.launch(
        "raster_fwd",
        bins.grid(bsz),
        (TILE * TILE, 1, 1),
        face_index=face_index,
        bary=bary,
        **bins.tile_args(),
    )
    return Fragments(face_index, bary)


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attributes, faces, face_index, bary):
        bsz, s, h, w = face_index.shape
        attrs = attributes if attributes.dim() == 3 else attributes[None]
        attrs = attrs.contiguous()
        c = attrs.shape[2]
        out = torch.empty((bsz, s, h, w, c), device=attrs.device)
        dims = dict(B=bsz, S=s, H=h, W=w, C=c)
        _MODULE.launch(
            "interpolate_fwd",
            _blocks(bsz * s * h * w),
            (_THREADS, 1, 1),
            attributes=attrs,
            faces=faces,
            face_index=face_index,
            bary=bary,
            output=out,
            **dims,
        )
        ctx.save_for_backward(faces, face_index, bary)
        ctx.attr_shape = attributes.shape
        ctx.dims = dims
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        faces, face_index, bary = ctx.saved_tensors
        shape = ctx.attr_shape
        grad = torch.zeros(shape if len(shape) == 3 else (1, *shape), device=grad_out.device)
        d = ctx.dims
        _MODULE.launch(
            "interpolate_bwd",
            _blocks(d["B"] * d["S"] * d["H"] * d["W"]),
            (_THREADS, 1, 1),
            faces=faces,
            face_index=face_index,
            bary=bary,
            grad_output=grad_out.contiguous(),
            grad_attributes=grad,
            **d,
        )
        return grad.view(shape), None, None, None


def interpolate(attributes: Tensor, faces: Tensor, fragments: Fragments) -> Tensor:
    """Slang version of :func:`reference.interpolate` (attributes float32 [N, C] or [B, N, C])."""
    if faces.shape[0] == 0:
        return reference.interpolate(attributes, faces, fragments)
    return _Interpolate.apply(
        attributes,
        faces.contiguous(),
        fragments.face_index.contiguous(),
        fragments.bary.float().contiguous(),
    )


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sdf, colors, hit, sharpness, alpha_max):
        bsz, s, h, w = sdf.shape
        out_c = torch.empty((bsz, 3, h, w), device=sdf.device)
        out_t = torch.empty((bsz, 1, h, w), device=sdf.device)
        args = dict(sdf=sdf, colors=colors, hit=hit, B=bsz, S=s, H=h, W=w)
        scalars = dict(sharpness=sharpness, alpha_max=alpha_max)
        _MODULE.launch(
            "composite_fwd",
            _blocks(bsz * h * w),
            (_THREADS, 1, 1),
            out_color=out_c,
            out_trans=out_t,
            **args,
            **scalars,
        )
        ctx.save_for_backward(sdf, colors, hit)
        ctx.scalars = scalars
        return out_c, out_t

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c, grad_t):
        sdf, colors, hit = ctx.saved_tensors
        bsz, s, h, w = sdf.shape
        grad_sdf = torch.empty_like(sdf)
        grad_colors = torch.empty_like(colors)
        _MODULE.launch(
            "composite_bwd",
            _blocks(bsz * h * w),
            (_THREADS, 1, 1),
            sdf=sdf,
            colors=colors,
            hit=hit,
            grad_color=grad_c.contiguous(),
            grad_trans=grad_t.contiguous(),
            scratch=torch.empty_like(sdf),
            grad_sdf=grad_sdf,
            grad_colors=grad_colors,
            B=bsz,
            S=s,
            H=h,
            W=w,
            **ctx.scalars,
        )
        return grad_sdf, grad_colors, None, None, None


def composite(
    sdf: Tensor, colors: Tensor, hit: Tensor, sharpness: float, alpha_max: float
) -> tuple[Tensor, Tensor]:
    """Slang version of :func:`reference.composite` on [B, S, H, W] inputs.

    Returns (C [B, 3, H, W], T [B, 1, H, W]) without the background.
    """
    return _Composite.apply(
        sdf.contiguous(),
        colors.contiguous(),
        hit.contiguous().view(torch.uint8),
        sharpness,
        alpha_max,
    )


class _EvalSH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sh, positions, centers):
        n, k, _ = sh.shape
        bsz = centers.shape[0]
        colors = torch.empty((bsz, n, 3), device=sh.device)
        _MODULE.launch(
            "sh_fwd",
            _blocks(bsz * n),
            (_THREADS, 1, 1),
            sh=sh,
            positions=positions,
            centers=centers,
            colors=colors,
            B=bsz,
            N=n,
            K=k,
        )
        ctx.save_for_backward(sh, positions, centers)
        return colors

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_colors):
        sh, positions, centers = ctx.saved_tensors
        n, k, _ = sh.shape
        grad_sh = torch.empty_like(sh)
        _MODULE.launch(
            "sh_bwd",
            _blocks(n),
            (_THREADS, 1, 1),
            sh=sh,
            positions=positions,
            centers=centers,
            grad_colors=grad_colors.contiguous(),
            grad_sh=grad_sh,
            B=centers.shape[0],
            N=n,
            K=k,
        )
        return grad_sh, None, None


def eval_sh(sh: Tensor, positions: Tensor, centers: Tensor) -> Tensor:
    """Slang version of :func:`reference.eval_sh` (float32). Vertices are taken in slices
    whose ``sh [n, K, 3]`` and colours ``[B, n, 3]`` stay below a tensor view's 4 GiB."""
    n, k, _ = sh.shape
    step = max(1, (_VIEW_BYTES - 1) // (12 * max(k, centers.shape[0])))
    sh, positions, centers = sh.contiguous(), positions.contiguous(), centers.contiguous()
    if n <= step:
        return _EvalSH.apply(sh, positions, centers)
    parts = [
        _EvalSH.apply(sh[a : a + step], positions[a : a + step], centers) for a in range(0, n, step)
    ]
    return torch.cat(parts, dim=1)


class _FusedRender(torch.autograd.Function):
    """Fused mode: C and T per pixel from one tile pass; the backward walks the tiles again."""

    @staticmethod
    def forward(ctx, sdf, colors, bins: _Bins, sharpness, alpha_max):
        bsz = colors.shape[0]
        h, w = bins.image_size
        out_c = torch.empty((bsz, 3, h, w), device=sdf.device)
        out_t = torch.empty((bsz, 1, h, w), device=sdf.device)
        _MODULE.launch(
            "fused_fwd",
            bins.grid(bsz),
            (TILE * TILE, 1, 1),
            sdf=sdf,
            colors=colors,
            out_color=out_c,
            out_trans=out_t,
            sharpness=sharpness,
            alpha_max=alpha_max,
            **bins.tile_args(),
        )
        ctx.save_for_backward(sdf, colors)
        ctx.bins = bins
        ctx.scalars = (sharpness, alpha_max)
        return out_c, out_t

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c, grad_t):
        sdf, colors = ctx.saved_tensors
        bins = ctx.bins
        grad_sdf = torch.zeros_like(sdf)
        grad_colors = torch.zeros_like(colors)
        sharpness, alpha_max = ctx.scalars
        # shaped like the explicit composite's backward launch (other kernel, other inputs)
        _MODULE.launch(
            "fused_bwd",
            bins.grid(colors.shape[0]),
            (TILE * TILE, 1, 1),
            sdf=sdf,
            colors=colors,
            grad_color=grad_c.contiguous(),
            grad_trans=grad_t.contiguous(),
            grad_sdf=grad_sdf,
            grad_colors=grad_colors,
            sharpness=sharpness,
            alpha_max=alpha_max,
            **bins.tile_args(),
        )
        return grad_sdf, grad_colors, None, None, None


def bytes_per_camera(
    num_vertices: int, num_faces: int, num_shells: int, image_size, mode: str
) -> int:
    """The largest per-camera share of a tensor a render kernel sees: camera-space vertices
    and colours ``[B, N, 3]``, the int64 key offsets ``[B * M]``, the outputs ``[B, 4, H, W]``
    and the explicit mode's per-shell pixel buffers ``[B, S, H, W, 3]`` (float32 bytes)."""
    h, w = image_size
    largest = max(12 * num_vertices, 8 * num_faces, 16 * h * w)
    return max(largest, 12 * num_shells * h * w) if mode == "explicit" else largest


# The public `api.render`'s signature: every backend takes the same arguments, by design.
def render(
    cameras: Cameras,
    mesh: ShellMesh,
    sdf: Tensor,
    sh: Tensor,
    sharpness: float,
    background: Tensor,
    mode: str,
    ssaa: int,
    near: float,
    alpha_max: float,
    cull_backfaces: bool,
) -> tuple[Tensor, Tensor]:
    """Slang version of :func:`reference.render`.

    Large batches are rendered in slices of cameras (``bytes_per_camera``, then halved while
    the sort keys overflow), each its own autograd node; the result is the same.
    """
    if mesh.faces.shape[0] == 0 or mesh.num_shells == 0:
        return reference.render(
            cameras, mesh, sdf, sh, sharpness, background, mode, ssaa, near, alpha_max,
            cull_backfaces,
        )  # fmt: skip
    hi = cameras.scaled(ssaa)
    per_camera = bytes_per_camera(
        mesh.positions.shape[0], mesh.faces.shape[0], mesh.num_shells, hi.image_size, mode
    )
    step = max(1, (_VIEW_BYTES - 1) // per_camera)  # every tensor view stays below 4 GiB
    parts, start, bsz = [], 0, hi.batch_size
    while start < bsz:
        part = hi if start == 0 and step >= bsz else hi.slice(start, start + step)
        try:
            parts.append(_render_slice(part, mesh, sdf, sh, sharpness, mode, near, alpha_max,
                                       cull_backfaces))  # fmt: skip
        except TooManyOverlaps:
            if part.batch_size == 1:
                raise
            step = max(1, part.batch_size // 2)
            continue
        start += part.batch_size
    c = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts])
    t = parts[0][1] if len(parts) == 1 else torch.cat([p[1] for p in parts])
    return reference.finish(c, t, background, ssaa)


def _render_slice(
    hi: Cameras, mesh: ShellMesh, sdf, sh, sharpness, mode, near, alpha_max, cull_backfaces
) -> tuple[Tensor, Tensor]:
    """C [B, 3, mH, mW] and T [B, 1, mH, mW] of cameras `hi` (already at the SSAA size)."""
    colors = eval_sh(sh, mesh.positions, hi.centers())  # [B, N, 3]
    if mode == "explicit":
        frags = rasterize(hi, mesh, near, cull_backfaces)
        sdf_px = interpolate(sdf[:, None], mesh.faces, frags)[..., 0]
        col_px = interpolate(colors, mesh.faces, frags)
        return composite(sdf_px, col_px, frags.hit, sharpness, alpha_max)
    bins = bin_faces(hi, mesh, near, cull_backfaces)
    return _FusedRender.apply(sdf.contiguous(), colors, bins, sharpness, alpha_max)
