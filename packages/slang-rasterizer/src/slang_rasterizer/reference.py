"""Pure-PyTorch reference of the rasterizer: the specification the Slang kernels must match.

Runs on CPU and CUDA, vectorized per band of image rows (only the pixels of each face's
conservative rectangle are tested). The public functions of the same names in
``slang_rasterizer`` validate their inputs and dispatch here (``backend="reference"``); these
functions assume valid inputs.

The geometry (DESIGN §1, "Rendering"), decided here once for both backends:

* **Edge functions in camera space.** With camera-space vertices ``p0, p1, p2`` and the ray of
  a pixel centre ``r = ((u - cx) / fx, (v - cy) / fy, 1)``, the edge function of the edge
  opposite vertex i is ``E_i = r . (p_{i+1} x p_{i+2})``. These are exactly the unnormalized
  perspective-correct barycentrics, so ``l_i = E_i / (E_0 + E_1 + E_2)`` and the hit depth
  (camera z) is ``det / (E_0 + E_1 + E_2)`` with ``det = p0 . (p1 x p2)``. No vertex is ever
  divided by its depth for the hit test, so huge projected coordinates (z small but positive)
  cannot overflow. The projection ``fx x / z + cx`` is only used for the conservative tile range.
* **Culling.** A face is dropped for a camera when any vertex has camera z < near (this includes
  everything behind the camera: faces are culled, not clipped), when it is degenerate on screen
  (``det == 0``), and, with ``cull_backfaces``, when its outward normal points away from the
  camera centre (``det > 0``; front faces have ``det < 0``).
* **Ownership of shared edges (top-left rule).** The cross product of an edge is computed once
  per edge in a canonical order (smaller vertex index first) and negated for the face that walks
  the edge the other way, so two faces sharing an edge see exactly opposite edge values at every
  pixel. A pixel is inside when ``sign(det) * E_i > 0`` for all i; on an edge (``E_i == 0``) it
  belongs to the face whose inward screen normal ``m = sign(det) * (n_x, n_y)`` has ``m_y > 0``,
  or ``m_y == 0`` and ``m_x > 0``. Exactly one of two faces sharing an edge takes the pixel, and
  a pixel centre on a vertex shared by a closed fan belongs to exactly one face of the fan.
* **Nearest hit per shell.** Per (camera, shell, pixel) the face with the smallest hit depth
  wins; equal depths go to the smaller face index.
* **Compositing** (per pixel, over the shells that are hit, in shell-index order, outer to
  inner): ``Phi(s) = sigmoid(k s)``; the outer value is 1 for the first hit shell;
  ``alpha = clamp((Phi_o - Phi_i + eps) / (Phi_o + eps), 0, alpha_max)``, eps = 1e-5;
  ``C += T alpha color``; ``T *= 1 - alpha``; a missed shell changes neither T nor Phi_o.
  The caller adds ``T * background``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from .types import Cameras, Fragments, ShellMesh

__all__ = [
    "EPS",
    "camera_points",
    "setup_faces",
    "rasterize",
    "interpolate",
    "eval_sh",
    "sh_basis",
    "composite",
    "render",
]

EPS = 1e-5
"""The epsilon of the alpha formula (DESIGN §1)."""

_BAND = 1 << 18  # max pixels of one band of image rows rasterized at once
_PAIRS = 1 << 20  # about the most (face, pixel) pairs hit-tested at once
_KEEP_HITS = 1 << 22  # fused mode keeps at most this many (camera, shell, pixel) hits for backward

# --------------------------------------------------------------------------------------------
# Geometry


def camera_points(cameras: Cameras, positions: Tensor) -> Tensor:
    """Vertices in every camera's frame, float32 [B, N, 3]: ``A x + t`` for ``E = [A | t]``."""
    e = cameras.world_to_camera
    return torch.einsum("bij,nj->bni", e[:, :3, :3], positions) + e[:, None, :3, 3]


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """a x b over the last axis, written out (the Slang kernels use the same expression)."""
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def setup_faces(
    points: Tensor,
    faces: Tensor,
    intrinsics: Tensor,
    image_size: tuple[int, int],
    near: float,
    cull_backfaces: bool,
) -> dict[str, Tensor]:
    """Per-face setup for one camera.

    Args:
        points: float32 [N, 3] camera-space vertices of one camera.
        faces: int64 [M, 3].
        intrinsics: float32 [3, 3] of that camera.
        image_size: (H, W).
    Returns a dict of: ``normals`` float32 [M, 3, 3] (row i: the oriented cross product of the
    edge opposite vertex i), ``det`` float32 [M], ``valid`` bool [M] (not culled and overlapping
    the image), ``rect`` int64 [M, 4] (first and last pixel column, first and last pixel row whose
    centres the face may cover, clamped to the image).
    """
    h, w = image_size
    normals = []
    for i in range(3):
        ia, ib = faces[:, (i + 1) % 3], faces[:, (i + 2) % 3]
        lo, hi = torch.minimum(ia, ib), torch.maximum(ia, ib)
        n = _cross(points[lo], points[hi])
        normals.append(torch.where((ia < ib)[:, None], n, -n))
    normals = torch.stack(normals, dim=1)
    p = points[faces]  # [M, 3, 3]
    p0 = p[:, 0]
    det = p0[:, 0] * normals[:, 0, 0] + p0[:, 1] * normals[:, 0, 1] + p0[:, 2] * normals[:, 0, 2]
    z = p[..., 2]
    valid = (z >= near).all(dim=1) & (det != 0)
    if cull_backfaces:
        valid &= det < 0
    # Conservative pixel range from the projected vertices (z >= near > 0 where valid).
    zs = torch.where(valid[:, None], z, torch.ones_like(z))
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    u = fx * (p[..., 0] / zs) + cx
    v = fy * (p[..., 1] / zs) + cy
    rect = torch.stack(
        [
            _first_pixel(u.amin(1), w),
            _last_pixel(u.amax(1), w),
            _first_pixel(v.amin(1), h),
            _last_pixel(v.amax(1), h),
        ],
        dim=1,
    )
    valid &= (rect[:, 0] <= rect[:, 1]) & (rect[:, 2] <= rect[:, 3])
    return {"normals": normals, "det": det, "valid": valid, "rect": rect}


