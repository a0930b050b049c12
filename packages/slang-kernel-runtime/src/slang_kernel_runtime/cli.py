"""Reports and the command line of a kernel package: ``python -m <package> precompile | check |
clear-cache | info``."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .module import SlangModule, slang_available

__all__ = ["format_bytes", "describe_cache", "describe_toolchain", "command_line"]


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def describe_cache(module: SlangModule) -> list[str]:
    """Lines saying where the module's cache is and what it holds."""
    entries = module.cache_entries()
    builds = [e for e in entries if e["kind"] == "build"]
    total = sum(e["bytes"] for e in entries)
    lines = [
        f"cache: {module.cache_dir} ({len(builds)} build(s), {format_bytes(total)}; set "
        f"{module.env_prefix}_CACHE_DIR to move it)"
    ]
    for e in entries:
        if e["kind"] == "lock":
            continue
        what = e["kind"]
        if what == "build":
            versions = f"slangc {e['slangc'] or '?'}"
            if e.get("nvrtc"):
                versions += f", NVRTC {e['nvrtc']}"
            what = f"{e['kernels']} kernels, {versions}"
        elif what == "temporary":
            what = "left by a killed build; removed by the next build or clear-cache"
        modified = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["modified"]))
        lines.append(f"  {e['name']}  {format_bytes(e['bytes'])}  {modified}  {what}")
    return lines


def describe_toolchain(info: Mapping[str, Any]) -> list[str]:
    """Lines for the dict of ``SlangModule.toolchain()``."""
    if info["driver_cuda"]:
        driver = "CUDA {}.{}".format(*info["driver_cuda"])
    else:
        driver = info["driver_note"] or "none"
    nvrtc = "not found"
    if info["nvrtc"] is not None:
        version = info["nvrtc_version"]
        archs = info["nvrtc_archs"]
        known = f"sm_{archs[0]}..sm_{archs[-1]}" if archs else "?"
        nvrtc = (
            f"{version[0]}.{version[1]} ({known}) {info['nvrtc']}"
            if version
            else info.get("nvrtc_note", str(info["nvrtc"]))
        )
    gpu = f"{info['gpu']} (sm_{info['arch']})" if info["gpu"] else "none"
    slangc = (
        f"{info['slangc_version']} {info['slangc']}" if info["slangc"] else "not found (slangtorch)"
    )
    used = info["loader_used"] or "none (the reference backend is used)"
    return [
        f"torch:       {info['torch'] or 'not installed'} "
        f"(CUDA {info['torch_cuda'] or 'none: CPU build'})",
        f"driver:      {driver}",
        f"GPU:         {gpu}",
        f"slangtorch:  {info['slangtorch'] or 'not installed'}",
        f"slangc:      {slangc}",
        f"NVRTC:       {nvrtc}",
        f"loader:      {used} ({info['loader_note']})",
    ]


def command_line(module: SlangModule, argv: Sequence[str] | None = None) -> int:
    """``python -m <package> precompile | check | clear-cache | info``; returns the exit code."""
    import argparse

    package = module.package
    parser = argparse.ArgumentParser(
        prog=f"python -m {package}",
        description=f"Compile, check and cache the Slang kernels of {package}.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "precompile", help="compile (or find in the cache) and load the kernels on this GPU"
    )
    check = commands.add_parser(
        "check", help="compile the kernels with slangc and NVRTC for GPU architectures (no GPU)"
    )
    check.add_argument(
        "--arch", default="80,90", help="comma-separated compute capabilities (default 80,90)"
    )
    check.add_argument("--nvrtc", help="path of the libnvrtc.so to use")
    commands.add_parser("clear-cache", help=f"delete the kernel cache ({module.cache_dir})")
    commands.add_parser("info", help="the cache and the tools in use")
    args = parser.parse_args(argv)
    has_kernels = module.entry.is_file()
    no_kernels = f"{package}: no Slang kernels in this version ({module.entry} is missing)"
    try:
        if args.command == "precompile":
            if not has_kernels:
                print(f"{no_kernels}; nothing to compile")
                return 0
            available, why = slang_available()
            if not available:
                print(f"{package}: cannot precompile here: {why}", file=sys.stderr)
                return 1
            started = time.perf_counter()
            folder = module.precompile()
            print(
                f"{package}: {len(module.kernels())} kernels ready in "
                f"{time.perf_counter() - started:.2f} s (loader {module.loader}) -> {folder}"
            )
        elif args.command == "check":
            if not has_kernels:
                print(f"{no_kernels}; nothing to check")
                return 0
            try:
                archs = [int(a.strip().removeprefix("sm_")) for a in args.arch.split(",")]
            except ValueError:
                parser.error(f"--arch must be comma-separated integers like 80,90; got {args.arch}")
            for arch in archs:
                info = module.compile_only(arch, args.nvrtc)
                print(
                    f"{package}: sm_{arch}: {len(info['kernels'])} kernels -> {info['binary']} "
                    f"{format_bytes(info['binary_bytes'])} (slangc {info['slangc_s']:.2f} s, "
                    f"NVRTC {info['nvrtc']} {info['nvrtc_s']:.2f} s)"
                )
        elif args.command == "clear-cache":
            entries = module.cache_entries()
            if not entries:
                print(f"{package}: nothing cached in {module.cache_dir}")
                return 0
            size = format_bytes(sum(e["bytes"] for e in entries))
            builds = sum(e["kind"] == "build" for e in entries)
            module.clear_cache()
            print(f"{package}: removed {module.cache_dir} ({builds} build(s), {size})")
        else:
            print(f"{package}: kernels {module.entry if has_kernels else 'none in this version'}")
            for line in describe_cache(module) + describe_toolchain(module.toolchain()):
                print(f"  {line}")
    except RuntimeError as error:
        print(str(error), file=sys.stderr)
        return 1
    return 0
