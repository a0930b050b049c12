"""What ``meshtryoshka-train versions | doctor | precompile | clear-cache`` report (the
commands themselves are in `meshtryoshka_train.cli.doctor`).

``versions`` prints the versions of Python, torch, CUDA, slangtorch and the packages.
``doctor`` prints torch, CUDA (torch's build and the driver's), the GPU and its compute
capability, slangtorch, slangc and NVRTC, each kernel package's cache (where, what it holds)
and loader, then flags combinations known to fail or to be slow, each with a fix. The rules
come from the compatibility matrix (``nox -s compat``, docs/compat.md) and the kernel runtime's
behaviour. It never needs a GPU: on a CPU machine it says so.

``precompile`` compiles (or finds in the cache) the kernels of both kernel packages on this GPU;
``clear-cache`` deletes their cached builds. Both go through each package's public hook
``<package>.compilation``.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

KERNEL_PACKAGES = ("slang_marching_cubes", "slang_rasterizer")

#: Oldest slangtorch the compatibility matrix covers.
OLDEST_TESTED_SLANGTORCH = (1, 3, 7)
#: slangtorch versions whose torch-extension build calls torch's private
#: ``_write_ninja_file_and_build_library`` without the SYCL arguments that torch 2.7 added: the
#: slangtorch loader fails there with a TypeError (found by the compat matrix; 1.3.11 is fine).
OLD_EXTENSION_API_BEFORE = (1, 3, 11)
#: Newest slangtorch known to force -std=c++17 on its build (shader-slang/slang-torch#50).
FORCES_CXX17_UP_TO = (1, 3, 22)


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's verdict. level: "ok", "note" or "problem"."""

    level: str
    text: str
    fix: str = ""


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    numbers = re.findall(r"\d+", text.split("+")[0])
    return tuple(int(n) for n in numbers[:3]) if numbers else None


def _cuda_wheel(torch_cuda: str | None) -> str:
    major = (torch_cuda or "").split(".")[0]
    return "nvidia-cuda-nvrtc-cu12" if major == "12" else "nvidia-cuda-nvrtc"


