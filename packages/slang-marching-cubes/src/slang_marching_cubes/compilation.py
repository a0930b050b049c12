"""The compilation hook of slang_marching_cubes.

``KERNELS`` is a `slang_kernel_runtime.KernelPackage`; its `slang_kernel_runtime.HOOK` names are
attributes of this module, which tools use to find and compile the kernels: ``python -m
slang_marching_cubes precompile | check | clear-cache | info``, and the environment variables
``SLANG_MARCHING_CUBES_CACHE_DIR``, ``SLANG_MARCHING_CUBES_LOADER`` and
``SLANG_MARCHING_CUBES_NVRTC_PATH``.
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
