"""The slangtorch x CUDA compatibility matrix of the Slang kernels (run by ``nox -s compat``).

    python tools/compat.py --slangtorch 1.3.7,1.3.22 --cuda 12.4,13.0 [--gpu auto|yes|no]

For every slangtorch version (its wheel, fetched once and unpacked, never pip-installed) and
every CUDA version (the NVRTC wheel of that CUDA from PyPI: ``nvidia-cuda-nvrtc-cu12==12.X.*``
or ``nvidia-cuda-nvrtc==13.X.*``, fetched once and unpacked), with no GPU needed:

1. that slangtorch's ``slangc`` turns every kernel entry module into CUDA source
   (``-target cuda``, exactly as the kernel runtime's nvrtc loader does);
2. that CUDA's NVRTC compiles that source to a cubin for sm_80 and sm_90.

Per slangtorch version, with the torch of this environment: that slangtorch's own extension
build (the runtime's fallback loader) gets as far as writing its ninja file, and which C++
standard the host compile gets, as slangtorch ships (it forces -std=c++17) and through the
kernel runtime (which lets torch choose; C++20 from torch 2.13, slang-torch issue #50). The
compile itself is not run (it needs the CUDA math libraries' headers); the GPU part does it.

On a CUDA machine (``--gpu auto`` finds one), the pairs whose CUDA matches torch's CUDA
(major.minor) also run the kernel packages' ``cuda`` tests with that slangtorch first on
``sys.path`` and fresh kernel caches.

Modules come from the kernel packages' public hooks (``<package>.compilation.entry_modules()``);
the runtime's probe module stands in while no package ships kernels. Wheels and unpacked files
are cached in ``--cache`` (default .nox/compat-cache); ``--wheels DIR`` adds a folder of wheels
to look in first (for offline machines). Results go to ``--output`` (default docs/compat.md),
merged with the rows already there: a CPU-only run keeps the GPU results of an earlier GPU run.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("slang_marching_cubes", "slang_rasterizer")
PROBE = ROOT / "packages/slang-kernel-runtime/tests/data/runtime_probe.slang"
TEST_DIRS = [
    ROOT / "packages/slang-kernel-runtime/tests",
    ROOT / "packages/slang-marching-cubes/tests",
    ROOT / "packages/slang-rasterizer/tests",
]
ARCHS = (80, 90)
WINDOWS_FILES = (".exe", ".dll", ".lib", ".pdb")


# ----------------------------------------------------------------------------------------------
# Wheels


def nvrtc_requirement(cuda: str) -> tuple[str, str]:
    """(distribution, version prefix) of the NVRTC wheel of a CUDA version like "12.4"."""
    major = cuda.split(".")[0]
    dist = "nvidia-cuda-nvrtc-cu12" if major == "12" else "nvidia-cuda-nvrtc"
    return dist, f"{cuda}."


def find_wheel(dist: str, version: str, folders: list[Path]) -> Path | None:
    """A wheel of ``dist`` of exactly ``version``, or starting with it when it ends in a dot."""
    stem = re.sub(r"[-_.]+", "_", dist).lower()
    for folder in folders:
        for path in sorted(folder.glob("*.whl"), reverse=True):
            parts = path.name.split("-")
            if re.sub(r"[-_.]+", "_", parts[0]).lower() != stem:
                continue
            got = parts[1]
            if got == version or (version.endswith(".") and got.startswith(version)):
                return path
    return None


def fetch_wheel(dist: str, version: str, cache: Path, extra: list[Path]) -> Path:
    folders = [*extra, cache / "wheels"]
    wheel = find_wheel(dist, version, folders)
    if wheel is not None:
        return wheel
    spec = f"{dist}=={version}*" if version.endswith(".") else f"{dist}=={version}"
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    print(f"compat: downloading {spec}", flush=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "-d", str(cache / "wheels"), spec]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = find_wheel(dist, version, folders)
    if result.returncode != 0 or wheel is None:
        raise RuntimeError(f"cannot fetch {spec}: {result.stderr.strip()[-500:]}")
    return wheel


def unpack(wheel: Path, target: Path) -> Path:
    """Unpack a wheel (Linux files only) into ``target`` once; return ``target``."""
    if (target / ".complete").is_file():
        return target
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if member.filename.lower().endswith(WINDOWS_FILES):
                continue
            path = Path(archive.extract(member, tmp))
            if "/bin/" in member.filename or ".so" in member.filename:
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (tmp / ".complete").write_text(wheel.name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def needs_pkg_resources(site: Path) -> bool:
    """Whether this slangtorch imports pkg_resources (gone from setuptools 81 on)."""
    source = site / "slangtorch" / "slangtorch.py"
    return source.is_file() and "import pkg_resources" in source.read_text()


def pkg_resources_site(cache: Path, extra: list[Path]) -> Path | None:
    """A folder to put on PYTHONPATH that provides pkg_resources (setuptools 80), if needed."""
    try:
        import pkg_resources  # noqa: F401

        return None
    except ImportError:
        wheel = fetch_wheel("setuptools", "80.", cache, extra)
        return unpack(wheel, cache / "setuptools-80")


def local_nvrtc(runtime_path: Path, cuda: str) -> Path | None:
    """The NVRTC the kernel runtime finds here, if it is CUDA ``cuda`` (for offline machines)."""
    rt = load_runtime(str(runtime_path))
    path = rt.nvrtc.find_nvrtc()
    try:
        return path if path and "{}.{}".format(*rt.nvrtc.Nvrtc(path).version) == cuda else None
    except (OSError, RuntimeError):
        return None


def nvrtc_library(site: Path) -> Path | None:
    for pattern in ("nvidia/*/lib/libnvrtc.so.*", "nvidia/*/*/lib/libnvrtc.so.*"):
        found = [
            p for p in glob.glob(str(site / pattern)) if "builtins" not in p and ".alt." not in p
        ]
        if found:
            return Path(sorted(found)[0])
    return None


# ----------------------------------------------------------------------------------------------
# Child processes (one per step, so each gets its own slangtorch on sys.path / its own NVRTC)


def load_runtime(path: str):
    """The kernel runtime package at ``path`` (the folder holding ``slang_kernel_runtime``),
    imported ahead of any installed copy."""
    sys.path.insert(0, path)
    import slang_kernel_runtime.cli  # noqa: F401 - imports every module of the runtime

    return sys.modules["slang_kernel_runtime"]


def child_emit(runtime_path: str, out: Path, modules: list[str]) -> dict:
    """slangc of the slangtorch on sys.path: every module to CUDA source in ``out``."""
    rt = load_runtime(runtime_path)
    slangc = rt.slangc.find_slangc()
    results = {"slangtorch": rt.slangc.slangtorch_version(), "slangc": str(slangc)}
    results["slangc_version"] = rt.slangc.slangc_version(slangc)
    for item in modules:
        package, entry = item.split("=", 1)
        module = rt.SlangModule(package=package, entry=entry)
        work = out / package
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            _, table, _ = module.emit_cuda(work)
            results[package] = {
                "ok": True,
                "kernels": sorted(table),
                "seconds": time.perf_counter() - started,
            }
        except RuntimeError as error:
            results[package] = {"ok": False, "error": str(error)}
    return results


def child_nvrtc(runtime_path: str, nvrtc_path: str, emitted: Path, packages: list[str]) -> dict:
    """That NVRTC: every emitted CUDA source to a cubin for each architecture."""
    rt = load_runtime(runtime_path)
    nvrtc = rt.nvrtc.Nvrtc(Path(nvrtc_path))
    results: dict = {"nvrtc_version": "{}.{}".format(*nvrtc.version)}
    for package in packages:
        source = (emitted / package / "kernels.cu").read_text()
        names = json.loads((emitted / "emit.json").read_text())[package]["kernels"]
        for arch in ARCHS:
            started = time.perf_counter()
            try:
                binary, kind, _, _ = nvrtc.compile(source, names, arch)
                results[f"{package}:{arch}"] = {
                    "ok": kind == "cubin",
                    "kind": kind,
                    "bytes": len(binary),
                    "seconds": time.perf_counter() - started,
                }
            except RuntimeError as error:
                results[f"{package}:{arch}"] = {"ok": False, "error": str(error)}
    return results


class _StopBeforeCompiling(Exception):
    pass


def child_recipe(runtime_path: str, work: Path, modules: list[str]) -> dict:
    """slangtorch's extension build with this torch, stopped right before ninja runs."""
    import torch
    import torch.utils.cpp_extension as cpp

    rt = load_runtime(runtime_path)
    import slangtorch

    results: dict = {"torch": torch.__version__, "slangtorch": rt.slangc.slangtorch_version()}
    if not cpp.CUDA_HOME:  # a CPU build of torch: point it at a toolkit (or a stand-in path)
        cpp.CUDA_HOME = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    build_dirs: list[str] = []

    def stop(build_directory, *args, **kwargs):
        build_dirs.append(build_directory)
        raise _StopBeforeCompiling

    cpp._run_ninja_build = stop
    package, entry = modules[0].split("=", 1)
    sources = Path(entry).parent
    for label, patched in (("shipped", False), ("runtime", True)):
        copy = work / label
        shutil.copytree(sources, copy)
        for path in copy.rglob("*.slang"):
            path.write_text(rt.slangtorch_loader.add_autopybind(path.read_text()))
        target = copy / Path(entry).name
        try:
            if patched:
                rt.slangtorch_loader.slangtorch_load(slangtorch, target)
            else:
                slangtorch.loadModule(str(target))
            results[label] = {"ok": False, "error": "the build did not reach ninja"}
        except _StopBeforeCompiling:
            ninja = (Path(build_dirs[-1]) / "build.ninja").read_text()
            host = re.search(r"^cflags = (.*)$", ninja, re.M).group(1)
            device = re.search(r"^cuda_cflags = (.*)$", ninja, re.M)
            std = re.findall(r"-std=(c\+\+\w+)", host)
            results[label] = {
                "ok": True,
                "host_std": std,
                "effective": std[-1] if std else "compiler default",
                "nvcc_std": re.findall(r"-std=(c\+\+\w+)", device.group(1) if device else ""),
            }
        except Exception as error:  # what a user would see from slangtorch.loadModule
            results[label] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return results


