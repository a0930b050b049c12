"""The package's compilation hook: where its Slang kernels are, and the commands that compile
and cache them (`slang_kernel_runtime.KernelPackage`, the same for both kernel packages).

Tools (``python -m slang_marching_cubes``, ``meshtryoshka-train doctor``, the compile
benchmark, ``nox -s compat``) find the kernels through ``entry_modules()`` and
``slang_module()`` instead of knowing file or kernel names. The hook's names (``PACKAGE``,
``ENTRY``, ``entry_modules``, ``slang_module``, ``precompile``, ``clear_cache``, ``cache_dir``,
``cache_entries``, ``toolchain``, ``describe_cache``, ``describe_toolchain``, ``main``) are
attributes of this module; ``KERNELS`` is the `KernelPackage` behind them.

Kernels compile on first use (slangc -> NVRTC -> cubin, about a second) into a per-user cache.
``python -m slang_marching_cubes precompile | check | clear-cache | info``; environment
variables ``SLANG_MARCHING_CUBES_CACHE_DIR`` (default ``$XDG_CACHE_HOME/slang_marching_cubes``,
else ``~/.cache/slang_marching_cubes``), ``SLANG_MARCHING_CUBES_LOADER`` (``nvrtc``, the
default, or ``slangtorch``) and ``SLANG_MARCHING_CUBES_NVRTC_PATH``.
"""

from __future__ import annotations

from pathlib import Path

from slang_kernel_runtime import HOOK, KernelPackage

#: The package's name and its one Slang entry module (which imports the other .slang files).
KERNELS = KernelPackage(
    "slang_marching_cubes", Path(__file__).parent / "slang/marching_cubes.slang"
)
__all__ = ["KERNELS", *HOOK]
__getattr__ = KERNELS.hook_attribute
