"""Scenes and comparisons shared by the tests.

Imported as ``raster_helpers``: a unique name, since pytest may run every package in one process.
"""

from __future__ import annotations

import torch

from slang_rasterizer.shapes import icosphere, orbit_cameras, shell_mesh


def scene(subdivisions=2, size=(24, 32), batch=2, degree=1, seed=0, dtype=torch.float32):
    """Three shells: two nested spheres and an offset one, so some pixels miss a middle shell."""
    shells = [
        icosphere(subdivisions, 1.0),
        icosphere(subdivisions, 0.45, (0.0, 0.5, 0.2)),
        icosphere(subdivisions, 0.6, (0.0, -0.2, 0.0)),
    ]
    mesh = shell_mesh(shells)
    cams = orbit_cameras(batch, 3.5, size, fov_degrees=50.0)
    g = torch.Generator().manual_seed(seed)
    n = mesh.positions.shape[0]
    levels = torch.tensor([0.004, 0.0, -0.004])
    counts = [p.shape[0] for p, _ in shells]
    sdf = torch.repeat_interleave(levels, torch.tensor(counts))
    sdf = (sdf + 0.002 * torch.randn(n, generator=g)).to(dtype)
    sh = (0.3 * torch.randn(n, (degree + 1) ** 2, 3, generator=g)).to(dtype)
    return cams, mesh, sdf, sh


def report(a, b, name, atol, rtol=0.0, max_bad_fraction=0.0):
    """Assert |a - b| <= atol + rtol |b| except on at most max_bad_fraction of the elements;
    print the errors, return the relative L2 error."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    err = (a - b).abs()
    bad = err > atol + rtol * b.abs()
    fraction = bad.float().mean().item() if b.numel() else 0.0
    rel = (err.norm() / b.norm().clamp_min(1e-30)).item()
    print(
        f"{name}: max abs err {err.max().item() if b.numel() else 0.0:.3g}, rel L2 err {rel:.3g}, "
        f"bad fraction {fraction:.3g} ({int(bad.sum())} of {b.numel()})"
    )
    assert fraction <= max_bad_fraction, name
    return rel
