"""What every backend must do, run once per backend (the ``backend`` fixture: reference on the
CPU, reference on CUDA, Slang): equal the reference on the CPU (the specification), build the same
grids, handle empty input and any strides, and mesh a sphere closed and accurately."""

from __future__ import annotations

import math

import pytest
import torch
from mc_helpers import (
    assert_closed_oriented_manifold,
    band_grid,
    euler_characteristic,
    mesh_stats,
    random_sparse_grid,
    smooth_random_field,
    sphere_sdf,
)

from slang_marching_cubes import SparseGrid, extract_shells


def assert_close(name, got, want, atol):
    """|got - want| <= atol, reporting the worst row."""
    diff = (got.detach().cpu().double() - want.detach().cpu().double()).abs()
    if diff.numel():
        worst = int(diff.reshape(diff.shape[0], -1).amax(-1).argmax())
        assert float(diff.max()) <= atol, (
            f"{name}: max |diff| {float(diff.max()):.3g} at row {worst}"
        )


def backend_args(backend) -> tuple[str, str]:
    return backend.name, backend.device


def shells_and_gradients(grid, sdf, attributes, levels, backend, device):
    """Extraction on ``device`` with ``backend``, and the gradients of random cotangents."""
    grid = grid.to(device)
    sdf = sdf.to(device).requires_grad_()
    attributes = attributes.to(device).requires_grad_()
    shells = extract_shells(grid, sdf, attributes, levels, backend=backend)
    gen = torch.Generator().manual_seed(7)
    w_sdf = torch.randn(shells.sdf.shape, generator=gen).to(device)
    w_attributes = torch.randn(shells.attributes.shape, generator=gen).to(device)
    loss = (shells.sdf * w_sdf).sum() + (shells.attributes * w_attributes).sum()
    return shells, torch.autograd.grad(loss, (sdf, attributes))


@pytest.mark.parametrize("shape,fraction,seed", [((11, 12, 13), 0.6, 5), ((17, 23, 9), 0.5, 0)])
def test_equals_the_reference_on_the_cpu(backend, shape, fraction, seed):
    grid = random_sparse_grid(shape, fraction, seed)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64), seed, torch.float32)
    attributes = torch.randn(grid.num_vertices, 4, generator=torch.Generator().manual_seed(seed))
    levels = [0.02, 0.0, -0.03]
    want, want_grads = shells_and_gradients(grid, sdf, attributes, levels, "reference", "cpu")
    got, got_grads = shells_and_gradients(grid, sdf, attributes, levels, *backend_args(backend))
    assert want.faces.shape[0] > 0
    for name in ("faces", "edges", "face_voxels", "vertex_offsets", "face_offsets"):
        assert torch.equal(getattr(got, name).cpu(), getattr(want, name)), name  # same order
    for name in ("positions", "t", "sdf", "attributes"):
        assert_close(name, getattr(got, name), getattr(want, name), 1e-5)
    assert_close("grad sdf", got_grads[0], want_grads[0], 1e-5)
    assert_close("grad attributes", got_grads[1], want_grads[1], 1e-5)


@pytest.mark.parametrize("which", ["sdf", "attributes", "sdf without attributes"])
def test_gradient_of_one_output(backend, which):
    """The gradient of sdf or attributes alone (the other not requiring grad, unused, or absent)
    equals the reference's on the CPU: the Slang backend interpolates both in one launch."""
    grid = random_sparse_grid((24, 20, 28), 0.8, 8)
    base = smooth_random_field(grid.vertex_positions(torch.float64), 8, torch.float32)
    attributes = torch.randn(grid.num_vertices, 5, generator=torch.Generator().manual_seed(8))
    grads = {}
    for name, device in (("reference", "cpu"), backend_args(backend)):
        sdf = base.to(device).requires_grad_(which != "attributes")
        attrs = None
        if which != "sdf without attributes":
            attrs = attributes.to(device).requires_grad_(which == "attributes")
        shells = extract_shells(grid.to(device), sdf, attrs, [0.02, 0.0, -0.03], backend=name)
        out, wrt = (shells.attributes, attrs) if which == "attributes" else (shells.sdf, sdf)
        weights = torch.linspace(-1.0, 1.0, out.numel(), device=device).reshape(out.shape)
        grads[name, device] = torch.autograd.grad((out * weights).sum(), wrt)[0]
    want = grads["reference", "cpu"]
    assert want.abs().sum() > 0
    assert_close("grad", grads[backend_args(backend)], want, 1e-5)


