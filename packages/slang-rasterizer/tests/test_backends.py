"""What every backend must do, run once per backend (the ``backend`` fixture: reference on the
CPU, reference on CUDA, Slang): equal the reference on the same device, op by op and for whole
renders (values and gradients with random cotangents), and render empty meshes, opaque surfaces
and a camera inside a shell.

The reference is compared with itself on its own device (a check of the test); the Slang
backend is compared with the reference on CUDA, since camera-space vertices come from a matmul
whose rounding differs between CPU and CUDA, which moves hits on pixel centres that lie on an
edge. Larger scenes: test_slang.py.
"""

from __future__ import annotations

import pytest
import torch
from raster_helpers import report, scene

import slang_rasterizer as sr
from slang_rasterizer.shapes import icosphere, orbit_cameras, shell_mesh


def on(device, *tensors):
    return [t.to(device) for t in tensors]


def moved(device, cameras: sr.Cameras, mesh: sr.ShellMesh) -> tuple[sr.Cameras, sr.ShellMesh]:
    w2c, k = on(device, cameras.world_to_camera, cameras.intrinsics)
    return sr.Cameras(w2c, k, cameras.image_size), sr.ShellMesh(
        *on(device, mesh.positions, mesh.faces, mesh.face_offsets)
    )


def weights(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def reference_and(backend):
    """The two ways to run each comparison: (backend name, device) of the reference and the one
    under test, both on the backend's device."""
    return [("reference", backend.device), (backend.name, backend.device)]


@pytest.mark.parametrize("n_sh", [1, 4, 9, 16])
def test_eval_sh_equals_the_reference(backend, n_sh):
    g = torch.Generator().manual_seed(n_sh)
    sh = torch.rand(5000, n_sh, 3, generator=g) - 0.5
    positions, centers = torch.randn(5000, 3, generator=g), 3 * torch.randn(4, 3, generator=g)
    out = []
    for name, device in reference_and(backend):
        leaf = sh.to(device).requires_grad_()
        colors = sr.eval_sh(leaf, *on(device, positions, centers), backend=name)
        (grad,) = torch.autograd.grad((colors * weights(colors.shape, 1).to(device)).sum(), leaf)
        out.append((colors, grad))
    report(out[1][0], out[0][0], "sh colors", atol=1e-5)
    report(out[1][1], out[0][1], "sh grad", atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("alpha_max", [0.99, 1.0])
def test_composite_equals_the_reference(backend, alpha_max):
    g = torch.Generator().manual_seed(0)
    b, s, h, w = 2, 5, 40, 50
    sdf = (torch.rand(b, s, h, w, generator=g) - 0.5) * 0.04
    sdf[:, 0, :5] = -1.0  # opaque first hits
    colors = torch.rand(b, s, h, w, 3, generator=g)
    hit = torch.rand(b, s, h, w, generator=g) < 0.7
    bg = torch.rand(b, 3, h, w, generator=g)
    out = []
    for name, device in reference_and(backend):
        leaves = [t.to(device).requires_grad_() for t in (sdf, colors, bg)]
        image, alpha = sr.composite(
            leaves[0], leaves[1], hit.to(device), 150.0, leaves[2], alpha_max, name
        )
        loss = (image * weights(image.shape, 2).to(device)).sum()
        loss = loss + (alpha * weights(alpha.shape, 3).to(device)).sum()
        out.append([image, alpha, *torch.autograd.grad(loss, leaves)])
    for i, what in enumerate(["image", "alpha", "grad sdf", "grad colors", "grad bg"]):
        report(out[1][i], out[0][i], f"composite {what}", atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(200,), (200, 3), (2, 200, 3)])
def test_interpolate_equals_the_reference(backend, shape):
    g = torch.Generator().manual_seed(len(shape))
    b, s, h, w, m, n = 2, 5, 40, 50, 300, 200
    faces = torch.randint(0, n, (m, 3), generator=g, dtype=torch.int32)
    face_index = torch.randint(-1, m, (b, s, h, w), generator=g, dtype=torch.int32)
    lam = torch.rand(b, s, h, w, 3, generator=g)
    bary = (lam / lam.sum(-1, keepdim=True))[..., 1:]
    attributes = torch.rand(shape, generator=g)
    out = []
    for name, device in reference_and(backend):
        leaf = attributes.to(device).requires_grad_()
        frags = sr.Fragments(*on(device, face_index, bary))
        values = sr.interpolate(leaf, faces.to(device), frags, backend=name)
        (grad,) = torch.autograd.grad((values * weights(values.shape, 4).to(device)).sum(), leaf)
        out.append((values, grad))
    report(out[1][0], out[0][0], f"interpolate {shape}", atol=1e-5)
    report(out[1][1], out[0][1], f"interpolate grad {shape}", atol=1e-4, rtol=1e-4)


def test_rasterize_equals_the_reference_on_exact_cases(backend):
    # The tessellated plane with vertices on pixel centres (exact arithmetic): identical hits.
    n = 20
    j, i = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    p = torch.stack([i.flatten() + 2.5, j.flatten() + 2.5, torch.ones((n + 1) ** 2)], 1)
    faces = []
    for r in range(n):
        for c in range(n):
            a, b = r * (n + 1) + c, r * (n + 1) + c + 1
            faces += [[a, b + n + 1, b], [a, a + n + 1, b + n + 1]]
    device = backend.device
    mesh = sr.ShellMesh(
        p.to(device),
        torch.tensor(faces, dtype=torch.int32, device=device),
        torch.tensor([0, len(faces)], device=device),
    )
    k = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]], device=device)
    cams = sr.Cameras(torch.eye(4, device=device)[None], k, (30, 30))
    want = sr.rasterize(cams, mesh, cull_backfaces=False, backend="reference")
    got = sr.rasterize(cams, mesh, cull_backfaces=False, backend=backend.name)
    assert want.hit.sum() == n * n  # every pixel centre of the plane, exactly once
    assert torch.equal(got.face_index, want.face_index)
    assert torch.allclose(got.bary, want.bary, atol=1e-6)