def with_pythonpath(env: dict, *folders: Path | None) -> dict:
    parts = [str(f) for f in folders if f is not None] + [env.get("PYTHONPATH", "")]
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, parts))}


def run_child(step: str, payload: dict, *pythonpath: Path | None) -> dict:
    env = with_pythonpath(dict(os.environ), *pythonpath)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", step, json.dumps(payload)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr or result.stdout).strip()[-800:]
        return {"child_error": f"{step} failed (exit {result.returncode}): {tail}"}
    return json.loads(lines[-1])


def child_main(step: str, payload: dict) -> None:
    if step == "emit":
        result = child_emit(payload["runtime"], Path(payload["out"]), payload["modules"])
    elif step == "nvrtc":
        result = child_nvrtc(
            payload["runtime"], payload["nvrtc"], Path(payload["emitted"]), payload["packages"]
        )
    else:
        result = child_recipe(payload["runtime"], Path(payload["work"]), payload["modules"])
    print(json.dumps(result, default=str))


# ----------------------------------------------------------------------------------------------
# The matrix


def kernel_modules() -> tuple[list[str], Path]:
    """["package=entry", ...] from the hooks (or the probe), and the kernel runtime's folder."""
    import slang_kernel_runtime

    modules = []
    for package in PACKAGES:
        hook = importlib.import_module(f"{package}.compilation")
        modules += [f"{package}={entry}" for entry in hook.entry_modules()]
    if not modules:
        modules = [f"runtime_probe={PROBE}"]
    return modules, Path(slang_kernel_runtime.__file__).parent.parent