@pytest.mark.parametrize(
    "shape,fraction", [((5, 7, 3), 0.3), ((1, 1, 1), 1.0), ((33, 20, 41), 0.2)]
)
def test_grid_vertices_equal_the_reference(backend, shape, fraction):
    occ = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < fraction
    want = SparseGrid.from_dense(occ, backend="reference")
    got = SparseGrid.from_dense(occ.to(backend.device), backend=backend.name)
    assert got.backend == backend.name and got.device.type == backend.device
    assert torch.equal(got.vertices.cpu(), want.vertices)
    assert torch.equal(got.vertex_rows.cpu(), want.vertex_rows)


def test_empty_grid_and_no_crossing(backend):
    device = backend.device
    empty = SparseGrid((4, 4, 4), torch.zeros(0, dtype=torch.long, device=device))
    for grid, value in ((empty, 0.0), (SparseGrid.full((5, 6, 7), device=device), 1.0)):
        sdf = torch.full((grid.num_vertices,), value, device=device)  # 1.0: everything outside
        attrs = torch.zeros(grid.num_vertices, 5, device=device, requires_grad=True)
        shells = extract_shells(grid, sdf, attrs, [0.5, 0.0], backend=backend.name)
        assert shells.positions.shape == (0, 3) and shells.positions.dtype == torch.float32
        assert shells.faces.shape == (0, 3) and shells.faces.dtype == torch.int32
        assert shells.sdf.shape == (0,) and shells.attributes.shape == (0, 5)
        assert shells.vertex_offsets.tolist() == [0, 0, 0] == shells.face_offsets.tolist()
        shells.attributes.sum().backward()  # still part of the graph
        assert attrs.grad is not None and attrs.grad.abs().sum() == 0


def test_non_contiguous_inputs(backend):
    grid = random_sparse_grid((20, 20, 20), 0.7, seed=6).to(backend.device)
    sdf = smooth_random_field(grid.vertex_positions(torch.float64).cpu(), 6, torch.float32)
    wide = torch.stack((sdf, -sdf), dim=1).to(backend.device)  # column 0 is a strided view
    attrs = torch.randn(6, grid.num_vertices, device=backend.device).T  # transposed [V, 6]
    contiguous = (wide[:, 0].contiguous(), attrs.contiguous())
    want = extract_shells(grid, *contiguous, [0.0], backend=backend.name)
    got = extract_shells(grid, wide[:, 0], attrs, [0.0], backend=backend.name)
    assert want.faces.shape[0] > 0 and torch.equal(want.faces, got.faces)
    torch.testing.assert_close(want.attributes, got.attributes)


def test_sphere_is_closed_and_accurate(backend):
    n = 96
    grid = band_grid(n, lambda p: sphere_sdf(p, 0.3), 3.0 / n).to(backend.device)
    sdf = sphere_sdf(grid.vertex_positions(torch.float64).cpu(), 0.3).float().to(backend.device)
    shells = extract_shells(grid, sdf, None, [0.0], backend=backend.name)
    faces, positions = shells.faces.cpu(), shells.positions.cpu()
    assert_closed_oriented_manifold(faces, positions.shape[0])
    assert euler_characteristic(faces, positions.shape[0]) == 2
    area, volume = mesh_stats(positions, faces)
    assert abs(area / (4 * math.pi * 0.09) - 1) < 2e-3
    assert abs(volume / (4 / 3 * math.pi * 0.027) - 1) < 3e-3