def _margin(x: Tensor) -> Tensor:
    # Slack for the rounding of the projection (a few ulps of |x|, plus a constant).
    return 1e-2 + 1e-5 * x.abs()


def _first_pixel(lo: Tensor, size: int) -> Tensor:
    """First pixel index whose centre (i + 0.5) may be >= lo, clamped to [0, size]."""
    x = (lo - 0.5 - _margin(lo)).clamp(-1.0, float(size))
    return torch.ceil(x).long().clamp(0, size)


def _last_pixel(hi: Tensor, size: int) -> Tensor:
    """Last pixel index whose centre may be <= hi, clamped to [-1, size - 1]."""
    x = (hi - 0.5 + _margin(hi)).clamp(-1.0, float(size))
    return torch.floor(x).long().clamp(-1, size - 1)


def _pixel_rays(intrinsics: Tensor, ys: Tensor, xs: Tensor) -> tuple[Tensor, Tensor]:
    """Ray (rx, ry, 1) through the centres of pixels (ys, xs): float32 [P] each."""
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    return (xs.float() + 0.5 - cx) / fx, (ys.float() + 0.5 - cy) / fy


def _edge_test(nx, ny, nz, det, rx, ry):
    """Inside test, depth and barycentrics from broadcastable edge normals and rays.

    nx, ny, nz: [..., 3] components of the three edge normals (edges on the last axis); det,
    rx, ry: [...] (broadcast against the leading axes). Returns (inside, depth (inf outside),
    l1, l2), each of the broadcast leading shape.
    """
    e = rx[..., None] * nx + ry[..., None] * ny + nz  # [..., 3]
    positive = det > 0
    pos3 = positive[..., None]
    mx, my = torch.where(pos3, nx, -nx), torch.where(pos3, ny, -ny)  # inward normal
    tie = (my > 0) | ((my == 0) & (mx > 0))
    strictly = torch.where(pos3, e > 0, e < 0)
    inside_edges = strictly | ((e == 0) & tie)
    e0, e1, e2 = e.unbind(-1)
    total = (e0 + e1) + e2
    inside = inside_edges.all(dim=-1) & torch.where(positive, total > 0, total < 0)
    safe = torch.where(inside, total, torch.ones_like(total))
    depth = torch.where(inside, det / safe, torch.full_like(total, math.inf))
    return inside, depth, e1 / safe, e2 / safe


