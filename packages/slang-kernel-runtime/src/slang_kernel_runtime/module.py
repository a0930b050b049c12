"""`SlangModule`: one package's Slang kernels, compiled on first use, cached, launched by name.

How a kernel gets to the GPU (the default loader, ``nvrtc``):

1. ``slangc`` (`slangc.find_slangc`) compiles the ONE entry module of the package, which
   ``import``s its sibling .slang files, with ``-target cuda`` into one CUDA source holding every
   kernel. Default ``#line`` directives are kept, so NVRTC errors point at .slang lines; the
   default optimization level (``-O1``) is kept, as slangtorch does.
2. The parameter list of each kernel is read from the .slang sources and the CUDA source
   (`parsing.kernel_table`).
3. NVRTC compiles the CUDA source to a cubin for the GPU's architecture (`nvrtc.Nvrtc`). An
   NVRTC whose major version is newer than the driver's CUDA version is refused (its output
   would not load).
4. The CUDA driver loads the cubin into torch's context and launches kernels on torch's current
   stream (`driver.Driver`), with arguments packed by a per-kernel `abi.KernelLauncher`.

The fallback loader, ``slangtorch``, copies the .slang sources into the cache (marking each
``[CudaKernel]`` with ``[AutoPyBindCUDA]``), builds them with ``slangtorch.loadModule`` (see
`slangtorch_loader`) and launches with ``getattr(module, name)(**kwargs).launchRaw(blockSize=
block, gridSize=grid)``. It is chosen by ``$<PACKAGE_UPPER>_LOADER=slangtorch``, or
automatically, with a one-line warning, when no usable NVRTC is found. Both loaders validate
arguments the same way.

Cache: ``$<PACKAGE_UPPER>_CACHE_DIR``, else ``$XDG_CACHE_HOME/<package>``, else
``~/.cache/<package>``; never next to the installed sources. One folder per key,
``<loader>-sm<XY>-<hash>``, where the hash covers every .slang file next to the entry module
(names and contents), the slangtorch version and the size of its slangc, the loader, the NVRTC
library (path and size), torch and its CUDA version, the GPU architecture and the runtime's
format version. The nvrtc folder holds ``kernels.cu`` (the CUDA source, for debugging),
``kernels.cubin`` or ``kernels.ptx`` and ``kernels.json`` (parameter lists, mangled names,
versions). It is made by `cache.build_cached` (complete or absent, one builder at a time).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .abi import KernelLauncher, check_arguments, check_launch_dims, quick_launch_dims
from .cache import build_cached, disk_usage, file_lock, write_atomic
from .driver import Driver
from .nvrtc import (
    NVRTC_OPTIONS,
    Nvrtc,
    cuda_include_dirs,
    env_prefix,
    find_nvrtc,
    nvrtc_version_text,
)
from .parsing import Param, kernel_table, table_from_json, table_to_json
from .slangc import find_slangc, slangc_version, slangtorch_version
from .slangtorch_loader import add_autopybind, slangtorch_load

__all__ = ["FORMAT_VERSION", "LOADERS", "slang_available", "SlangModule"]

FORMAT_VERSION = 1
LOADERS = ("nvrtc", "slangtorch")


def slang_available() -> tuple[bool, str]:
    """Whether the Slang kernels can run here: (True, "") or (False, why not)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.version.cuda:
        return False, (
            f"no CUDA device: torch {torch.__version__} is a CPU-only build; install a CUDA "
            "build of torch to use the Slang kernels"
        )
    if not torch.cuda.is_available():
        return False, (
            f"no CUDA device (torch.cuda.is_available() is False; torch {torch.__version__} is "
            f"built for CUDA {torch.version.cuda}): check the NVIDIA driver and "
            "CUDA_VISIBLE_DEVICES"
        )
    if find_slangc() is None:
        return False, "slangc not found: install slangtorch (pip install slangtorch)"
    return True, ""