def short(text: str, limit: int = 110) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    interesting = [line for line in lines if "error" in line.lower()] or lines or ["?"]
    line = interesting[0].replace("|", "/")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def compile_cell(emit: dict, nvrtc: dict, packages: list[str], arch: int) -> str:
    if "child_error" in nvrtc:
        return f"FAILED: {short(nvrtc['child_error'])}"
    failures, seconds, size = [], 0.0, 0
    for package in packages:
        if not emit[package]["ok"]:
            continue
        result = nvrtc[f"{package}:{arch}"]
        if result["ok"]:
            seconds += result["seconds"]
            size += result["bytes"]
        else:
            failures.append(f"{package}: {short(result.get('error', result.get('kind')))}")
    if failures:
        return "FAILED " + "; ".join(failures)
    return f"ok ({size // 1024} KiB cubin, {seconds:.1f} s)"


def emit_cell(emit: dict, packages: list[str]) -> str:
    if "child_error" in emit:
        return f"FAILED: {short(emit['child_error'])}"
    failures = [f"{p}: {short(emit[p]['error'])}" for p in packages if not emit[p]["ok"]]
    if failures:
        return "FAILED " + "; ".join(failures)
    kernels = sum(len(emit[p]["kernels"]) for p in packages)
    seconds = sum(emit[p]["seconds"] for p in packages)
    return f"ok ({len(packages)} modules, {kernels} kernels, {seconds:.1f} s)"


