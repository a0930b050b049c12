"""Benchmark: grid construction, extraction, extraction + backward on a dense sphere grid.

The workload of DESIGN.md §4: a dense N^3 grid holding a sphere of radius 0.3, 5 shells
(CDF levels 0.9, 0.5, 0.1, 0.01, 0.001 at sharpness 400), 12 attribute channels (SH degree 1).
Prints a markdown table with the Slang and the reference backend side by side (the reference
only at the sizes given by --reference-sizes) and optionally writes the rows as JSON.

    python benchmarks/bench_extract.py --sizes 128 256 512 --reference-sizes 128 256
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from slang_marching_cubes import SparseGrid, extract_shells

CDF_LEVELS = (0.9, 0.5, 0.1, 0.01, 0.001)
SHARPNESS = 400.0
CHANNELS = 12


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall time in ms of ``fn()`` (synchronized), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run(n: int, backend: str, device: torch.device, repeats: int) -> dict:
    levels = [math.log(p / (1 - p)) / SHARPNESS for p in CDF_LEVELS]
    occupancy = torch.ones((n, n, n), dtype=torch.bool, device=device)
    grid_ms = timed(lambda: SparseGrid.from_dense(occupancy), max(1, repeats // 3), device)
    grid = SparseGrid.from_dense(occupancy)
    occupancy = None  # free it before the extraction
    sdf = ((grid.vertex_positions() - 0.5).norm(dim=-1) - 0.3).requires_grad_()
    attrs = torch.randn(grid.num_vertices, CHANNELS, device=device, requires_grad=True)

    def forward():
        return extract_shells(grid, sdf, attrs, levels, backend=backend, check_finite=False)

    def forward_backward():
        shells = forward()
        loss = shells.sdf.sum() + shells.attributes.sum()
        loss.backward()

    extract_ms = timed(forward, repeats, device)
    step_ms = timed(forward_backward, repeats, device)
    shells = forward()
    peak = float("nan")
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward_backward()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    return {
        "N": n,
        "backend": backend,
        "faces": int(shells.faces.shape[0]),
        "vertices": int(shells.positions.shape[0]),
        "grid_ms": grid_ms,
        "extract_ms": extract_ms,
        "extract_backward_ms": step_ms,
        "peak_extra_gib": peak,
        "grid_gib": grid.nbytes / 2**30,
    }


def profile(n: int, device: torch.device) -> None:
    grid = SparseGrid.from_dense(torch.ones((n, n, n), dtype=torch.bool, device=device))
    sdf = (grid.vertex_positions() - 0.5).norm(dim=-1) - 0.3
    attrs = torch.randn(grid.num_vertices, CHANNELS, device=device)
    levels = [math.log(p / (1 - p)) / SHARPNESS for p in CDF_LEVELS]
    for _ in range(3):
        extract_shells(grid, sdf, attrs, levels, backend="slang", check_finite=False)
    torch.cuda.synchronize()
    with torch.profiler.profile() as prof:
        for _ in range(5):
            extract_shells(grid, sdf, attrs, levels, backend="slang", check_finite=False)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--reference-sizes", type=int, nargs="*", default=[128, 256])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--profile", type=int, help="print a torch.profiler table of one Slang extraction at N"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.profile:
        profile(args.profile, device)
    rows = []
    for n in args.sizes:
        for backend in ("slang", "reference"):
            if backend == "slang" and device.type != "cuda":
                continue
            if backend == "reference" and n not in args.reference_sizes:
                continue
            row = run(n, backend, device, args.repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}; grid = SparseGrid.from_dense of a full N^3 mask")
    print("| N | backend | faces | grid | extract | extract + backward | peak extra memory |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['N']} | {r['backend']} | {r['faces'] / 1e6:.2f}M | {r['grid_ms']:.1f} ms | "
            f"{r['extract_ms']:.1f} ms | {r['extract_backward_ms']:.1f} ms | "
            f"{r['peak_extra_gib']:.2f} GiB |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
