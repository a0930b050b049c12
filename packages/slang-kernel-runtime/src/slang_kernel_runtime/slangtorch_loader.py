"""The fallback loader's helpers: building the kernels with slangtorch's own extension build.

``slangtorch.loadModule`` builds a torch C++ extension (20-30 s, needs a host compiler and the
CUDA toolkit). slangtorch binds only kernels marked ``[AutoPyBindCUDA]`` (``add_autopybind``);
its forced ``-std=c++17`` is dropped so torch chooses its standard, C++20 from torch 2.13 on
(``torch_chooses_cxx_standard``), and math stays IEEE like the NVRTC loader's
(``slangtorch_load``).
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "CXX_STANDARD_FLAG",
    "add_autopybind",
    "ninja_builder_shim",
    "torch_chooses_cxx_standard",
    "slangtorch_load",
]


def add_autopybind(text: str) -> str:
    """Mark every [CudaKernel] with [AutoPyBindCUDA] (slangtorch binds only those)."""
    text = re.sub(r"\[\s*AutoPyBindCUDA\s*\]", "", text)
    return re.sub(r"\[\s*CudaKernel\s*\]", "[AutoPyBindCUDA][CudaKernel]", text)


CXX_STANDARD_FLAG = re.compile(r"^(?:-{1,2}|/)std[=:]c\+\+\w+$")
_SLANGTORCH_PATCH_LOCK = threading.Lock()


def ninja_builder_shim(original: Callable[..., Any]) -> Callable[..., Any] | None:
    """A wrapper of torch's ``_write_ninja_file_and_build_library`` for older slangtorch.

    slangtorch up to 1.3.7 calls it by keyword without ``extra_sycl_cflags`` and ``with_sycl``,
    which torch made required (torch 2.7 on): the build fails with a TypeError. The wrapper
    fills in "no SYCL" for whichever of the two the installed torch requires and the call left
    out; None when nothing is missing (newer slangtorch or older torch).
    """
    import inspect

    try:
        params = inspect.signature(original).parameters
    except (TypeError, ValueError):
        return None
    missing = {
        name: value
        for name, value in (("extra_sycl_cflags", ()), ("with_sycl", False))
        if name in params and params[name].default is inspect.Parameter.empty
    }
    if not missing:
        return None

    def build(*args: Any, **kwargs: Any) -> Any:
        if not args:  # slangtorch passes everything by keyword
            for name, value in missing.items():
                kwargs.setdefault(name, list(value) if isinstance(value, tuple) else value)
        return original(*args, **kwargs)

    return build


@contextmanager
def torch_chooses_cxx_standard() -> Iterator[None]:
    """While active, slangtorch's extension build lets torch choose the C++ standard.

    slangtorch (1.3.7 to at least 1.3.22) passes ``-std=c++17`` (``/std:c++17`` on Windows) to
    the host compiler and to nvcc. Its host flag comes after torch's own, so it wins, and torch
    2.13+ headers need C++20 (shader-slang/slang-torch issue #50; MSVC and nvcc reject them in
    C++17 mode). The ``jit_compile`` that ``slangtorch.slangtorch`` calls is wrapped here to drop
    those flags, so ``torch.utils.cpp_extension`` applies its own standard: C++17 before torch
    2.13, C++20 from 2.13 on (the fix proposed upstream in slang-torch pull request #51).
    Older slangtorch (1.3.7) also calls torch's ninja builder without the SYCL arguments that
    torch 2.7+ requires; those are filled in (``ninja_builder_shim``).
    """
    inner = sys.modules.get("slangtorch.slangtorch")
    original = getattr(inner, "jit_compile", None)
    if original is None:  # a slangtorch that builds differently: leave it alone
        yield
        return

    def jit_compile(*args: Any, **kwargs: Any) -> Any:
        for key in ("extra_cflags", "extra_cuda_cflags"):
            if kwargs.get(key):
                kwargs[key] = [f for f in kwargs[key] if not CXX_STANDARD_FLAG.match(str(f))]
        return original(*args, **kwargs)

    compile_module = sys.modules.get("slangtorch.util.compile")
    builder = getattr(compile_module, "_write_ninja_file_and_build_library", None)
    shim = ninja_builder_shim(builder) if builder is not None else None
    with _SLANGTORCH_PATCH_LOCK:
        inner.jit_compile = jit_compile
        if shim is not None:
            compile_module._write_ninja_file_and_build_library = shim
        try:
            yield
        finally:
            inner.jit_compile = original
            if shim is not None:
                compile_module._write_ninja_file_and_build_library = builder


def slangtorch_load(slangtorch: Any, path: Path) -> Any:
    """slangtorch.loadModule with IEEE math (no --use_fast_math), like the NVRTC loader, and
    with torch's C++ standard (see torch_chooses_cxx_standard)."""
    import inspect

    options = {}
    if "cudaFastMath" in inspect.signature(slangtorch.loadModule).parameters:
        options["cudaFastMath"] = False
    with torch_chooses_cxx_standard():
        return slangtorch.loadModule(str(path), **options)
