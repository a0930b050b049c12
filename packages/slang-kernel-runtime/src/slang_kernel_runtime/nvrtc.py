"""NVRTC, the CUDA runtime compiler, through ctypes: find it, compile CUDA source to a cubin.

NVRTC compiles the CUDA source that slangc emits, as ONE program, to a cubin for exactly the
GPU's architecture (``-std=c++17 -default-device --gpu-architecture=sm_XY``, IEEE math, no fast
math). The emitted kernels are ``__global__`` C++ functions, not ``extern "C"``, so their
mangled names are looked up with ``nvrtcAddNameExpression`` / ``nvrtcGetLoweredName``. When the
NVRTC is older than the GPU architecture, it emits PTX for the newest architecture it knows and
the driver JIT-compiles it (``cuModuleLoadData``).

``find_nvrtc`` looks in ``$<PACKAGE_UPPER>_NVRTC_PATH``, in the ``nvidia`` wheel folders of every
site-packages folder (``nvidia/cuda_nvrtc/lib`` for CUDA 12 wheels, ``nvidia/cu13/lib`` for CUDA
13 wheels, preferring torch's CUDA major version), then ``$CUDA_HOME/lib64``,
``$CUDA_PATH/lib64``, ``/usr/local/cuda/lib64`` and the loader's search path. ``Nvrtc`` loads its
``libnvrtc-builtins`` sibling first (the CUDA 13 wheel needs it).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["NVRTC_OPTIONS", "find_nvrtc", "cuda_include_dirs", "Nvrtc", "nvrtc_version_text"]

NVRTC_OPTIONS = ("-std=c++17", "-default-device", "-w")


def _site_folders() -> list[Path]:
    folders = [Path(p) for p in sys.path if p]
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is not None and torch_spec.origin:
        folders.insert(0, Path(torch_spec.origin).parent.parent)
    seen, result = set(), []
    for folder in folders:
        key = str(folder.resolve()) if folder.exists() else None
        if key and key not in seen:
            seen.add(key)
            result.append(folder)
    return result


def _nvrtc_libs_in(folder: Path) -> list[Path]:
    names = glob.glob(str(folder / "libnvrtc.so*"))
    return sorted(Path(n) for n in names if "builtins" not in n and ".alt." not in n)


def env_prefix(package: str) -> str:
    """The prefix of a package's environment variables (``<PREFIX>_NVRTC_PATH``, ``_CACHE_DIR``,
    ``_LOADER``): its import name upper-cased, every non-word character an underscore."""
    return re.sub(r"\W", "_", package).upper()


def find_nvrtc(package: str = "") -> Path | None:
    """Path of a libnvrtc.so, or None. See the module docstring for the search order."""
    override = os.environ.get(f"{env_prefix(package)}_NVRTC_PATH") if package else None
    if override:
        return Path(override) if Path(override).is_file() else None
    cuda_major = None
    try:
        import torch

        cuda_major = (torch.version.cuda or "").split(".")[0] or None
    except ImportError:
        pass
    wheel_libs = []
    for site in _site_folders():
        for lib_folder in sorted(glob.glob(str(site / "nvidia" / "*" / "lib"))):
            wheel_libs.extend(_nvrtc_libs_in(Path(lib_folder)))
    if cuda_major:  # prefer the NVRTC of torch's CUDA major version
        wheel_libs.sort(key=lambda p: not p.name.startswith(f"libnvrtc.so.{cuda_major}"))
    if wheel_libs:
        return wheel_libs[0]
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for root in filter(None, roots):
        libs = _nvrtc_libs_in(Path(root) / "lib64")
        if libs:
            return libs[0]
    import ctypes.util

    name = ctypes.util.find_library("nvrtc")
    return Path(name) if name else None


def cuda_include_dirs(nvrtc_path: Path) -> list[str]:
    """Folders with the CUDA headers that Slang's prelude may include (cuda_fp16.h for half)."""
    candidates = [nvrtc_path.parent.parent / "include"]
    for site in _site_folders():
        candidates += [Path(p) for p in glob.glob(str(site / "nvidia" / "*" / "include"))]
    for root in filter(None, [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]):
        candidates.append(Path(root) / "include")
    found = []
    for folder in candidates:
        if (folder / "cuda_fp16.h").is_file() and str(folder) not in found:
            found.append(str(folder))
    return found[:1]


class Nvrtc:
    """The NVRTC library, through ctypes."""

    def __init__(self, path: Path):
        self.path = path
        for builtins in sorted(glob.glob(str(path.parent / "libnvrtc-builtins.so*"))):
            if ".alt." not in builtins:
                ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(str(path))
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        self.lib = lib
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)
        count = ctypes.c_int()
        self._check(lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)), "nvrtcGetNumSupportedArchs")
        archs = (ctypes.c_int * count.value)()
        self._check(lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
        self.archs = sorted(archs)

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            message = self.lib.nvrtcGetErrorString(rc).decode()
            raise RuntimeError(f"NVRTC {what} failed: {message} (code {rc})")

    def compile(
        self, source: str, names: Sequence[str], arch: int, include_dirs: Sequence[str] = ()
    ) -> tuple[bytes, str, dict[str, str], str]:
        """Compile CUDA source for sm_<arch>.

        Returns (binary, "cubin" or "ptx", {name: lowered name}, log). A cubin when NVRTC knows
        the architecture, else PTX for the newest architecture it knows below it (JIT-compiled
        by the driver at load).
        """
        lib = self.lib
        if arch in self.archs:
            kind, target = "cubin", f"sm_{arch}"
        else:
            older = [a for a in self.archs if a < arch]
            if not older:
                raise RuntimeError(
                    f"NVRTC {self.version[0]}.{self.version[1]} supports {self.archs}, none at or "
                    f"below the GPU's sm_{arch}"
                )
            kind, target = "ptx", f"compute_{older[-1]}"
        prog = ctypes.c_void_p()
        self._check(
            lib.nvrtcCreateProgram(
                ctypes.byref(prog), source.encode(), b"kernels.cu", 0, None, None
            ),
            "nvrtcCreateProgram",
        )
        try:
            for name in names:
                self._check(
                    lib.nvrtcAddNameExpression(prog, name.encode()), "nvrtcAddNameExpression"
                )
            options = [f"--gpu-architecture={target}", *NVRTC_OPTIONS]
            options += [f"-I{d}" for d in include_dirs]
            array = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            rc = lib.nvrtcCompileProgram(prog, len(options), array)
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log_buffer = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log_buffer)
            log = log_buffer.value.decode(errors="replace")
            if rc != 0:
                raise RuntimeError(
                    f"NVRTC failed to compile the CUDA source ({' '.join(options)}):\n{log}"
                )
            lowered = {}
            for name in names:
                pointer = ctypes.c_char_p()
                self._check(
                    lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(pointer)),
                    "nvrtcGetLoweredName",
                )
                lowered[name] = pointer.value.decode()
            get_size, get = (
                (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN)
                if kind == "cubin"
                else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
            )
            self._check(get_size(prog, ctypes.byref(size)), f"get {kind} size")
            binary = ctypes.create_string_buffer(size.value)
            self._check(get(prog, binary), f"get {kind}")
            return binary.raw, kind, lowered, log
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def nvrtc_version_text(path: Path) -> str:
    """The version ("major.minor") of the NVRTC at ``path``; "unknown" if it cannot be loaded."""
    try:
        major, minor = Nvrtc(path).version
        return f"{major}.{minor}"
    except (OSError, RuntimeError):
        return "unknown"