class SlangModule:
    """The Slang kernels of one package: compiled on first use, cached on disk, launched by name.

    package: the Python package name; names the cache folder, the log prefix and the
        environment variables ``<PACKAGE_UPPER>_LOADER`` (nvrtc | slangtorch),
        ``<PACKAGE_UPPER>_CACHE_DIR`` and ``<PACKAGE_UPPER>_NVRTC_PATH``.
    entry: the package's one entry .slang module; it may ``import`` .slang files next to it.
        Every .slang file in its folder (recursively) is part of the cache key.
    """

    def __init__(self, package: str, entry: str | os.PathLike):
        self.package = package
        self.entry = Path(entry)
        self._lock = threading.Lock()
        self._loader: str | None = None
        self._nvrtc_path: Path | None = None
        self._table: dict[str, list[Param]] | None = None
        self._info: dict[str, Any] = {}
        self._functions: dict[int, dict[str, Any]] = {}  # nvrtc: device -> {name: CUfunction}
        self._launchers: dict[str, KernelLauncher] = {}  # nvrtc: name -> argument packer
        self._slangtorch_module: Any = None
        self._torch: Any = None
        self._driver: Driver | None = None
        self._raw_stream: Callable[[int], int] | None = None

    # -- paths and keys ------------------------------------------------------------------------

    @property
    def loader(self) -> str | None:
        """The loader in use ("nvrtc" or "slangtorch"); None until the kernels are loaded."""
        return self._loader

    @property
    def env_prefix(self) -> str:
        return env_prefix(self.package)

    @property
    def cache_dir(self) -> Path:
        """``$<PACKAGE_UPPER>_CACHE_DIR``, else ``$XDG_CACHE_HOME/<package>``, else ~/.cache."""
        override = os.environ.get(f"{self.env_prefix}_CACHE_DIR")
        if override:
            return Path(override).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base).expanduser() / self.package

    def sources(self) -> dict[str, str]:
        """Every .slang file next to the entry module: {relative path: text}."""
        root = self.entry.parent
        return {
            p.relative_to(root).as_posix(): p.read_text()
            for p in sorted(root.rglob("*.slang"))
            if ".slangtorch_cache" not in p.parts
        }

    def cache_key(self, loader: str, arch: int, nvrtc_path: Path | None = None) -> str:
        """Hex digest over the sources, tool versions, loader and GPU architecture."""
        import torch

        slangc = find_slangc()
        parts = [
            f"format={FORMAT_VERSION}",
            f"entry={self.entry.name}",
            f"slangtorch={slangtorch_version()}",
            f"slangc_size={slangc.stat().st_size if slangc else None}",
            f"loader={loader}",
            f"torch={torch.__version__}",
            f"cuda={torch.version.cuda}",
            f"arch={arch}",
            f"nvrtc_options={NVRTC_OPTIONS}",
        ]
        if nvrtc_path is not None:
            parts.append(f"nvrtc={nvrtc_path}:{nvrtc_path.stat().st_size}")
        digest = hashlib.sha256("\n".join(parts).encode())
        for name, text in self.sources().items():
            digest.update(f"\n--- {name}\n".encode())
            digest.update(text.encode())
        return digest.hexdigest()

    def _folder(self, loader: str, arch: int, nvrtc_path: Path | None) -> Path:
        key = self.cache_key(loader, arch, nvrtc_path)
        return self.cache_dir / f"{loader}-sm{arch}-{key[:20]}"

    # -- public helpers ------------------------------------------------------------------------

    def precompile(self) -> Path:
        """Compile (or find in the cache) and load the kernels now; return the cache folder."""
        self._ensure_loaded(self._device_index(None))
        return self._info["folder"]

    def clear_cache(self) -> None:
        """Delete this package's cache folder (all keys, all loaders)."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def kernels(self) -> dict[str, list[Param]]:
        """{kernel name: parameters}; compiles on first use."""
        self._ensure_loaded(self._device_index(None))
        assert self._table is not None
        return dict(self._table)

    def compile_only(
        self,
        arch: int,
        nvrtc_path: str | os.PathLike | None = None,
        output: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        """Compile every kernel for ``sm_<arch>`` with slangc and NVRTC; no GPU needed.

        A check: nothing is cached or loaded. nvrtc_path: the libnvrtc to use (default: the one
        the nvrtc loader would use). output: a folder that keeps ``kernels.cu``, the binary and
        ``kernels.json`` (default: a temporary folder, removed). Returns the ``kernels.json``
        dict: ``kernels`` (the parameter table), ``binary`` ("cubin" or "ptx"),
        ``binary_bytes``, ``slangc`` and ``nvrtc`` (versions), ``slangc_s`` and ``nvrtc_s``
        (seconds). Raises RuntimeError with the compiler's message, the versions and what to do.
        """
        path = Path(nvrtc_path) if nvrtc_path else find_nvrtc(self.package)
        if path is None or not path.is_file():
            where = path or os.environ.get(f"{self.env_prefix}_NVRTC_PATH")
            raise RuntimeError(
                f"{self.package}: NVRTC (libnvrtc.so) not found{f' at {where}' if where else ''}; "
                "pip install nvidia-cuda-nvrtc (CUDA 13) or nvidia-cuda-nvrtc-cu12 (CUDA 12), or "
                f"set {self.env_prefix}_NVRTC_PATH"
            )
        with tempfile.TemporaryDirectory(prefix=f"{self.package}-check-") as tmp:
            work = Path(output) if output is not None else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            self._build_nvrtc(work, int(arch), path)
            return json.loads((work / "kernels.json").read_text())

    def cache_entries(self) -> list[dict[str, Any]]:
        """What the cache folder holds, one dict per entry, sorted by name.

        Keys: ``name``, ``path``, ``kind`` ("build": a complete build; "incomplete": a build
        folder without its kernels.json; "temporary": left by a build that was killed, removed
        by the next build of that key; "lock": a lock file, harmless), ``loader`` and ``arch``
        (from the name; None when unknown), ``bytes`` (on disk), ``modified`` (UNIX time), and
        for complete builds ``kernels`` (how many), ``slangc`` and ``nvrtc`` (versions).
        """
        root = self.cache_dir
        if not root.is_dir():
            return []
        entries = []
        for path in sorted(root.iterdir()):
            match = re.match(r"^\.?(nvrtc|slangtorch)-sm(\d+)-", path.name)
            entry: dict[str, Any] = {
                "name": path.name,
                "path": path,
                "loader": match.group(1) if match else None,
                "arch": int(match.group(2)) if match else None,
                "bytes": disk_usage(path),
                "modified": path.stat().st_mtime,
            }
            if path.is_file():
                entry["kind"] = "lock" if path.suffix == ".lock" else "file"
            elif path.name.startswith("."):
                entry["kind"] = "temporary"
            elif (path / "kernels.json").is_file():
                entry["kind"] = "build"
                try:
                    info = json.loads((path / "kernels.json").read_text())
                except ValueError:
                    info = {}
                entry["kernels"] = len(info.get("kernels", {}))
                entry["slangc"] = info.get("slangc")
                entry["nvrtc"] = info.get("nvrtc")
            else:
                entry["kind"] = "incomplete"
            entries.append(entry)
        return entries

    def toolchain(self) -> dict[str, Any]:
        """The tools this module would compile and run with, without compiling anything.

        Never raises for a missing GPU, driver or tool: the value then says what is missing.
        Keys: ``torch``, ``torch_cuda`` (None for a CPU build), ``driver_cuda`` ((major,
        minor) or None), ``driver_note``, ``gpu`` (name or None), ``arch`` (e.g. 90 or None),
        ``slangtorch``, ``slangc`` (path or None), ``slangc_version``, ``nvrtc`` (path or None),
        ``nvrtc_version`` ((major, minor) or None), ``nvrtc_archs``, ``loader`` (what
        ``$<PACKAGE>_LOADER`` asks for), ``loader_used`` (what would run: "nvrtc",
        "slangtorch" or None when the kernels cannot run here) and ``loader_note`` (why).
        """
        info: dict[str, Any] = {"torch": None, "torch_cuda": None, "gpu": None, "arch": None}
        try:
            import torch

            info["torch"], info["torch_cuda"] = torch.__version__, torch.version.cuda
            if torch.cuda.is_available():
                info["gpu"] = torch.cuda.get_device_name(0)
                major, minor = torch.cuda.get_device_capability(0)
                info["arch"] = major * 10 + minor
        except ImportError:
            pass
        info["driver_cuda"], info["driver_note"] = None, ""
        try:
            info["driver_cuda"] = Driver.get().version
        except OSError:
            info["driver_note"] = "no NVIDIA driver (libcuda.so.1 not found)"
        except RuntimeError as error:
            info["driver_note"] = str(error)
        slangc = find_slangc()
        info["slangtorch"] = slangtorch_version() if slangc else None
        info["slangc"] = slangc
        info["slangc_version"] = slangc_version(slangc) if slangc else None
        nvrtc_path = find_nvrtc(self.package)
        info["nvrtc"], info["nvrtc_version"], info["nvrtc_archs"] = nvrtc_path, None, []
        if nvrtc_path is not None:
            try:
                nvrtc = Nvrtc(nvrtc_path)
                info["nvrtc_version"], info["nvrtc_archs"] = nvrtc.version, nvrtc.archs
            except (OSError, RuntimeError) as error:
                info["nvrtc_note"] = f"cannot load {nvrtc_path}: {error}"
        variable = f"{self.env_prefix}_LOADER"
        info["loader"] = os.environ.get(variable, "").strip().lower() or "nvrtc"
        available, why = slang_available()
        if not available:
            info["loader_used"], info["loader_note"] = None, why
        elif info["loader"] not in LOADERS:
            info["loader_used"] = None
            info["loader_note"] = f"{variable}={info['loader']!r} is not one of {LOADERS}"
        elif info["loader"] == "slangtorch":
            info["loader_used"], info["loader_note"] = "slangtorch", f"asked for by {variable}"
        elif info["nvrtc_version"] is None:
            info["loader_used"] = "slangtorch"
            info["loader_note"] = "fallback: no usable NVRTC found"
        elif info["driver_cuda"] and info["nvrtc_version"][0] > info["driver_cuda"][0]:
            info["loader_used"] = "slangtorch"
            info["loader_note"] = "fallback: the NVRTC is newer than the driver's CUDA"
        else:
            info["loader_used"], info["loader_note"] = "nvrtc", "default"
        return info

    # -- launching -----------------------------------------------------------------------------

    def launch(self, name: str, grid: Sequence[int], block: Sequence[int], **kwargs: Any) -> None:
        """Run kernel ``name`` on torch's current stream with keyword arguments by parameter name.

        grid, block: 3 ints each (blocks per grid, threads per block). A grid with a zero
        dimension is a no-op after the arguments are checked. Asynchronous; returns None.
        The nvrtc loader packs arguments through a per-kernel ``KernelLauncher`` (layout and
        buffers made on the kernel's first launch), so a launch costs a few microseconds of
        Python.
        """
        launcher = self._launchers.get(name)
        if launcher is None:
            launcher = self._first_launch(name, grid, block, kwargs)
            if launcher is None:  # the slangtorch loader launched it
                return
        with launcher.lock:
            device = launcher.pack(kwargs)
            if not quick_launch_dims(name, grid, block):
                return
            torch = self._torch
            if device < 0:
                device = torch.cuda.current_device()
            functions = self._functions.get(device)
            if functions is None:
                self._ensure_loaded(device)
                functions = self._functions[device]
            driver = self._driver
            driver.make_current(device)
            driver.launch_pointers(
                functions[name], grid, block, self._raw_stream(device), launcher.pointers, name
            )

    def _first_launch(
        self, name: str, grid: Sequence[int], block: Sequence[int], kwargs: Mapping[str, Any]
    ) -> KernelLauncher | None:
        """Load the kernels, check the name; slangtorch: launch, return None; else a launcher."""
        grid, block = tuple(grid), tuple(block)
        non_empty = check_launch_dims(name, grid, block)
        device = self._device_index(kwargs)
        self._ensure_loaded(device)
        assert self._table is not None
        if name not in self._table:
            raise ValueError(
                f"{self.package}: no kernel {name!r}; kernels are {', '.join(sorted(self._table))}"
            )
        params = self._table[name]
        if self._loader == "slangtorch":
            check_arguments(name, params, kwargs)
            if non_empty:
                args = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
                module = self._slangtorch_module
                getattr(module, name)(**args).launchRaw(blockSize=block, gridSize=grid)
            return None
        import torch

        self._torch = torch
        self._driver = Driver.get()
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        if raw is not None:
            self._raw_stream = raw
        else:  # pragma: no cover - older torch
            self._raw_stream = lambda device: torch.cuda.current_stream(device).cuda_stream
        with self._lock:
            return self._launchers.setdefault(name, KernelLauncher(name, params))

    # -- loading -------------------------------------------------------------------------------

    @staticmethod
    def _device_index(kwargs: Mapping[str, Any] | None) -> int:
        import torch

        for value in (kwargs or {}).values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                device = getattr(item, "device", None)
                if getattr(device, "type", None) == "cuda":
                    return device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.current_device()

    def _choose_loader(self) -> str:
        variable = f"{self.env_prefix}_LOADER"
        loader = os.environ.get(variable, "nvrtc").strip().lower() or "nvrtc"
        if loader not in LOADERS:
            raise ValueError(f"{variable} must be one of {', '.join(LOADERS)}, got {loader!r}")
        if loader == "nvrtc":
            self._nvrtc_path = find_nvrtc(self.package)
            problem = None
            if self._nvrtc_path is None:
                problem = "NVRTC (libnvrtc.so) not found"
            else:
                driver = Driver.get()
                major = re.search(r"\.so\.(\d+)", self._nvrtc_path.name)
                if major and int(major.group(1)) > driver.version[0]:
                    problem = (
                        f"{self._nvrtc_path} is newer than the driver's CUDA "
                        f"{driver.version[0]}.{driver.version[1]}"
                    )
            if problem:
                warnings.warn(
                    f"{self.package}: {problem}; using the slower slangtorch loader (set "
                    f"{self.env_prefix}_NVRTC_PATH, or pip install nvidia-cuda-nvrtc matching "
                    "your CUDA)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                loader = "slangtorch"
        return loader

    def _ensure_loaded(self, device: int) -> None:
        if device in self._functions or (self._slangtorch_module is not None):
            return
        with self._lock:
            if device in self._functions or self._slangtorch_module is not None:
                return
            import torch

            if self._loader is None:
                self._loader = self._choose_loader()
            major, minor = torch.cuda.get_device_capability(device)
            arch = major * 10 + minor
            nvrtc_path = self._nvrtc_path if self._loader == "nvrtc" else None
            folder = self._folder(self._loader, arch, nvrtc_path)
            started = time.perf_counter()

            def announce() -> None:
                print(
                    f"{self.package}: compiling kernels (first use only)...",
                    file=sys.stderr,
                    flush=True,
                )

            def waiting() -> None:
                print(
                    f"{self.package}: waiting for another process compiling the kernels "
                    f"({folder}.lock)",
                    file=sys.stderr,
                    flush=True,
                )

            if self._loader == "nvrtc":
                built = build_cached(
                    folder,
                    lambda tmp: self._build_nvrtc(tmp, arch, nvrtc_path),
                    on_build=announce,
                    on_wait=waiting,
                )
                info = json.loads((folder / "kernels.json").read_text())
                binary = (folder / f"kernels.{info['binary']}").read_bytes()
                if info["binary"] == "ptx":
                    binary += b"\0"
                try:
                    functions = Driver.get().load(device, binary, info["lowered"])
                except RuntimeError as error:
                    raise self._compile_error(arch, f"loading {folder}: {error}") from error
                self._functions[device] = functions
            else:
                built = self._load_slangtorch(folder, arch, announce, waiting)
                info = json.loads((folder / "kernels.json").read_text())
            self._table = table_from_json(info["kernels"])
            self._info = {**info, "folder": folder}
            if built:
                print(
                    f"{self.package}: kernels compiled in {time.perf_counter() - started:.1f} s "
                    f"(cached in {folder})",
                    file=sys.stderr,
                    flush=True,
                )

    def _versions(self, arch: int, loader: str | None, nvrtc_path: Path | None) -> str:
        import torch

        slangc = find_slangc()
        parts = [
            f"slangtorch {slangtorch_version()} (slangc {slangc_version(slangc)})",
            f"torch {torch.__version__}",
            f"CUDA {torch.version.cuda}",
            f"GPU sm_{arch}",
            f"loader {loader}",
        ]
        if loader == "nvrtc" and nvrtc_path is not None:
            parts.append(f"NVRTC {nvrtc_version_text(nvrtc_path)} ({nvrtc_path})")
        return ", ".join(parts)

    def _compile_error(
        self, arch: int, message: str, loader: str | None = None, nvrtc_path: Path | None = None
    ) -> RuntimeError:
        loader = loader or self._loader
        nvrtc_path = nvrtc_path or self._nvrtc_path
        other = "slangtorch" if loader == "nvrtc" else "nvrtc"
        return RuntimeError(
            f"{self.package}: compiling the Slang kernels failed.\n{message.rstrip()}\n"
            f"Versions: {self._versions(arch, loader, nvrtc_path)}.\n"
            f"What to do: if you edited the .slang files, fix the error above; otherwise this "
            f"toolchain pair may be unsupported: try {self.env_prefix}_LOADER={other}, another "
            f"slangtorch version, or the reference backend (backend='reference'), and report the "
            "message above with the versions."
        )

    def emit_cuda(self, work: Path) -> tuple[str, dict[str, list[Param]], str]:
        """Run slangc on the entry module; return (CUDA source, kernel table, slangc version)."""
        slangc = find_slangc()
        if slangc is None:
            raise RuntimeError(f"{self.package}: slangc not found; pip install slangtorch")
        output = work / "kernels.cu"
        command = [str(slangc), str(self.entry), "-target", "cuda", "-o", str(output)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"slangc failed ({' '.join(command)}):\n{result.stderr}")
        source = output.read_text()
        return source, kernel_table(self.sources(), source), slangc_version(slangc)

    def _build_nvrtc(self, tmp: Path, arch: int, nvrtc_path: Path) -> None:
        try:
            started = time.perf_counter()
            source, table, slangc_version = self.emit_cuda(tmp)
            emitted = time.perf_counter()
            nvrtc = Nvrtc(nvrtc_path)
            binary, kind, lowered, _ = nvrtc.compile(
                source, list(table), arch, cuda_include_dirs(nvrtc_path)
            )
            compiled = time.perf_counter()
        except (RuntimeError, OSError) as error:
            raise self._compile_error(arch, str(error), "nvrtc", nvrtc_path) from error
        (tmp / f"kernels.{kind}").write_bytes(binary)
        info = {
            "kernels": table_to_json(table),
            "lowered": lowered,
            "binary": kind,
            "binary_bytes": len(binary),
            "arch": arch,
            "slangc": slangc_version,
            "nvrtc": f"{nvrtc.version[0]}.{nvrtc.version[1]}",
            "nvrtc_path": str(nvrtc_path),
            "slangc_s": round(emitted - started, 3),
            "nvrtc_s": round(compiled - emitted, 3),
        }
        (tmp / "kernels.json").write_text(json.dumps(info, indent=1))

    def _load_slangtorch(self, folder: Path, arch: int, announce, waiting) -> bool:
        """Build/load through slangtorch.loadModule from a copy of the sources in the cache."""
        import slangtorch

        built = False
        if not (folder / "kernels.json").is_file():
            with file_lock(folder.with_name(folder.name + ".lock"), on_wait=waiting):
                if not (folder / "kernels.json").is_file():
                    announce()
                    built = True
                    src = folder / "src"
                    shutil.rmtree(folder, ignore_errors=True)
                    for name, text in self.sources().items():
                        (src / name).parent.mkdir(parents=True, exist_ok=True)
                        (src / name).write_text(add_autopybind(text))
                    try:
                        source, table, slangc_version = self.emit_cuda(folder)
                        self._slangtorch_module = slangtorch_load(slangtorch, src / self.entry.name)
                    except Exception as error:
                        # no half-built folder stays behind: the next use starts clean
                        shutil.rmtree(folder, ignore_errors=True)
                        raise self._compile_error(arch, str(error)) from error
                    info = {"kernels": table_to_json(table), "slangc": slangc_version}
                    write_atomic(folder / "kernels.json", json.dumps(info, indent=1).encode())
                    return built
        self._slangtorch_module = slangtorch_load(slangtorch, folder / "src" / self.entry.name)
        return built