@pytest.mark.parametrize("ssaa", [1, 2])
@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_render_equals_the_reference(backend, mode, ssaa):
    cams, mesh, sdf, sh = scene()
    bg = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(4))
    out = []
    for name, device in reference_and(backend):
        leaves = [t.to(device).requires_grad_() for t in (sdf, sh, bg)]
        image, alpha = sr.render(
            *moved(device, cams, mesh), *leaves[:2], 250.0, leaves[2], mode, ssaa, backend=name
        )
        loss = (image * weights(image.shape, 5).to(device)).sum()
        loss = loss + (alpha * weights(alpha.shape, 6).to(device)).sum()
        out.append([image, alpha, *torch.autograd.grad(loss, leaves)])
    # as in test_slang.py: a few values may differ where a pixel centre is within rounding of an
    # edge (at most 4 of the 4608 image values here, 10 times as many gradient entries)
    label = f"{mode} ssaa={ssaa}"
    report(out[1][0], out[0][0], f"{label} image", atol=1e-4, max_bad_fraction=1e-3)
    report(out[1][1], out[0][1], f"{label} alpha", atol=1e-4, max_bad_fraction=1e-3)
    for got, want, what in zip(out[1][2:], out[0][2:], ["sdf", "sh", "background"], strict=True):
        assert want.abs().max() > 0, what
        scale = want.abs().max().item()
        rel = report(got, want, f"{label} grad {what}", atol=1e-3 * scale, max_bad_fraction=1e-2)
        assert rel < 1e-3, f"grad {what}: relative L2 error {rel}"


def test_empty_mesh_renders_the_background(backend):
    device = backend.device
    cams = orbit_cameras(2, 3.0, (6, 7), device=device)
    bg = torch.rand(2, 3, 6, 7, device=device, requires_grad=True)
    for shells in (0, 2):
        mesh = sr.ShellMesh(
            torch.zeros(0, 3, device=device),
            torch.zeros(0, 3, dtype=torch.int32, device=device),
            torch.zeros(shells + 1, dtype=torch.int64, device=device),
        )
        for mode in ("fused", "explicit"):
            sdf, sh = torch.zeros(0, device=device), torch.zeros(0, 4, 3, device=device)
            image, alpha = sr.render(cams, mesh, sdf, sh, 100.0, bg, mode, backend=backend.name)
            assert torch.equal(image, bg) and (alpha == 0).all()
            image.sum().backward()
            assert (bg.grad == 1).all()
            bg.grad = None
            frags = sr.rasterize(cams, mesh, backend=backend.name)
            assert frags.face_index.shape == (2, shells, 6, 7) and not frags.hit.any()


@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_surface_mode_is_an_opaque_mesh_render(backend, mode):
    p, f = icosphere(2, 1.0)
    mesh = shell_mesh([(p, f)], device=backend.device)
    cams = orbit_cameras(1, 3.0, (20, 20), device=backend.device)
    sdf = torch.full((p.shape[0],), -1e8, device=backend.device, requires_grad=True)
    sh = torch.zeros(p.shape[0], 1, 3, device=backend.device)
    sh[:, 0] = torch.tensor([0.3, 0.0, -0.3]) / 0.28209479177387814  # color (0.8, 0.5, 0.2)
    sh.requires_grad_()
    bg = torch.ones(3, device=backend.device)
    image, alpha = sr.render(
        cams, mesh, sdf, sh, 400.0, bg, mode, alpha_max=1.0, backend=backend.name
    )
    covered = alpha[0, 0] == 1
    assert 50 < covered.sum() < 400
    assert ((alpha[0, 0] == 0) | covered).all()
    expected = torch.tensor([0.8, 0.5, 0.2], device=backend.device)[:, None]
    assert torch.allclose(image[0][:, covered], expected, atol=1e-6)
    assert (image[0][:, ~covered] == 1).all()
    image.sum().backward()
    assert torch.isfinite(sdf.grad).all() and torch.isfinite(sh.grad).all()


def test_nan_free_with_camera_inside_a_shell(backend):
    cams, mesh, sdf, sh = scene(batch=1)
    inside = sr.Cameras(torch.eye(4)[None], cams.intrinsics, cams.image_size)
    inside, mesh = moved(backend.device, inside, mesh)  # camera at the origin, inside every sphere
    sdf, sh, bg = on(backend.device, sdf, sh, torch.zeros(3))
    image, _ = sr.render(inside, mesh, sdf, sh, 250.0, bg, backend=backend.name)
    assert torch.isfinite(image).all()
    # Back-face culling: from inside, the spheres around the camera face away and are not hit.
    frags = sr.rasterize(inside, mesh, backend=backend.name)
    assert not frags.hit[:, 0].any() and not frags.hit[:, 2].any() and frags.hit[:, 1].any()
    frags = sr.rasterize(inside, mesh, cull_backfaces=False, backend=backend.name)
    assert frags.hit[:, 0].all() and frags.hit[:, 2].all()