def hit_test(
    normals: Tensor, det: Tensor, rx: Tensor, ry: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inside test, depth and barycentrics of F faces at P pixel rays.

    Args:
        normals: [F, 3, 3]; det: [F]; rx, ry: [P].
    Returns (inside bool [F, P], depth [F, P] (inf outside), l1 [F, P], l2 [F, P]).
    """
    n = normals[:, None]  # [F, 1, 3 edges, 3]
    return _edge_test(n[..., 0], n[..., 1], n[..., 2], det[:, None], rx[None], ry[None])


def _band_rows(width: int) -> int:
    """Image rows processed at once: at most ``_BAND`` pixels (at least one row)."""
    return max(1, _BAND // max(width, 1))


def _nearest_in_band(setup, shells, num_shells, k, y0, y1, width):
    """Nearest face per shell at every pixel of rows ``[y0, y1)`` (full width).

    Only the (face, pixel) pairs inside each face's conservative pixel rectangle are tested,
    in chunks of about ``_PAIRS`` pairs in increasing face order. Returns face int64
    [S, P] (-1 on a miss), l1 and l2 float32 [S, P], P = (y1 - y0) * width pixels.
    """
    device = setup["det"].device
    p = (y1 - y0) * width
    best_depth = torch.full((num_shells * p,), math.inf, device=device)
    best_face = torch.full((num_shells * p,), -1, dtype=torch.long, device=device)
    best_l1 = torch.zeros(num_shells * p, device=device)
    best_l2 = torch.zeros(num_shells * p, device=device)
    rect = setup["rect"]
    ids = torch.nonzero(setup["valid"] & (rect[:, 2] < y1) & (rect[:, 3] >= y0))[:, 0]
    if ids.numel() == 0:
        return best_face.view(num_shells, p), best_l1.view(num_shells, p), best_l2.view(-1, p)
    r = rect[ids]
    top, bottom = r[:, 2].clamp(min=y0), r[:, 3].clamp(max=y1 - 1)
    cols = r[:, 1] - r[:, 0] + 1
    counts = cols * (bottom - top + 1)
    ends = torch.cumsum(counts, 0)
    # Chunk boundaries: consecutive faces whose pairs add up to about _PAIRS.
    group = torch.div(ends - counts, _PAIRS, rounding_mode="floor")
    bounds = torch.nonzero(torch.diff(group, prepend=group[:1] - 1))[:, 0].tolist()
    bounds.append(ids.numel())
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        c = counts[lo:hi]
        q = int(c.sum())
        local = torch.repeat_interleave(torch.arange(hi - lo, device=device), c, output_size=q)
        offset = torch.arange(q, device=device) - (torch.cumsum(c, 0) - c)[local]
        row = local + lo
        xs = r[row, 0] + offset % cols[row]
        ys = top[row] + torch.div(offset, cols[row], rounding_mode="floor")
        face = ids[row]
        rx, ry = _pixel_rays(k, ys, xs)
        n = setup["normals"][face]  # [Q, 3, 3]
        inside, depth, l1, l2 = _edge_test(
            n[..., 0], n[..., 1], n[..., 2], setup["det"][face], rx, ry
        )
        key = shells[face] * p + (ys - y0) * width + xs
        chunk_depth = torch.full_like(best_depth, math.inf).scatter_reduce(0, key, depth, "amin")
        # Pairs are in increasing face order: the smallest pair index reaching the minimum
        # depth of its (shell, pixel) is the smallest face id.
        pair = torch.arange(q, device=device)
        is_min = inside & (depth == chunk_depth[key])
        chunk_pair = torch.full_like(best_face, q).scatter_reduce(
            0, key, torch.where(is_min, pair, q), "amin"
        )
        # Earlier chunks hold smaller face ids, so they keep ties.
        take = (chunk_pair < q) & (chunk_depth < best_depth)
        sel = chunk_pair.clamp(max=q - 1)
        best_depth = torch.where(take, chunk_depth, best_depth)
        best_face = torch.where(take, face[sel], best_face)
        best_l1 = torch.where(take, l1[sel], best_l1)
        best_l2 = torch.where(take, l2[sel], best_l2)
    shape = (num_shells, p)
    return best_face.view(shape), best_l1.view(shape), best_l2.view(shape)


def tile_hits(
    cameras: Cameras, mesh: ShellMesh, near: float, cull_backfaces: bool
) -> Iterator[tuple[int, int, int, int, int, Tensor, Tensor]]:
    """Yield the nearest hit per shell for every band of image rows of every camera.

    Yields ``(b, y0, y1, x0, x1, face, bary)`` with face int64 [S, h, w] (-1 on a miss) and bary
    float32 [S, h, w, 2] for pixels ``[y0:y1, x0:x1]`` of camera b (a band of whole rows:
    ``x0 = 0``, ``x1 = W``). Yields nothing for an empty mesh (every pixel misses).
    """
    if mesh.faces.shape[0] == 0 or mesh.num_shells == 0:
        return
    h, w = cameras.image_size
    s = mesh.num_shells
    faces = mesh.faces.long()
    shells = mesh.face_shells()
    points = camera_points(cameras, mesh.positions)
    rows = _band_rows(w)
    for b in range(cameras.batch_size):
        k = cameras.intrinsics[b]
        setup = setup_faces(points[b], faces, k, (h, w), near, cull_backfaces)
        for y0 in range(0, h, rows):
            y1 = min(y0 + rows, h)
            face, l1, l2 = _nearest_in_band(setup, shells, s, k, y0, y1, w)
            shape = (s, y1 - y0, w)
            bary = torch.stack([l1, l2], dim=-1).reshape(*shape, 2)
            yield b, y0, y1, 0, w, face.reshape(shape), bary


def rasterize(
    cameras: Cameras, mesh: ShellMesh, near: float, cull_backfaces: bool = True
) -> Fragments:
    """Reference of :func:`slang_rasterizer.rasterize` (explicit-mode hits)."""
    h, w = cameras.image_size
    shape = (cameras.batch_size, mesh.num_shells, h, w)
    face_index = torch.full(shape, -1, dtype=torch.int32, device=mesh.device)
    bary = torch.zeros((*shape, 2), device=mesh.device)
    for b, y0, y1, x0, x1, face, tile_bary in tile_hits(cameras, mesh, near, cull_backfaces):
        face_index[b, :, y0:y1, x0:x1] = face.int()
        bary[b, :, y0:y1, x0:x1] = tile_bary
    return Fragments(face_index, bary)


# --------------------------------------------------------------------------------------------
# Differentiable pieces


def _blend(values: Tensor, bary: Tensor) -> Tensor:
    """Barycentric blend: values [..., 3, C], bary [..., 2] -> [..., C]."""
    l1, l2 = bary[..., 0:1], bary[..., 1:2]
    l0 = 1 - l1 - l2
    return l0 * values[..., 0, :] + l1 * values[..., 1, :] + l2 * values[..., 2, :]


def interpolate(attributes: Tensor, faces: Tensor, fragments: Fragments) -> Tensor:
    """Reference of :func:`slang_rasterizer.interpolate`.

    attributes [N, C] (shared by all cameras) or [B, N, C]; returns [B, S, H, W, C], 0 on misses.
    """
    fi = fragments.face_index.long()
    hit = fi >= 0
    if faces.shape[0] == 0:  # nothing can be hit
        return attributes.new_zeros((*fi.shape, attributes.shape[-1]))
    vid = faces.long()[fi.clamp(min=0)]  # [B, S, H, W, 3]
    if attributes.dim() == 2:
        values = attributes[vid]
    else:
        batch = torch.arange(fi.shape[0], device=fi.device).view(-1, 1, 1, 1, 1)
        values = attributes[batch, vid]
    out = _blend(values, fragments.bary.to(attributes.dtype))
    return torch.where(hit[..., None], out, torch.zeros_like(out))


_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)  # fmt: skip
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)  # fmt: skip


def sh_basis(directions: Tensor, n_sh: int) -> Tensor:
    """Real SH basis (3DGS sign convention) of unit directions [..., 3] -> [..., n_sh]."""
    x, y, z = directions.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if n_sh > 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if n_sh > 4:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2[0] * x * y,
            _C2[1] * y * z,
            _C2[2] * (2 * zz - xx - yy),
            _C2[3] * x * z,
            _C2[4] * (xx - yy),
        ]
    if n_sh > 9:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(sh: Tensor, positions: Tensor, centers: Tensor) -> Tensor:
    """Reference of :func:`slang_rasterizer.eval_sh`: sh [N, n_sh, 3] -> colors [B, N, 3]."""
    d = positions[None].to(sh.dtype) - centers[:, None].to(sh.dtype)  # [B, N, 3]
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(d, sh.shape[1])  # [B, N, n_sh]
    return torch.clamp_min(torch.einsum("bnk,nkc->bnc", basis, sh) + 0.5, 0.0)


def composite(
    sdf: Tensor, colors: Tensor, hit: Tensor, sharpness: float, alpha_max: float
) -> tuple[Tensor, Tensor]:
    """Composite S shells front to back (module docstring), without the background.

    Args:
        sdf: [S, ...] interpolated signed distance per shell.
        colors: [S, ..., 3] interpolated color per shell.
        hit: bool [S, ...].
    Returns (C [..., 3], T [...]): the accumulated color and the final transmittance.
    """
    t = torch.ones(hit.shape[1:], dtype=sdf.dtype, device=sdf.device)
    c = torch.zeros((*t.shape, 3), dtype=t.dtype, device=t.device)
    phi_outer = torch.ones_like(t)
    for s in range(sdf.shape[0]):
        phi = torch.sigmoid(sharpness * sdf[s])
        alpha = ((phi_outer - phi + EPS) / (phi_outer + EPS)).clamp(0.0, alpha_max)
        alpha = torch.where(hit[s], alpha, torch.zeros_like(alpha))
        c = c + (t * alpha)[..., None] * colors[s]
        t = t * (1 - alpha)
        phi_outer = torch.where(hit[s], phi, phi_outer)
    return c, t


# --------------------------------------------------------------------------------------------
# Rendering


def _shade(sdf_values, color_values, bary, hit, sharpness, alpha_max):
    """Interpolate, then composite the hits of one tile.

    sdf_values [S, h, w, 3] and color_values [S, h, w, 3, 3]: the hit faces' vertex values.
    """
    sdf_px = _blend(sdf_values[..., None], bary)[..., 0]
    col_px = _blend(color_values, bary)
    sdf_px = torch.where(hit, sdf_px, torch.zeros_like(sdf_px))
    col_px = torch.where(hit[..., None], col_px, torch.zeros_like(col_px))
    return composite(sdf_px, col_px, hit, sharpness, alpha_max)


class _FusedRender(torch.autograd.Function):
    """Fused mode: walk bands of rows, composite per band, back-propagate per band.

    When the hits of all cameras fit in ``_KEEP_HITS`` (camera, shell, pixel) entries (16 bytes
    each), the forward keeps them for the backward. Otherwise the backward re-walks the bands
    (re-runs the hit test), so the memory beyond the mesh is O(B H W), as in the Slang kernels.
    Both give the same gradients.
    """

    @staticmethod
    def forward(ctx, sdf, colors, cameras, mesh, near, cull_backfaces, sharpness, alpha_max):
        h, w = cameras.image_size
        bsz = cameras.batch_size
        out_c = torch.zeros((bsz, 3, h, w), dtype=colors.dtype, device=colors.device)
        out_t = torch.ones((bsz, 1, h, w), dtype=colors.dtype, device=colors.device)
        faces = mesh.faces.long()
        keep = bsz * mesh.num_shells * h * w <= _KEEP_HITS
        kept = []
        for b, y0, y1, x0, x1, face, bary in tile_hits(cameras, mesh, near, cull_backfaces):
            if keep:
                kept.append((b, y0, y1, x0, x1, face, bary))
            hit = face >= 0
            vid = faces[face.clamp(min=0)]
            c, t = _shade(
                sdf[vid], colors[b][vid], bary.to(colors.dtype), hit, sharpness, alpha_max
            )
            out_c[b, :, y0:y1, x0:x1] = c.permute(2, 0, 1)
            out_t[b, 0, y0:y1, x0:x1] = t
        ctx.save_for_backward(sdf, colors)
        ctx.args = (cameras, mesh, near, cull_backfaces, sharpness, alpha_max)
        ctx.hits = kept if keep else None
        return out_c, out_t

    @staticmethod
    def backward(ctx, grad_c, grad_t):
        sdf, colors = ctx.saved_tensors
        cameras, mesh, near, cull_backfaces, sharpness, alpha_max = ctx.args
        grad_sdf = torch.zeros_like(sdf)
        grad_colors = torch.zeros_like(colors)
        faces = mesh.faces.long()
        hits = ctx.hits if ctx.hits is not None else tile_hits(cameras, mesh, near, cull_backfaces)
        for b, y0, y1, x0, x1, face, bary in hits:
            hit = face >= 0
            if not bool(hit.any()):
                continue
            vid = faces[face.clamp(min=0)]
            with torch.enable_grad():
                sdf_leaf = sdf.detach()[vid].requires_grad_()  # [S, h, w, 3]
                col_leaf = colors[b].detach()[vid].requires_grad_()  # [S, h, w, 3, 3]
                c, t = _shade(sdf_leaf, col_leaf, bary.to(colors.dtype), hit, sharpness, alpha_max)
                gs, gc = torch.autograd.grad(
                    (c, t),
                    (sdf_leaf, col_leaf),
                    (grad_c[b, :, y0:y1, x0:x1].permute(1, 2, 0), grad_t[b, 0, y0:y1, x0:x1]),
                    allow_unused=True,
                )
            flat = vid.reshape(-1)
            if gs is not None:
                grad_sdf.index_add_(0, flat, gs.reshape(-1))
            if gc is not None:
                grad_colors[b].index_add_(0, flat, gc.reshape(-1, 3))
        return grad_sdf, grad_colors, None, None, None, None, None, None


def box_filter(x: Tensor, factor: int) -> Tensor:
    """Mean over factor x factor pixel blocks: [B, C, fH, fW] -> [B, C, H, W]."""
    if factor == 1:
        return x
    return torch.nn.functional.avg_pool2d(x, factor)


# The public `api.render`'s signature: every backend takes the same arguments, by design.
def render(
    cameras: Cameras,
    mesh: ShellMesh,
    sdf: Tensor,
    sh: Tensor,
    sharpness: float,
    background: Tensor,
    mode: str = "fused",
    ssaa: int = 1,
    near: float = 0.01,
    alpha_max: float = 0.99,
    cull_backfaces: bool = True,
) -> tuple[Tensor, Tensor]:
    """Reference of :func:`slang_rasterizer.render`. Returns (image [B,3,H,W], alpha [B,1,H,W])."""
    hi = cameras.scaled(ssaa)
    colors = eval_sh(sh, mesh.positions, cameras.centers())  # [B, N, 3]
    if mode == "explicit":
        frags = rasterize(hi, mesh, near, cull_backfaces)
        sdf_px = interpolate(sdf[:, None], mesh.faces, frags)[..., 0]  # [B, S, H, W]
        col_px = interpolate(colors, mesh.faces, frags)  # [B, S, H, W, 3]
        c, t = composite(
            sdf_px.transpose(0, 1),
            col_px.transpose(0, 1),
            frags.hit.transpose(0, 1),
            sharpness,
            alpha_max,
        )
        c, t = c.permute(0, 3, 1, 2), t[:, None]
    else:
        c, t = _FusedRender.apply(sdf, colors, hi, mesh, near, cull_backfaces, sharpness, alpha_max)
    return finish(c, t, background, ssaa)


def finish(c: Tensor, t: Tensor, background: Tensor, ssaa: int) -> tuple[Tensor, Tensor]:
    """Box-filter C [B,3,mH,mW] and T [B,1,mH,mW], add T * background; returns (image, alpha)."""
    c, t = box_filter(c, ssaa), box_filter(t, ssaa)
    bg = background.view(1, 3, 1, 1) if background.dim() == 1 else background
    return c + t * bg.to(c.dtype), 1 - t