def recipe_cell(recipe: dict, label: str) -> str:
    if "child_error" in recipe:
        return f"FAILED: {short(recipe['child_error'])}"
    result = recipe.get(label, {"ok": False, "error": "not run"})
    note = "needs setuptools<81 (imports pkg_resources); with it: " if result.get("note") else ""
    if not result["ok"]:
        return f"FAILED: {note}{short(result['error'])}"
    flags = " ".join(f"-std={s}" for s in result["host_std"]) or "none"
    nvcc = " ".join(f"-std={s}" for s in result["nvcc_std"]) or "torch's default"
    return f"{note}host `{flags}` -> {result['effective']}; nvcc `{nvcc}`"


def run_gpu_tests(sites: list[Path | None], nvrtc: Path | None, log: Path) -> str:
    env = with_pythonpath(dict(os.environ), *sites)
    caches = Path(tempfile.mkdtemp(prefix="compat-caches-"))
    for package in PACKAGES:
        prefix = package.upper()
        env[f"{prefix}_CACHE_DIR"] = str(caches / package)
        if nvrtc is not None:
            env[f"{prefix}_NVRTC_PATH"] = str(nvrtc)
    command = [sys.executable, "-m", "pytest", *map(str, TEST_DIRS), "-m", "cuda", "-q"]
    command += ["-p", "no:cacheprovider", "-rfE"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    shutil.rmtree(caches, ignore_errors=True)
    log.write_text(result.stdout + "\n" + result.stderr)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no output"
    summary = re.sub(r"=+", "", summary).strip()
    verdict = "ok" if result.returncode == 0 else "FAILED"
    if result.returncode != 0:  # what failed, for the console (the whole log is in `log`)
        lines = result.stdout.strip().splitlines()
        start = next((i for i, line in enumerate(lines) if "short test summary" in line), None)
        tail = lines[start:] if start is not None else lines[-30:]
        print("\n".join(["compat: " + line for line in tail[:40]]), flush=True)
    return f"{verdict}: {summary} ({seconds:.0f} s)"


# ----------------------------------------------------------------------------------------------
# docs/compat.md


HEADER = """# Kernel compatibility: slangtorch x CUDA

Written by `nox -s compat` (tools/compat.py); do not edit by hand. Rows are merged: a run
updates the pairs it checked, and a CPU-only run keeps the GPU results of an earlier GPU run.

- **slangc -> CUDA**: that slangtorch's `slangc -target cuda` turns every kernel entry module
  (of both kernel packages) into CUDA source, as the default `nvrtc` loader does.
- **NVRTC sm_80 / sm_90**: the NVRTC of that CUDA (PyPI wheel) compiles the source to a cubin.
- **GPU tests**: the kernel packages' `cuda` tests with that slangtorch, on a GPU whose torch
  has that CUDA version; other pairs show "-".
- The second table: slangtorch's own torch-extension build (the `slangtorch` fallback loader)
  with a given torch, up to writing its ninja file: the C++ standard of the host compile as
  slangtorch ships it and through the kernel runtime, which drops slangtorch's forced
  `-std=c++17` so torch chooses (slang-torch issue #50: torch >= 2.13 needs C++20).
"""


def read_rows(path: Path, marker: str) -> dict[tuple[str, str], list[str]]:
    """Rows of the table following ``marker`` in an existing compat.md, keyed by two cells."""
    if not path.is_file():
        return {}
    rows, inside = {}, False
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            inside = line.strip() == marker
            continue
        if inside and line.startswith("| ") and not line.startswith("| slangtorch |"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[(cells[0].split(" ")[0], cells[1].split(" ")[0])] = cells
    return rows


def write_markdown(path: Path, pairs: dict, recipes: dict, context: str) -> None:
    pair_title, recipe_title = "## slangtorch x CUDA", "## slangtorch extension build x torch"
    rows = read_rows(path, pair_title)
    for key, cells in pairs.items():
        old = rows.get(key)
        if old and cells[6] == "-" and old[6] != "-":
            cells[6:9] = old[6:9]  # keep an earlier GPU result, its machine and its date
        rows[key] = cells
    recipe_rows = read_rows(path, recipe_title)
    recipe_rows.update(recipes)

    def order(key):
        return tuple(tuple(int(x) for x in re.findall(r"\d+", k)) for k in key)

    lines = [HEADER, f"Last run: {context}", "", pair_title, ""]
    lines.append(
        "| slangtorch | CUDA (NVRTC) | slangc -> CUDA | NVRTC sm_80 | NVRTC sm_90 | checked "
        "| GPU tests | GPU | tested |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    lines += ["| " + " | ".join(rows[k]) + " |" for k in sorted(rows, key=order)]
    lines += ["", recipe_title, ""]
    lines.append(
        "| slangtorch | torch | as slangtorch ships | through the kernel runtime | checked |"
    )
    lines.append("|---|---|---|---|---|")
    lines += ["| " + " | ".join(recipe_rows[k]) + " |" for k in sorted(recipe_rows, key=order)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_main(argv[1], json.loads(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slangtorch", default="1.3.7,1.3.11,1.3.22")
    parser.add_argument("--cuda", default="12.4,12.6,12.8,13.0")
    parser.add_argument("--cache", type=Path, default=ROOT / ".nox" / "compat-cache")
    parser.add_argument("--wheels", type=Path, action="append", default=[])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "compat.md")
    parser.add_argument("--gpu", choices=["auto", "yes", "no"], default="auto")
    parser.add_argument("--no-recipe", action="store_true", help="skip the extension-build check")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    slangtorch_versions = [v.strip() for v in args.slangtorch.split(",") if v.strip()]
    cuda_versions = [v.strip() for v in args.cuda.split(",") if v.strip()]
    cache = args.cache.resolve()
    (cache / "logs").mkdir(parents=True, exist_ok=True)
    import torch

    gpu = torch.cuda.is_available() if args.gpu == "auto" else args.gpu == "yes"
    local_cuda = ".".join((torch.version.cuda or "").split(".")[:2]) if gpu else None
    modules, runtime = kernel_modules()
    packages = [m.split("=", 1)[0] for m in modules]
    today = datetime.date.today().isoformat()
    device = torch.cuda.get_device_name(0) if gpu else "CPU only"
    context = (
        f"{today}, {device}, {platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}; modules: "
        + ", ".join(Path(m.split("=", 1)[1]).name for m in modules)
    )
    print(f"compat: {context}", flush=True)

    nvrtcs: dict[str, Path | None] = {}
    for cuda in cuda_versions:
        dist, version = nvrtc_requirement(cuda)
        try:
            site = unpack(fetch_wheel(dist, version, cache, args.wheels), cache / f"cuda-{cuda}")
            nvrtcs[cuda] = nvrtc_library(site)
        except RuntimeError as error:
            nvrtcs[cuda] = local_nvrtc(runtime, cuda)
            print(f"compat: CUDA {cuda}: {error}; local NVRTC: {nvrtcs[cuda]}", flush=True)

    pairs, recipes, failed = {}, {}, False
    for version in slangtorch_versions:
        try:
            site = unpack(
                fetch_wheel("slangtorch", version, cache, args.wheels),
                cache / f"slangtorch-{version}",
            )
        except RuntimeError as error:
            print(f"compat: slangtorch {version}: {error}", flush=True)
            failed = True
            continue
        emitted = cache / "emitted" / version
        shutil.rmtree(emitted, ignore_errors=True)
        emitted.mkdir(parents=True)
        emit = run_child(
            "emit", {"runtime": str(runtime), "out": str(emitted), "modules": modules}, site
        )
        (emitted / "emit.json").write_text(json.dumps(emit, indent=1))
        (cache / "logs" / f"emit-slangtorch{version}.json").write_text(json.dumps(emit, indent=1))
        slangc = emit.get("slangc_version", "?")
        emit_text = emit_cell(emit, packages)
        print(
            f"compat: slangtorch {version} (slangc {slangc}): slangc -> CUDA {emit_text}",
            flush=True,
        )
        ok_packages = [p for p in packages if emit.get(p, {}).get("ok")]
        for cuda in cuda_versions:
            label = f"{version} ({slangc})"
            if nvrtcs[cuda] is None:
                cells = ["FAILED: no NVRTC wheel"] * 2
                nvrtc_version = "?"
            elif not ok_packages:
                cells = ["- (nothing emitted)"] * 2
                nvrtc_version = "?"
            else:
                payload = {
                    "runtime": str(runtime),
                    "nvrtc": str(nvrtcs[cuda]),
                    "emitted": str(emitted),
                    "packages": ok_packages,
                }
                result = run_child("nvrtc", payload)
                log = cache / "logs" / f"nvrtc-slangtorch{version}-cuda{cuda}.json"
                log.write_text(json.dumps(result, indent=1))
                nvrtc_version = result.get("nvrtc_version", "?")
                cells = [compile_cell(emit, result, ok_packages, arch) for arch in ARCHS]
            gpu_cell, gpu_name = "-", "-"
            if gpu and local_cuda == cuda:
                log = cache / "logs" / f"gpu-slangtorch{version}-cuda{cuda}.txt"
                print(f"compat: GPU tests, slangtorch {version} x CUDA {cuda} ...", flush=True)
                helper = (
                    pkg_resources_site(cache, args.wheels) if needs_pkg_resources(site) else None
                )
                gpu_cell = run_gpu_tests([site, helper], nvrtcs[cuda], log)
                if helper is not None:
                    gpu_cell += " (with setuptools<81 for pkg_resources)"
                gpu_name = f"{device}, torch {torch.__version__}"
            row = [label, f"{cuda} ({nvrtc_version})", emit_text, *cells, today, gpu_cell, gpu_name]
            row.append(today if gpu_cell != "-" else "-")
            failed |= any(c.startswith("FAILED") for c in row)  # the nvrtc path or GPU tests
            pairs[(version, cuda)] = row
            print(
                f"compat: {version} x CUDA {cuda}: " + " | ".join(row[3:5] + [gpu_cell]), flush=True
            )
        if not args.no_recipe:
            with tempfile.TemporaryDirectory(prefix="compat-recipe-") as work:
                payload = {"runtime": str(runtime), "work": work, "modules": modules}
                recipe = run_child("recipe", payload, site)
                helper = None
                if needs_pkg_resources(site) and "pkg_resources" in json.dumps(recipe):
                    helper = pkg_resources_site(cache, args.wheels)
                    retry = run_child("recipe", payload, site, helper)
                    for step in ("shipped", "runtime"):
                        if step in retry:
                            retry[step]["note"] = "with setuptools<81"
                    recipe = retry
            log = cache / "logs" / f"recipe-slangtorch{version}.json"
            log.write_text(json.dumps(recipe, indent=1))
            row = [f"{version} ({slangc})", torch.__version__]
            row += [recipe_cell(recipe, "shipped"), recipe_cell(recipe, "runtime"), today]
            recipes[(version, torch.__version__)] = row
            print(
                f"compat: slangtorch {version} build with torch {torch.__version__}: {row[2]}; "
                f"through the runtime {row[3]}",
                flush=True,
            )
        # written after each version, so a run that is cut short still records what it checked
        write_markdown(args.output, pairs, recipes, context)
    write_markdown(args.output, pairs, recipes, context)
    print(f"compat: wrote {args.output} in {time.perf_counter() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