def check_toolchain(tool: Mapping[str, Any]) -> list[Finding]:
    """Known-bad or slow combinations in a ``toolchain()`` dict, each with a fix.

    Pure function of the dict (tested with made-up machines). Returns at least one Finding.
    """
    found: list[Finding] = []
    torch_version = _version_tuple(tool.get("torch"))
    slangtorch = _version_tuple(tool.get("slangtorch"))
    arch, archs = tool.get("arch"), tool.get("nvrtc_archs") or []
    nvrtc, driver = tool.get("nvrtc_version"), tool.get("driver_cuda")
    loader = tool.get("loader_used")

    if tool.get("torch") is None:
        return [Finding("problem", "torch is not installed", "pip install torch")]
    if not tool.get("torch_cuda"):
        found.append(
            Finding(
                "problem",
                f"torch {tool['torch']} is a CPU-only build: the kernels fall back to the slow "
                "PyTorch reference",
                "install a CUDA build of torch, e.g. pip install torch --index-url "
                "https://download.pytorch.org/whl/cu128",
            )
        )
    elif arch is None:
        found.append(
            Finding(
                "problem",
                f"torch is built for CUDA {tool['torch_cuda']} but sees no GPU "
                f"({tool.get('driver_note') or 'torch.cuda.is_available() is False'})",
                "check nvidia-smi, the NVIDIA driver and CUDA_VISIBLE_DEVICES",
            )
        )
    if slangtorch is None:
        found.append(
            Finding(
                "problem",
                "slangtorch is not installed: no slangc, the Slang kernels cannot be compiled",
                "pip install slangtorch",
            )
        )
    elif slangtorch < OLDEST_TESTED_SLANGTORCH:
        found.append(
            Finding(
                "problem",
                f"slangtorch {tool['slangtorch']} is older than the oldest tested (1.3.7)",
                "pip install -U slangtorch",
            )
        )
    if nvrtc is None and tool.get("torch_cuda"):
        found.append(
            Finding(
                "problem",
                "no NVRTC found: kernels build through slangtorch's torch extension instead "
                "(20-30 s per module, needs nvcc and a host compiler)",
                f"pip install {_cuda_wheel(tool.get('torch_cuda'))} (the NVRTC of your CUDA), "
                "or set <PACKAGE>_NVRTC_PATH to a libnvrtc.so",
            )
        )
    if nvrtc is not None and driver and nvrtc[0] > driver[0]:
        found.append(
            Finding(
                "problem",
                f"NVRTC {nvrtc[0]}.{nvrtc[1]} is newer than the driver's CUDA "
                f"{driver[0]}.{driver[1]}: its output would not load, the slow slangtorch loader "
                "is used",
                f"update the NVIDIA driver, or pip install the NVRTC of CUDA {driver[0]} "
                f"({'nvidia-cuda-nvrtc-cu12' if driver[0] == 12 else 'nvidia-cuda-nvrtc'})",
            )
        )
    if nvrtc is not None and arch is not None and archs:
        if arch < min(archs):
            found.append(
                Finding(
                    "problem",
                    f"NVRTC {nvrtc[0]}.{nvrtc[1]} does not support this GPU (sm_{arch}; it "
                    f"knows sm_{min(archs)} to sm_{max(archs)}): compiling fails",
                    "pip install nvidia-cuda-nvrtc-cu12 (CUDA 12 still supports older GPUs) and "
                    "set <PACKAGE>_NVRTC_PATH to its libnvrtc.so.12",
                )
            )
        elif arch not in archs:
            found.append(
                Finding(
                    "note",
                    f"NVRTC {nvrtc[0]}.{nvrtc[1]} is older than this GPU (sm_{arch}): kernels are "
                    f"compiled to PTX for sm_{max(a for a in archs if a < arch)} and JIT-compiled "
                    "by the driver on first load (works, slower first start)",
                    "pip install a newer nvidia-cuda-nvrtc that knows sm_" + str(arch),
                )
            )
    if tool.get("slangtorch_needs_pkg_resources") and not tool.get("pkg_resources"):
        problem = loader == "slangtorch"
        found.append(
            Finding(
                "problem" if problem else "note",
                f"slangtorch {tool['slangtorch']} imports pkg_resources, which setuptools >= 81 "
                "no longer has: "
                + (
                    "the slangtorch loader cannot even import"
                    if problem
                    else "only the slangtorch fallback loader would fail (nvrtc does not import it)"
                ),
                "pip install -U slangtorch (1.3.22 does not need it), or pip install "
                "'setuptools<81'",
            )
        )
    if loader == "slangtorch" and slangtorch is not None and torch_version is not None:
        if slangtorch < OLD_EXTENSION_API_BEFORE and torch_version >= (2, 7):
            found.append(
                Finding(
                    "problem",
                    f"slangtorch {tool['slangtorch']} cannot build extensions with torch "
                    f"{tool['torch']} (TypeError in torch's extension builder, torch >= 2.7)",
                    "pip install 'slangtorch>=1.3.11', or use the default nvrtc loader",
                )
            )
        if slangtorch <= FORCES_CXX17_UP_TO and torch_version >= (2, 13):
            found.append(
                Finding(
                    "note",
                    f"slangtorch {tool['slangtorch']} forces C++17 and torch {tool['torch']} "
                    "needs C++20 (slang-torch#50): the kernel runtime drops the forced flag, "
                    "so the slangtorch loader still builds",
                )
            )
    if not any(f.level == "problem" for f in found):
        found.insert(0, Finding("ok", f"kernels compile and run here with the {loader} loader"))
    return found


def slangtorch_needs_pkg_resources() -> bool:
    """Whether the installed slangtorch imports pkg_resources (1.3.11 and older do)."""
    spec = importlib.util.find_spec("slangtorch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        source = Path(folder) / "slangtorch.py"
        if source.is_file() and "import pkg_resources" in source.read_text():
            return True
    return False


def machine_facts(hook: ModuleType) -> dict[str, Any]:
    """The hook's ``toolchain()`` plus what the doctor's rules also look at."""
    tool = dict(hook.toolchain())
    tool["slangtorch_needs_pkg_resources"] = slangtorch_needs_pkg_resources()
    tool["pkg_resources"] = importlib.util.find_spec("pkg_resources") is not None
    return tool


def kernel_hooks() -> tuple[list[ModuleType], list[str]]:
    """The ``<package>.compilation`` hooks of the installed kernel packages, and import errors."""
    hooks, errors = [], []
    for name in KERNEL_PACKAGES:
        try:
            hooks.append(importlib.import_module(f"{name}.compilation"))
        except ImportError as error:
            errors.append(f"{name}: cannot import its compilation hook ({error})")
    return hooks, errors


#: the distributions `versions` reports
PACKAGES = ("slang-marching-cubes", "slang-rasterizer", "meshtryoshka-data", "meshtryoshka-train")


def installed_version(distribution: str) -> str:
    """The installed version of `distribution` (``_`` or ``-`` alike), or "not installed"."""
    try:
        return version(distribution.replace("_", "-"))
    except PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Versions of Python, torch, CUDA, slangtorch and the Meshtryoshka packages."""
    found = {"python": platform.python_version()}
    try:
        import torch

        found["torch"] = torch.__version__
        found["cuda (torch build)"] = torch.version.cuda or "none (CPU build)"
        found["cuda device"] = (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        )
    except ImportError:
        found["torch"] = "not installed"
    found["slangtorch"] = installed_version("slangtorch")
    for name in PACKAGES:
        found[name] = installed_version(name)
    return found
