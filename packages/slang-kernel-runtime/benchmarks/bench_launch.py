"""Benchmark: host time of one kernel launch through the Slang runtime (argument checks + packing).

CPU (no GPU needed): the per-launch Python work for the parameter list of slang_marching_cubes'
``mc_emit`` (18 tensors, 5 ints; the largest kernel of the extraction) and of the probe kernel
``affine_fwd`` (2 tensors, 3 scalars), packed two ways:

- ``per call``: what the runtime did before the launcher cache: ``pack_arguments`` (full
  validation, one ctypes structure per argument) and a fresh pointer array;
- ``cached``: ``KernelLauncher.pack`` (layout, buffer and pointer array made once per kernel,
  quick checks, one ``struct.pack_into``).

With ``--gpu`` (CUDA) it also times whole launches of ``affine_fwd`` on a 4x4 tensor: the
``SlangModule.launch`` path against the per-call path plus ``cuLaunchKernel``, N launches back
to back, host time per launch (the GPU work is negligible).

    python benchmarks/bench_launch.py [--repeats 20000] [--gpu]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from slang_kernel_runtime import SlangModule
from slang_kernel_runtime.abi import KernelLauncher, pack_arguments
from slang_kernel_runtime.driver import Driver
from slang_kernel_runtime.parsing import Param

PROBE = Path(__file__).resolve().parents[1] / "tests" / "data" / "runtime_probe.slang"

EMIT = [
    *[
        Param(name, "tensor", dtype)
        for name, dtype in [
            ("active_index", "int64"),
            ("voxels", "int64"),
            ("voxel_rows", "int64"),
            ("bases_in", "int32"),
            ("codes", "uint8"),
            ("owned_crossings", "int32"),
            ("neighbor_masks", "int32"),
            ("counts", "int64"),
            ("ends", "int64"),
            ("sdf", "float32"),
            ("levels", "float32"),
            ("tri_offsets", "int32"),
            ("tri_edges", "int32"),
            ("edges", "int32"),
            ("t_out", "float32"),
            ("positions", "float32"),
            ("faces", "int32"),
            ("face_voxels", "int32"),
        ]
    ],
    *[Param(name, "int") for name in ("num_active", "num_levels", "I", "J", "K")],
]
AFFINE = [
    Param("x", "tensor", "float32"),
    Param("y", "tensor", "float32"),
    Param("scale", "float"),
    Param("offset", "int"),
    Param("negate", "bool"),
]


def arguments(params: list[Param], device: str) -> dict:
    args = {}
    for p in params:
        if p.kind == "tensor":
            args[p.name] = torch.zeros(64, 3, dtype=getattr(torch, p.dtype), device=device)[:, 1]
        else:
            args[p.name] = {"int": 7, "float": 0.5, "bool": True}[p.kind]
    return args


def per_call(params, kwargs, require_cuda):
    packed = pack_arguments("k", params, kwargs, require_cuda)
    return (ctypes.c_void_p * len(packed))(
        *[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in packed]
    )


def microseconds(fn, repeats: int, rounds: int = 5) -> float:
    """Median over `rounds` of the mean time per call (µs) of `repeats` calls."""
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        samples.append((time.perf_counter() - start) / repeats * 1e6)
    return statistics.median(samples)


def bench_packing(repeats: int) -> None:
    print("| kernel | parameters | per call (µs) | cached (µs) | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, params in (("mc_emit", EMIT), ("affine_fwd", AFFINE)):
        kwargs = arguments(params, "cpu")
        launcher = KernelLauncher(name, params, require_cuda=False)
        old = microseconds(lambda p=params, k=kwargs: per_call(p, k, False), repeats)
        new = microseconds(lambda lr=launcher, k=kwargs: lr.pack(k), repeats)
        print(f"| {name} | {len(params)} | {old:.1f} | {new:.1f} | {old / new:.1f}x |")


def bench_gpu(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["RUNTIME_PROBE_CACHE_DIR"] = cache
        module = SlangModule(package="runtime_probe", entry=PROBE)
        kwargs = arguments(AFFINE, "cuda")
        kwargs["x"] = torch.ones(4, 4, device="cuda")
        kwargs["y"] = torch.zeros(4, 4, device="cuda")
        grid, block = (1, 1, 1), (16, 16, 1)
        module.launch("affine_fwd", grid, block, **kwargs)
        torch.cuda.synchronize()
        driver = Driver.get()
        function = module._functions[torch.cuda.current_device()]["affine_fwd"]

        def old_launch():
            packed = pack_arguments("affine_fwd", AFFINE, kwargs)
            driver.make_current(0)
            stream = torch.cuda.current_stream(0).cuda_stream
            driver.launch(function, grid, block, stream, packed, "affine_fwd")

        def new_launch():
            module.launch("affine_fwd", grid, block, **kwargs)

        results = {}
        for label, fn in (("per call", old_launch), ("cached", new_launch)):
            torch.cuda.synchronize()
            results[label] = microseconds(fn, repeats)
            torch.cuda.synchronize()
        print(f"\nwhole launches of affine_fwd on {torch.cuda.get_device_name()}:")
        print("| path | host time per launch (µs) |")
        print("|---|---:|")
        for label, value in results.items():
            print(f"| {label} | {value:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20000)
    parser.add_argument("--gpu", action="store_true", help="also time whole launches on CUDA")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, Python {sys.version.split()[0]}")
    bench_packing(args.repeats)
    if args.gpu:
        if not torch.cuda.is_available():
            print("--gpu: no CUDA device", file=sys.stderr)
            return 1
        bench_gpu(max(args.repeats // 4, 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
