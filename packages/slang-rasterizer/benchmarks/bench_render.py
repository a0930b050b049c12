"""Benchmark: render forward, render forward + backward, and the whole step, both modes.

The workload of DESIGN.md §4: a dense N^3 grid holding a sphere of radius 0.3 (grid space
[0, 1]^3), 5 shells (CDF levels 0.9, 0.5, 0.1, 0.01, 0.001 at sharpness 400), SH degree 1, a
batch of 4 cameras at 800x800 on a circle around the sphere (distance 1.0, 50 degree field of
view, so the sphere spans about 70% of the image width), SSAA 1 and 3.

The shells come from ``slang_marching_cubes`` (extraction is part of the step, as in the
original's figures). Without that package the shells are nested icospheres with about the same
face counts and the "step" column has no extraction (the table says so).

    python benchmarks/bench_render.py --sizes 128 256 512 --ssaa 1 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

import slang_rasterizer as sr
from slang_rasterizer.shapes import icosphere, orbit_cameras, shell_mesh

CDF_LEVELS = (0.9, 0.5, 0.1, 0.01, 0.001)
SHARPNESS = 400.0


def timed(fn, repeats: int) -> float:
    """Median wall time in ms of ``fn()`` (synchronized), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_gib(fn) -> float:
    """Peak memory allocated during ``fn()`` above what was allocated before, in GiB."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def make_workload(n: int, device):
    """A function giving (mesh, sdf [V], sh [V, 4, 3]) and the leaf parameters it depends on."""
    levels = [math.log(p / (1 - p)) / SHARPNESS for p in CDF_LEVELS]
    try:
        from slang_marching_cubes import SparseGrid, extract_shells
    except ImportError:
        extract_shells = None
    if extract_shells is not None:
        grid = SparseGrid.from_dense(torch.ones((n, n, n), dtype=torch.bool, device=device))
        sdf = ((grid.vertex_positions() - 0.5).norm(dim=-1) - 0.3).requires_grad_()
        sh = (0.1 * torch.randn(grid.num_vertices, 12, device=device)).requires_grad_()

        def build():
            shells = extract_shells(grid, sdf, sh, levels, check_finite=False)
            mesh = sr.ShellMesh(shells.positions, shells.faces, shells.face_offsets.to(device))
            return mesh, shells.sdf, shells.attributes.view(-1, 4, 3)

        return build, (sdf, sh), "marching cubes"
    # Fallback: nested icospheres, about 0.27M / 1.07M / 4.28M faces in total.
    sub = {128: 5, 256: 6, 512: 7}.get(n, 5)
    radii = [0.3 + level for level in levels]
    mesh = shell_mesh([icosphere(sub, r, (0.5, 0.5, 0.5)) for r in radii], device=device)
    counts = torch.full((5,), mesh.positions.shape[0] // 5)
    sdf = torch.repeat_interleave(torch.tensor(levels), counts).to(device).requires_grad_()
    sh = (0.1 * torch.randn(mesh.positions.shape[0], 4, 3, device=device)).requires_grad_()
    return (lambda: (mesh, sdf, sh)), (sdf, sh), "icospheres (no extraction)"


def run(n: int, ssaa: int, mode: str, repeats: int, device) -> dict:
    build, leaves, source = make_workload(n, device)
    cams = orbit_cameras(4, 1.0, (800, 800), fov_degrees=50.0, target=(0.5, 0.5, 0.5),
                         device=device)  # fmt: skip
    background = torch.ones(3, device=device)
    mesh, vsdf, vsh = build()
    target = torch.rand(4, 3, 800, 800, device=device)

    def render(mesh, vsdf, vsh):
        return sr.render(cams, mesh, vsdf, vsh, SHARPNESS, background, mode=mode, ssaa=ssaa)

    def forward():
        with torch.no_grad():
            render(mesh, vsdf.detach(), vsh.detach())

    def render_step():
        image, _ = render(mesh, vsdf.detach().requires_grad_(), vsh.detach().requires_grad_())
        ((image - target) ** 2).mean().backward()

    def full_step():
        m, s, c = build()
        image, _ = render(m, s, c)
        ((image - target) ** 2).mean().backward()
        for leaf in leaves:
            leaf.grad = None

    row = {
        "N": n,
        "ssaa": ssaa,
        "mode": mode,
        "faces": int(mesh.faces.shape[0]),
        "shells": source,
        "render_fwd_ms": timed(forward, repeats),
        "render_fwd_bwd_ms": timed(render_step, repeats),
        "step_ms": timed(full_step, repeats),
    }
    row["step_peak_gib"] = peak_gib(full_step)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--ssaa", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--modes", nargs="+", default=["fused", "explicit"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_render.py needs a CUDA device")
    device = torch.device("cuda")
    torch.manual_seed(0)
    start = time.perf_counter()
    sr.render(  # compile (or load) the kernels before timing anything
        orbit_cameras(1, 3.0, (16, 16), device=device),
        shell_mesh([icosphere(1)], device=device),
        torch.zeros(42, device=device),
        torch.zeros(42, 4, 3, device=device),
        1.0,
        torch.zeros(3, device=device),
    )
    print(f"kernels ready in {time.perf_counter() - start:.1f} s ({torch.cuda.get_device_name()})")
    rows = []
    print(
        "| N | faces | SSAA | mode | render fwd | render fwd+bwd | step (extract+render+bwd) "
        "| step peak memory |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for n in args.sizes:
        for ssaa in args.ssaa:
            for mode in args.modes:
                try:
                    row = run(n, ssaa, mode, args.repeats, device)
                except torch.cuda.OutOfMemoryError:
                    print(f"| {n} | | {ssaa} | {mode} | out of memory | | | |")
                    torch.cuda.empty_cache()
                    continue
                rows.append(row)
                print(
                    f"| {n} | {row['faces'] / 1e6:.2f}M | {ssaa} | {mode} | "
                    f"{row['render_fwd_ms']:.1f} ms | {row['render_fwd_bwd_ms']:.1f} ms | "
                    f"{row['step_ms']:.1f} ms | {row['step_peak_gib']:.2f} GiB |",
                    flush=True,
                )
                torch.cuda.empty_cache()
    print(f"shells: {rows[0]['shells'] if rows else '-'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
