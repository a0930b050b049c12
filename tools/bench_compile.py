"""Measure how long the Slang kernels take to compile cold and to load warm, per loader.

    python tools/bench_compile.py                      # every kernel module, both loaders
    python tools/bench_compile.py --loaders nvrtc      # only the default loader
    python tools/bench_compile.py --probe              # add the runtime's probe module
    python tools/bench_compile.py --json results.json  # also write the figures

The kernel modules are found through each kernel package's public hook
(``<package>.compilation.entry_modules()``); while no package ships kernels yet, the runtime's
probe module (packages/slang-kernel-runtime/tests/data/runtime_probe.slang) is measured instead.

On a CUDA machine, for every module and loader:
- cold: a fresh process with an empty cache folder compiles the module (``precompile()``);
- warm: a second fresh process with the same cache folder loads it (``precompile()`` again).
Each time is measured inside the process, after torch has initialised CUDA, so it is the time a
user's first kernel call waits; the process's whole wall time (interpreter, torch import, CUDA
init) is shown too. The "all modules" line sums the modules.

Without a GPU it measures what a cold compile spends on the CPU: slangc and NVRTC (for sm_90),
through ``compile_only``; that needs NVRTC (the ``nvidia-cuda-nvrtc`` wheel or ``--nvrtc``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("slang_marching_cubes", "slang_rasterizer")
PROBE = ROOT / "packages/slang-kernel-runtime/tests/data/runtime_probe.slang"

CHILD = """
import json, sys, time
started = time.perf_counter()
import torch
torch.zeros(1, device="cuda")
torch.cuda.synchronize()
ready = time.perf_counter()
package, entry = sys.argv[1], sys.argv[2]
from slang_kernel_runtime import SlangModule
module = SlangModule(package=package, entry=entry)
folder = module.precompile()
done = time.perf_counter()
info = json.loads((folder / "kernels.json").read_text())
print(json.dumps({
    "startup_s": ready - started, "load_s": done - ready, "kernels": len(info["kernels"]),
    "loader": module.loader, "slangc_s": info.get("slangc_s"), "nvrtc_s": info.get("nvrtc_s"),
    "binary": info.get("binary"), "folder": str(folder),
}))
"""


def kernel_modules(with_probe: bool) -> list[tuple[str, Path]]:
    """(package, entry module) pairs from the packages' hooks, else the probe module."""
    modules = []
    for package in PACKAGES:
        try:
            hook = importlib.import_module(f"{package}.compilation")
        except ImportError as error:
            print(f"{package}: not importable ({error}); skipped", file=sys.stderr)
            continue
        modules += [(package, entry) for entry in hook.entry_modules()]
    if with_probe or not modules:
        modules.append(("runtime_probe", PROBE))
    return modules


def run_child(package: str, entry: Path, loader: str, cache: Path) -> dict:
    prefix = package.upper()
    env = {**os.environ, f"{prefix}_CACHE_DIR": str(cache), f"{prefix}_LOADER": loader}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, package, str(entry)],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1], "wall_s": wall}
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["wall_s"] = wall
    if figures["loader"] != loader:
        figures["error"] = f"asked for {loader}, ran {figures['loader']}"
    return figures


def bench_gpu(modules: list[tuple[str, Path]], loaders: list[str]) -> list[dict]:
    rows = []
    for loader in loaders:
        for package, entry in modules:
            with tempfile.TemporaryDirectory(prefix="bench-compile-") as cache:
                cold = run_child(package, entry, loader, Path(cache))
                warm = run_child(package, entry, loader, Path(cache)) if "error" not in cold else {}
            rows.append(
                {
                    "package": package,
                    "module": entry.name,
                    "loader": loader,
                    "cold": cold,
                    "warm": warm,
                }
            )
            print(f"  measured {entry.name} / {loader}", file=sys.stderr, flush=True)
    return rows


def bench_cpu(modules: list[tuple[str, Path]], nvrtc: str | None, arch: int) -> list[dict]:
    from slang_kernel_runtime import SlangModule

    rows = []
    for package, entry in modules:
        module = SlangModule(package=package, entry=entry)
        started = time.perf_counter()
        try:
            info = module.compile_only(arch, nvrtc)
            cold = {
                "load_s": time.perf_counter() - started,
                "kernels": len(info["kernels"]),
                "slangc_s": info["slangc_s"],
                "nvrtc_s": info["nvrtc_s"],
                "binary": info["binary"],
            }
        except RuntimeError as error:
            cold = {"error": str(error).splitlines()[0]}
        rows.append({"package": package, "module": entry.name, "loader": "nvrtc", "cold": cold})
    return rows


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict], gpu: bool) -> None:
    if gpu:
        header = (
            "| module | loader | kernels | cold compile (s) | of which slangc + NVRTC (s) "
            "| warm load (s) | cold / warm process wall (s) |"
        )
    else:
        header = "| module | kernels | cold compile on CPU (s) | slangc (s) | NVRTC (s) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    totals: dict[str, list[float]] = {}
    for row in rows:
        cold, warm = row["cold"], row.get("warm", {})
        if "error" in cold:
            print(f"| {row['module']} | {row['loader']} | failed: {cold['error'][:120]} |")
            continue
        if gpu:
            split = (
                f"{fmt(cold['slangc_s'])} + {fmt(cold['nvrtc_s'])}"
                if cold.get("slangc_s") is not None
                else "-"
            )
            print(
                f"| {row['module']} | {row['loader']} | {cold['kernels']} | {fmt(cold['load_s'])} "
                f"| {split} | {fmt(warm.get('load_s'), 3)} "
                f"| {fmt(cold['wall_s'], 1)} / {fmt(warm.get('wall_s'), 1)} |"
            )
            total = totals.setdefault(row["loader"], [0.0, 0.0])
            total[0] += cold["load_s"]
            total[1] += warm.get("load_s") or 0.0
        else:
            print(
                f"| {row['module']} | {cold['kernels']} | {fmt(cold['load_s'])} "
                f"| {fmt(cold['slangc_s'])} | {fmt(cold['nvrtc_s'])} |"
            )
    modules = {row["module"] for row in rows}
    if gpu and len(modules) > 1:
        for loader, (cold_sum, warm_sum) in totals.items():
            print(f"| all modules | {loader} | | {fmt(cold_sum)} | | {fmt(warm_sum, 3)} | |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loaders", default="nvrtc,slangtorch", help="comma-separated loaders")
    parser.add_argument("--probe", action="store_true", help="also measure the probe module")
    parser.add_argument("--nvrtc", help="libnvrtc.so for the CPU-only measurement")
    parser.add_argument("--arch", type=int, default=90, help="architecture for the CPU mode")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    import torch

    modules = kernel_modules(args.probe)
    gpu = torch.cuda.is_available()
    where = torch.cuda.get_device_name(0) if gpu else "CPU only (no CUDA device)"
    print(f"Kernel compile times on {where}, torch {torch.__version__}", file=sys.stderr)
    if gpu:
        rows = bench_gpu(modules, [x.strip() for x in args.loaders.split(",") if x.strip()])
    else:
        rows = bench_cpu(modules, args.nvrtc, args.arch)
    print_table(rows, gpu)
    if args.json:
        payload = {"device": where, "torch": torch.__version__, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=1, default=str))
    return 0 if all("error" not in row["cold"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
