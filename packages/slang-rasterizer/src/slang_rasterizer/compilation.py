"""The package's compilation hook: where its Slang kernels are, and the commands that compile
and cache them (`slang_kernel_runtime.KernelPackage`, the same for both kernel packages).

Tools (``python -m slang_rasterizer``, ``meshtryoshka-train doctor``, the compile
benchmark, ``nox -s compat``) find the kernels through ``entry_modules()`` and
``slang_module()`` instead of knowing file or kernel names. The hook's names (``PACKAGE``,
``ENTRY``, ``entry_modules``, ``slang_module``, ``precompile``, ``clear_cache``, ``cache_dir``,
``cache_entries``, ``toolchain``, ``describe_cache``, ``describe_toolchain``, ``main``) are
attributes of this module; ``KERNELS`` is the `KernelPackage` behind them.

Kernels compile on first use (slangc -> NVRTC -> cubin, about a second) into a per-user cache.
``python -m slang_rasterizer precompile | check | clear-cache | info``; environment
variables ``SLANG_RASTERIZER_CACHE_DIR`` (default ``$XDG_CACHE_HOME/slang_rasterizer``,
else ``~/.cache/slang_rasterizer``), ``SLANG_RASTERIZER_LOADER`` (``nvrtc``, the
default, or ``slangtorch``) and ``SLANG_RASTERIZER_NVRTC_PATH``.
"""

from __future__ import annotations

from pathlib import Path

from slang_kernel_runtime import HOOK, KernelPackage

#: The package's name and its one Slang entry module (which imports the other .slang files).
KERNELS = KernelPackage("slang_rasterizer", Path(__file__).parent / "slang/rasterizer.slang")
__all__ = ["KERNELS", *HOOK]
__getattr__ = KERNELS.hook_attribute
