"""`KernelPackage`: everything a kernel package gets from the runtime, made by one factory.

A kernel package makes one `KernelPackage` from its name and its entry .slang module, in its
public ``<package>.compilation`` module, and exposes the hook there::

    KERNELS = KernelPackage("slang_rasterizer", Path(__file__).parent / "slang/rasterizer.slang")
    __all__ = ["KERNELS", *HOOK]
    __getattr__ = KERNELS.hook_attribute

It gets:

- the compilation hook that tools find by name (``meshtryoshka-train doctor``, ``nox -s
  compat``, ``tools/bench_compile.py``): ``PACKAGE``, ``ENTRY``, ``entry_modules()``,
  ``slang_module()``, ``precompile()``, ``clear_cache()``, ``cache_dir()``,
  ``cache_entries()``, ``toolchain()``, ``describe_cache()``, ``describe_toolchain()`` and
  ``main(argv)`` (``python -m <package> precompile | check | clear-cache | info``);
- the process's one `SlangModule` of the package (``slang_module()``), which both the hook and
  the package's Slang ops use, so ``precompile()`` loads what the ops launch;
- the backend rule shared by every op of both kernel packages (``resolve_backend``).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from . import cli
from .module import SlangModule, slang_available

__all__ = ["Backend", "BACKENDS", "HOOK", "KernelPackage"]

Backend = Literal["auto", "reference", "slang"]
BACKENDS = ("auto", "reference", "slang")

#: The names of a package's compilation hook (module attributes of ``<package>.compilation``).
HOOK = (
    "PACKAGE",
    "ENTRY",
    "entry_modules",
    "slang_module",
    "precompile",
    "clear_cache",
    "cache_dir",
    "cache_entries",
    "toolchain",
    "describe_cache",
    "describe_toolchain",
    "main",
)


class KernelPackage:
    """The runtime's view of one kernel package.

    Args:
        package: the import name, e.g. ``"slang_rasterizer"``. It names the cache folder, the
            log prefix and the environment variables ``<PACKAGE_UPPER>_CACHE_DIR``,
            ``<PACKAGE_UPPER>_LOADER`` and ``<PACKAGE_UPPER>_NVRTC_PATH`` (see `SlangModule`).
        entry: the package's one entry .slang module (it imports the other .slang files).
    """

    def __init__(self, package: str, entry: str | os.PathLike):
        self.PACKAGE = package
        self.ENTRY = Path(entry)
        self._lock = threading.Lock()
        self._module: SlangModule | None = None
        self._available: tuple[bool, str] | None = None
        self._noticed: set[str] = set()

    def __repr__(self) -> str:
        return f"KernelPackage({self.PACKAGE!r}, {str(self.ENTRY)!r})"

    def hook_attribute(self, name: str) -> Any:
        """A hook name's value, as the module ``__getattr__`` of ``<package>.compilation``."""
        if name in HOOK:
            return getattr(self, name)
        raise AttributeError(f"module '{self.PACKAGE}.compilation' has no attribute {name!r}")

    # -- the compilation hook -------------------------------------------------------------------

    def entry_modules(self) -> list[Path]:
        """The Slang entry modules this installation ships: ``[ENTRY]``, or ``[]`` without it."""
        return [self.ENTRY] if self.ENTRY.is_file() else []

    def slang_module(self) -> SlangModule:
        """The process-wide `SlangModule` of the package's kernels (compiled on first use)."""
        with self._lock:
            if self._module is None:
                self._module = SlangModule(package=self.PACKAGE, entry=self.ENTRY)
            return self._module

    def precompile(self) -> Path | None:
        """Compile (or find in the cache) and load the kernels on the current CUDA device.

        Returns the cache folder, or None when this version ships no kernels. Raises
        RuntimeError (compiler message, versions, what to do) on a compile failure; needs a CUDA
        device.
        """
        return self.slang_module().precompile() if self.entry_modules() else None

    def clear_cache(self) -> None:
        """Delete every cached build of the package (all loaders, GPU architectures, versions)."""
        self.slang_module().clear_cache()

    def cache_dir(self) -> Path:
        """The package's kernel cache folder (it may not exist yet)."""
        return self.slang_module().cache_dir

    def cache_entries(self) -> list[dict[str, Any]]:
        """What the cache holds; see `SlangModule.cache_entries`."""
        return self.slang_module().cache_entries()

    def toolchain(self) -> dict[str, Any]:
        """torch, driver, GPU, slangc and NVRTC versions and the loader; never raises."""
        return self.slang_module().toolchain()

    def describe_cache(self) -> list[str]:
        """Printable lines: the cache folder and its entries."""
        return cli.describe_cache(self.slang_module())

    def describe_toolchain(self) -> list[str]:
        """Printable lines for ``toolchain()``."""
        return cli.describe_toolchain(self.toolchain())

    def main(self, argv: Sequence[str] | None = None) -> int:
        """``python -m <package> precompile | check | clear-cache | info``; the exit code."""
        return cli.command_line(self.slang_module(), argv)

    # -- backends ---------------------------------------------------------------------------------

    def slang_available(self) -> tuple[bool, str]:
        """``(True, "")`` when the Slang kernels can run here, else ``(False, reason)``.

        Asked once per process (the answer does not change), so ``backend="auto"`` costs
        nothing per call.
        """
        if self._available is None:
            self._available = slang_available()
        return self._available

    def resolve_backend(
        self, backend: str, device: Any, dtype: Any = None, inputs: str = "inputs"
    ) -> Literal["reference", "slang"]:
        """Which backend runs an op: "reference" or "slang". The same rule for every op.

        - ``"reference"``: the pure-PyTorch reference, on any device and dtype.
        - ``"auto"``: Slang for CUDA tensors when the Slang kernels can run here and
          ``dtype`` is float32 (or None: the op has no floating-point inputs), else the
          reference. CUDA tensors that fall back because Slang is unavailable print one line
          on stderr, once per reason; float64 tensors use the reference without a word.
        - ``"slang"``: Slang, or a ValueError saying why it cannot run (CPU tensors, float64
          inputs, no CUDA device or no slangc). It never falls back quietly.

        Args:
            backend: the op's ``backend`` argument.
            device: the device of the op's tensors (a ``torch.device`` or its name).
            dtype: the floating-point dtype of the op's inputs, None when it has none.
            inputs: what the inputs are called in the error messages, e.g. ``"sdf and sh"``.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'auto', 'reference' or 'slang', got {backend!r}")
        if backend == "reference":
            return "reference"
        import torch

        device = torch.device(device)
        float32 = dtype is None or dtype == torch.float32
        if backend == "auto":
            if device.type != "cuda" or not float32:
                return "reference"
            ok, why = self.slang_available()
            if ok:
                return "slang"
            self._notice_reference_fallback(why)
            return "reference"
        if device.type != "cuda":
            raise ValueError(
                f"backend='slang' needs CUDA tensors, got {inputs} on {device}; use "
                "backend='reference' (or 'auto') for CPU tensors"
            )
        if not float32:
            name = str(dtype).replace("torch.", "")
            raise ValueError(
                f"backend='slang' needs float32 {inputs}, got {name} (the Slang kernels are "
                f"float32); use backend='reference' (or 'auto') for {name}"
            )
        ok, why = self.slang_available()
        if not ok:
            raise ValueError(f"backend='slang' is not available: {why}")
        return "slang"

    def _notice_reference_fallback(self, why: str) -> None:
        """One line on stderr, once per reason: CUDA tensors run on the (slow) reference."""
        if why in self._noticed:
            return
        self._noticed.add(why)
        print(
            f"{self.PACKAGE}: the Slang backend is not available ({why}); using the pure-PyTorch "
            f"reference backend (slow). `python -m {self.PACKAGE} info` says more.",
            file=sys.stderr,
        )
