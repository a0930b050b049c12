"""The compilation hook of slang_rasterizer.

``KERNELS`` is a `slang_kernel_runtime.KernelPackage`; its `slang_kernel_runtime.HOOK` names are
attributes of this module, which tools use to find and compile the kernels: ``python -m
slang_rasterizer precompile | check | clear-cache | info``, and the environment variables
``SLANG_RASTERIZER_CACHE_DIR``, ``SLANG_RASTERIZER_LOADER`` and ``SLANG_RASTERIZER_NVRTC_PATH``.
"""

from __future__ import annotations

from pathlib import Path

from slang_kernel_runtime import HOOK, KernelPackage

#: The package's name and its one Slang entry module (which imports the other .slang files).
KERNELS = KernelPackage("slang_rasterizer", Path(__file__).parent / "slang/rasterizer.slang")
__all__ = ["KERNELS", *HOOK]
__getattr__ = KERNELS.hook_attribute
