"""Compile and launch the package's Slang kernels, fast, cached, and without a C++ build.

This file is vendored byte-identically into ``slang_marching_cubes`` and ``slang_rasterizer``
(the two kernel packages do not depend on each other). Edit the copy in slang_marching_cubes
and copy it over.

Usage::

    _MODULE = SlangModule(package="slang_marching_cubes", entry=Path(...) / "marching_cubes.slang")
    _MODULE.launch("count_fwd", grid=(nblocks, 1, 1), block=(256, 1, 1), sdf=sdf, n=n)

Kernels are Slang functions marked ``[CudaKernel]``. Their parameters may be ``TensorView<T>``
(pass a CUDA tensor of the matching dtype), ``DiffTensorView`` (pass a ``(primal, grad)`` tuple
of float32 CUDA tensors of one shape) and the scalars ``int``, ``uint``, ``float`` and ``bool``
(pass Python numbers). ``launch`` checks every argument, runs the kernel asynchronously on
``torch.cuda.current_stream()`` and returns None. A grid with a zero dimension is a no-op.

How a kernel gets to the GPU (the default loader, ``nvrtc``):

1. ``slangc`` from the installed slangtorch wheel (``slangtorch/bin/slangc``, found with
   ``importlib.util.find_spec`` without importing slangtorch; it loads its sibling
   ``libslang*.so`` itself) compiles the ONE entry module of the package, which ``import``s its
   sibling .slang files, with ``-target cuda`` into one CUDA source holding every kernel. Default
   ``#line`` directives are kept, so NVRTC errors point at .slang lines; the default optimization
   level (``-O1``) is kept, as slangtorch does.
2. The parameter list of each kernel (names, order, types) comes from two places checked against
   each other: the ``[CudaKernel] void name(...)`` declarations in the .slang sources (names and
   tensor element types) and the ``__global__ void name(...)`` signatures in the emitted CUDA
   (order and lowered types; slangc suffixes every parameter name with ``_N``). slangc's
   ``-reflection-json`` cannot be used: it lists no parameters for ``[CudaKernel]`` functions,
   which are not shader entry points, and declaring them as compute entry points with ``-entry``
   fails ("this target doesn't support this user-defined varying parameter").
3. NVRTC compiles the CUDA source, as ONE program, to a cubin for exactly the GPU's
   architecture (``-std=c++17 -default-device --gpu-architecture=sm_XY``, IEEE math, no fast
   math). The emitted kernels are ``__global__`` C++ functions, not ``extern "C"``, so their
   mangled names are looked up with ``nvrtcAddNameExpression`` / ``nvrtcGetLoweredName``. When
   the NVRTC is older than the GPU architecture, it emits PTX for the newest architecture it
   knows and the driver JIT-compiles it (``cuModuleLoadData``).
   NVRTC is looked for in ``$<PACKAGE_UPPER>_NVRTC_PATH``, in the ``nvidia`` wheel folders of
   every site-packages folder (``nvidia/cuda_nvrtc/lib`` for CUDA 12 wheels, ``nvidia/cu13/lib``
   for CUDA 13 wheels, preferring torch's CUDA major version), then ``$CUDA_HOME/lib64``,
   ``$CUDA_PATH/lib64``, ``/usr/local/cuda/lib64`` and the loader's search path. Its
   ``libnvrtc-builtins`` sibling is loaded first (the CUDA 13 wheel needs it). An NVRTC whose
   major version is newer than the driver's CUDA version is refused (its output would not load).
4. The CUDA driver API (``libcuda.so.1`` through ctypes) loads the cubin into the device's
   primary context (the one torch uses) and ``cuLaunchKernel`` runs a kernel on torch's current
   stream. Slang's ``TensorView`` is packed as ``{void* data; uint32 strides[5] (in bytes);
   uint32 sizes[5]; uint32 dimensionCount}``, ``DiffTensorView`` as ``{TensorView primal,
   diff}``. Every CUresult is checked (RuntimeError with ``cuGetErrorString``). The argument
   layout of each kernel is computed on its first launch (``KernelLauncher``: one struct
   format, one reusable argument buffer and pointer array), so a launch costs a few
   microseconds of Python.

The fallback loader, ``slangtorch``, copies the .slang sources into the cache (marking each
``[CudaKernel]`` with ``[AutoPyBindCUDA]`` so slangtorch binds it), builds them with
``slangtorch.loadModule`` (a torch C++ extension: 20-30 s, needs a host compiler and the CUDA
toolkit; slangtorch's forced ``-std=c++17`` is dropped so torch chooses its standard, C++20
from torch 2.13 on, see ``torch_chooses_cxx_standard``) and launches with
``getattr(module, name)(**kwargs).launchRaw(blockSize=block, gridSize=grid)``. It is chosen by
``$<PACKAGE_UPPER>_LOADER=slangtorch``, or automatically, with a one-line warning, when no usable
NVRTC is found. Both loaders validate arguments the same way.

Cache: ``$<PACKAGE_UPPER>_CACHE_DIR``, else ``$XDG_CACHE_HOME/<package>``, else
``~/.cache/<package>``; never next to the installed sources. One folder per key,
``<loader>-sm<XY>-<hash>``, where the hash covers every .slang file next to the entry module
(names and contents), the slangtorch version and the size of its slangc, the loader, the NVRTC
library (path and size), torch and its CUDA version, the GPU architecture and this file's format
version. The nvrtc folder holds ``kernels.cu`` (the CUDA source, for debugging),
``kernels.cubin`` or ``kernels.ptx`` and ``kernels.json`` (parameter lists, mangled names,
versions). It is built in a temporary folder and renamed into place, so a folder that exists is
complete: a warm process only reads it (no slangc, no NVRTC). Builders serialize on
``<folder>.lock`` with ``fcntl.flock``; the kernel releases the lock when its process dies, so a
killed process never leaves a lock that blocks the next one.
"""

from __future__ import annotations

import ctypes
import fcntl
import glob
import hashlib
import importlib.util
import json
import numbers
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FORMAT_VERSION = 1
_MAX_DIMS = 5  # Slang's kSlangTorchTensorMaxDim
_LOADERS = ("nvrtc", "slangtorch")
_NVRTC_OPTIONS = ("-std=c++17", "-default-device", "-w")
_LOCK_TIMEOUT_S = 900.0

# Slang element type of a TensorView<T> -> torch dtype attribute name.
_ELEMENT_DTYPES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "int": "int32",
    "int32_t": "int32",
    "uint": "uint32",
    "uint32_t": "uint32",
    "int64_t": "int64",
    "uint64_t": "uint64",
    "int16_t": "int16",
    "uint16_t": "uint16",
    "int8_t": "int8",
    "uint8_t": "uint8",
    "bool": "bool",
}
# Scalar parameter types: Slang spelling -> kind.
_SCALAR_KINDS = {
    "int": "int",
    "int32_t": "int",
    "uint": "uint",
    "uint32_t": "uint",
    "float": "float",
    "bool": "bool",
}
# Lowered CUDA parameter types (from slangc -target cuda) -> kind.
_CUDA_KINDS = {
    "TensorView": "tensor",
    "int": "int",
    "int32_t": "int",
    "uint": "uint",
    "uint32_t": "uint",
    "float": "float",
    "bool": "bool",
}
_PARAM_HELP = (
    "kernel parameters may only be TensorView<T>, DiffTensorView, int, uint, float or bool"
)


# ----------------------------------------------------------------------------------------------
# Kernel parameter lists


@dataclass(frozen=True)
class Param:
    """One kernel parameter.

    kind: "tensor" (TensorView<T>), "diff" (DiffTensorView), "int", "uint", "float" or "bool".
    dtype: torch dtype name of the tensor elements ("float32", "int64", ...); None for scalars.
    """

    name: str
    kind: str
    dtype: str | None = None

    def describe(self) -> str:
        if self.kind == "tensor":
            return f"a CUDA {self.dtype} tensor"
        if self.kind == "diff":
            return f"a (primal, grad) tuple of CUDA {self.dtype} tensors"
        return {"int": "an int", "uint": "a non-negative int", "float": "a float"}.get(
            self.kind, "a bool"
        )


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


# [CudaKernel], then any further attributes and modifiers (public, internal, static, ...) in any
# order, then `void name(params)`.
_SLANG_KERNEL_RE = re.compile(
    r"\[\s*CudaKernel\s*\]\s*"
    r"(?:(?:\[[^\]]*\]|\b(?:public|internal|private|static|export|inline)\b)\s*)*"
    r"void\s+(\w+)\s*\(([^)]*)\)"
)
_SLANG_PARAM_RE = re.compile(
    r"^(?:(?:in|no_diff|uniform|const)\s+)*([A-Za-z_]\w*)\s*(?:<\s*([^<>]*?)\s*>)?\s+([A-Za-z_]\w*)$"
)
_CUDA_KERNEL_RE = re.compile(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)")


def _slang_param(kernel: str, text: str) -> Param:
    match = _SLANG_PARAM_RE.match(" ".join(text.split()))
    if match is None:
        raise RuntimeError(
            f"kernel {kernel}: cannot read parameter {text.strip()!r}; {_PARAM_HELP}"
        )
    type_name, generic, name = match.groups()
    first_arg = generic.split(",")[0].strip() if generic else None
    if type_name == "TensorView" and first_arg in _ELEMENT_DTYPES:
        return Param(name, "tensor", _ELEMENT_DTYPES[first_arg])
    if type_name == "DiffTensorView" and first_arg in (None, "float", "double", "half"):
        return Param(name, "diff", _ELEMENT_DTYPES[first_arg or "float"])
    if type_name in _SCALAR_KINDS and generic is None:
        return Param(name, _SCALAR_KINDS[type_name])
    raise RuntimeError(f"kernel {kernel}: parameter {name} has type {type_name}; {_PARAM_HELP}")


def parse_slang_kernels(sources: Mapping[str, str]) -> dict[str, list[Param]]:
    """``{kernel name: parameters}`` of every ``[CudaKernel] void name(...)`` in the sources."""
    kernels: dict[str, list[Param]] = {}
    for text in sources.values():
        for match in _SLANG_KERNEL_RE.finditer(_strip_comments(text)):
            name, params = match.groups()
            parts = [p for p in params.split(",") if p.strip()]
            kernels[name] = [_slang_param(name, p) for p in parts]
    return kernels


def parse_cuda_kernels(cuda_source: str) -> dict[str, list[tuple[str, str]]]:
    """``{kernel name: [(parameter name, lowered type), ...]}`` of the ``__global__`` functions.

    slangc suffixes every parameter name with ``_N``; the suffix is removed here.
    """
    kernels = {}
    for name, params in _CUDA_KERNEL_RE.findall(cuda_source):
        pairs = []
        for part in (p for p in params.split(",") if p.strip()):
            ctype, cname = part.strip().rsplit(None, 1)
            pairs.append((re.sub(r"_\d+$", "", cname), " ".join(ctype.split())))
        kernels[name] = pairs
    return kernels


def kernel_table(sources: Mapping[str, str], cuda_source: str) -> dict[str, list[Param]]:
    """Parameter lists of the kernels present in the CUDA source, checked against the sources."""
    declared = parse_slang_kernels(sources)
    table = {}
    for name, lowered in parse_cuda_kernels(cuda_source).items():
        if name not in declared:
            raise RuntimeError(
                f"kernel {name} is in slangc's output but no '[CudaKernel] void {name}(...)' "
                "declaration was found in the .slang files"
            )
        params = declared[name]
        if [p.name for p in params] != [n for n, _ in lowered]:
            raise RuntimeError(
                f"kernel {name}: parameters {[p.name for p in params]} in the .slang source but "
                f"{[n for n, _ in lowered]} in slangc's CUDA output"
            )
        for param, (_, ctype) in zip(params, lowered, strict=True):
            kind = (
                "diff" if re.fullmatch(r"DiffTensorView(_\d+)?", ctype) else _CUDA_KINDS.get(ctype)
            )
            if kind != param.kind:
                raise RuntimeError(
                    f"kernel {name}: parameter {param.name} is lowered to CUDA type {ctype}, "
                    f"expected {param.kind}; {_PARAM_HELP}"
                )
        table[name] = params
    return table


def _table_to_json(table: Mapping[str, list[Param]]) -> dict:
    return {k: [[p.name, p.kind, p.dtype] for p in ps] for k, ps in table.items()}


def _table_from_json(data: Mapping[str, list]) -> dict[str, list[Param]]:
    return {k: [Param(*p) for p in ps] for k, ps in data.items()}


# ----------------------------------------------------------------------------------------------
# Argument checking and packing


class TensorView(ctypes.Structure):
    """Slang's ``TensorView``: data pointer, strides in bytes, sizes, number of dimensions."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("strides", ctypes.c_uint32 * _MAX_DIMS),
        ("sizes", ctypes.c_uint32 * _MAX_DIMS),
        ("dimensionCount", ctypes.c_uint32),
    ]


class DiffTensorView(ctypes.Structure):
    """Slang's ``DiffTensorView``: the primal view and the gradient view."""

    _fields_ = [("primal", TensorView), ("diff", TensorView)]


_SCALAR_CTYPES = {
    "int": (ctypes.c_int32, -(2**31), 2**31 - 1),
    "uint": (ctypes.c_uint32, 0, 2**32 - 1),
}


def _check_tensor(kernel: str, label: str, value: Any, dtype: str, require_cuda: bool) -> None:
    if not hasattr(value, "data_ptr") or not hasattr(value, "stride"):
        raise ValueError(
            f"{kernel}: argument {label} must be a {dtype} tensor, got {type(value).__name__}"
        )
    got = str(value.dtype).replace("torch.", "")
    if got != dtype:
        raise ValueError(
            f"{kernel}: argument {label} must be a {dtype} tensor, got {got} {list(value.shape)}"
        )
    if require_cuda and value.device.type != "cuda":
        raise ValueError(
            f"{kernel}: argument {label} must be on a CUDA device, got a {value.device} tensor"
        )
    if len(value.shape) > _MAX_DIMS:
        raise ValueError(
            f"{kernel}: argument {label} has {len(value.shape)} dimensions {list(value.shape)}; "
            f"Slang tensor views hold at most {_MAX_DIMS}"
        )


def tensor_view(value: Any, label: str = "tensor") -> TensorView:
    """Pack a tensor (anything with data_ptr/shape/stride/element_size) as a Slang TensorView."""
    view = TensorView()
    view.data = value.data_ptr() or None
    item = value.element_size()
    for i, (size, stride) in enumerate(zip(value.shape, value.stride(), strict=True)):
        if size >= 2**32 or stride * item >= 2**32 or stride < 0:
            raise ValueError(
                f"argument {label}: size {size} / stride {stride * item} bytes of dimension {i} "
                "does not fit Slang's uint32 tensor view"
            )
        view.sizes[i] = size
        view.strides[i] = stride * item
    view.dimensionCount = len(value.shape)
    return view


def check_arguments(
    kernel: str, params: Sequence[Param], kwargs: Mapping[str, Any], require_cuda: bool = True
) -> None:
    """Raise ValueError naming every missing or unknown argument, or the first bad one."""
    names = [p.name for p in params]
    missing = [n for n in names if n not in kwargs]
    unknown = [n for n in kwargs if n not in names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing argument(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown argument(s) {', '.join(unknown)}")
        raise ValueError(f"{kernel}: {'; '.join(parts)}; parameters are {', '.join(names)}")
    devices = set()
    for p in params:
        value = kwargs[p.name]
        if p.kind == "tensor":
            _check_tensor(kernel, p.name, value, p.dtype, require_cuda)
            devices.add(str(value.device))
        elif p.kind == "diff":
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(
                    f"{kernel}: argument {p.name} must be a (primal, grad) tuple of "
                    f"{p.dtype} tensors, got {type(value).__name__}"
                )
            _check_tensor(kernel, f"{p.name}[0] (primal)", value[0], p.dtype, require_cuda)
            _check_tensor(kernel, f"{p.name}[1] (grad)", value[1], p.dtype, require_cuda)
            if tuple(value[0].shape) != tuple(value[1].shape):
                raise ValueError(
                    f"{kernel}: argument {p.name}: primal {list(value[0].shape)} and grad "
                    f"{list(value[1].shape)} must have the same shape"
                )
            devices.update((str(value[0].device), str(value[1].device)))
        elif p.kind == "bool":
            if type(value).__name__ not in ("bool", "bool_"):
                raise ValueError(
                    f"{kernel}: argument {p.name} must be a bool, got {type(value).__name__}"
                )
        elif p.kind == "float":
            if not isinstance(value, numbers.Real) or type(value).__name__ in ("bool", "bool_"):
                raise ValueError(
                    f"{kernel}: argument {p.name} must be a Python float, got "
                    f"{type(value).__name__}"
                )
        else:
            _, low, high = _SCALAR_CTYPES[p.kind]
            if not isinstance(value, numbers.Integral) or type(value).__name__ in ("bool", "bool_"):
                raise ValueError(
                    f"{kernel}: argument {p.name} must be a Python int, got {type(value).__name__}"
                )
            if not low <= int(value) <= high:
                raise ValueError(
                    f"{kernel}: argument {p.name}={int(value)} does not fit a {p.kind} "
                    f"[{low}, {high}]"
                )
    if len(devices) > 1:
        raise ValueError(f"{kernel}: tensors are on different devices {sorted(devices)}")


def pack_arguments(
    kernel: str, params: Sequence[Param], kwargs: Mapping[str, Any], require_cuda: bool = True
) -> list[Any]:
    """Check the arguments and pack them, in parameter order, as ctypes kernel arguments."""
    check_arguments(kernel, params, kwargs, require_cuda)
    packed: list[Any] = []
    for p in params:
        value = kwargs[p.name]
        if p.kind == "tensor":
            packed.append(tensor_view(value, p.name))
        elif p.kind == "diff":
            packed.append(
                DiffTensorView(tensor_view(value[0], p.name), tensor_view(value[1], p.name))
            )
        elif p.kind == "float":
            packed.append(ctypes.c_float(float(value)))
        elif p.kind == "bool":
            packed.append(ctypes.c_bool(bool(value)))
        else:
            packed.append(_SCALAR_CTYPES[p.kind][0](int(value)))
    return packed


def check_launch_dims(kernel: str, grid: Sequence[int], block: Sequence[int]) -> bool:
    """Validate grid and block; return False when the grid is empty (the launch is a no-op)."""
    for label, dims in (("grid", grid), ("block", block)):
        if len(dims) != 3 or not all(hasattr(d, "__index__") for d in dims):
            raise ValueError(f"{kernel}: {label} must be 3 ints, got {dims!r}")
    if any(d <= 0 for d in block) or block[0] * block[1] * block[2] > 1024 or block[2] > 64:
        raise ValueError(
            f"{kernel}: block {tuple(block)} must be positive, with x*y*z <= 1024 and z <= 64"
        )
    if any(d < 0 for d in grid):
        raise ValueError(f"{kernel}: grid {tuple(grid)} must not be negative")
    if grid[0] > 2**31 - 1 or grid[1] > 65535 or grid[2] > 65535:
        raise ValueError(
            f"{kernel}: grid {tuple(grid)} is too large (at most 2^31-1 blocks in x and "
            "65535 in y and z)"
        )
    return all(d > 0 for d in grid)


class KernelLauncher:
    """The argument block of one kernel, laid out once and refilled on every launch.

    ``cuLaunchKernel`` takes an array of pointers, one per parameter, to the parameter values;
    it copies the values before it returns, so one buffer per kernel can be reused. The layout
    of that buffer (a ``TensorView`` is 56 bytes, a ``DiffTensorView`` 112, both 8-aligned;
    ``int``/``uint``/``float`` 4; ``bool`` 1) is computed here once, as a single ``struct``
    format, and the pointer array into it is built once. ``pack`` then checks each argument
    with a few attribute reads (dtype identity, device, dimensions, exact scalar types) and
    writes every value with one ``struct.pack_into``, whose range checks catch sizes, strides
    and ints that do not fit. Anything the quick checks do not accept (a wrong or missing
    argument, numpy scalars, tensor-like objects, a (primal, grad) list) goes through
    ``pack_arguments``, which raises the descriptive ValueError or packs it the slow way.

    Not thread-safe by itself: hold ``lock`` from ``pack`` until the launch has been issued.
    """

    def __init__(self, kernel: str, params: Sequence[Param], require_cuda: bool = True):
        import torch

        self.kernel = kernel
        self.params = tuple(params)
        self.require_cuda = require_cuda
        self.names = frozenset(p.name for p in self.params)
        self.lock = threading.Lock()
        parts, offsets, steps, position = ["<"], [], [], 0
        sizes = {"tensor": (56, 8), "diff": (112, 8), "int": (4, 4), "uint": (4, 4)}
        sizes.update({"float": (4, 4), "bool": (1, 1)})
        codes = {"tensor": "Q5I5II4x", "diff": "Q5I5II4xQ5I5II4x", "int": "i", "uint": "I"}
        codes.update({"float": "f", "bool": "?"})
        for p in self.params:
            size, align = sizes[p.kind]
            pad = -position % align
            if pad:
                parts.append(f"{pad}x")
            position += pad
            offsets.append(position)
            parts.append(codes[p.kind])
            position += size
            dtype = getattr(torch, p.dtype) if p.dtype else None
            item = torch.empty((), dtype=dtype).element_size() if dtype is not None else 0
            steps.append((p.name, p.kind, dtype, item.__mul__))  # stride -> bytes
        self.format = struct.Struct("".join(parts))
        assert self.format.size == position, (self.format.format, position)
        self.steps = tuple(steps)
        self.buffer = ctypes.create_string_buffer(max(position, 1))
        base = ctypes.addressof(self.buffer)
        self.pointers = (ctypes.c_void_p * max(len(offsets), 1))(*[base + o for o in offsets])
        self.offsets = tuple(offsets)

    def pack(self, kwargs: Mapping[str, Any]) -> int:
        """Check ``kwargs`` and write them into ``buffer``; return the tensors' device index.

        Returns -1 when the kernel has no tensor parameters (or, with ``require_cuda=False``,
        when the tensors are on the CPU). Raises ValueError like ``check_arguments``.
        """
        values = self._quick_values(kwargs)
        if values is not None:
            try:
                self.format.pack_into(self.buffer, 0, *values[1])
                return values[0]
            except struct.error:
                pass  # a size, stride or int out of range: let the slow path name it
        return self._slow_pack(kwargs)

    def _quick_values(self, kwargs: Mapping[str, Any]) -> tuple[int, list] | None:
        if kwargs.keys() != self.names:
            return None
        values: list = []
        device = None
        add, extend = values.append, values.extend
        try:
            for name, kind, dtype, to_bytes in self.steps:
                value = kwargs[name]
                if kind == "tensor":
                    tensors = (value,)
                elif kind == "diff":
                    if type(value) is not tuple or len(value) != 2:
                        return None
                    tensors = value
                    if value[0].shape != value[1].shape:
                        return None
                else:
                    kind_type = type(value)
                    if kind == "float":
                        if kind_type is not float and kind_type is not int:
                            return None
                    elif kind == "bool":
                        if kind_type is not bool:
                            return None
                    elif kind_type is not int:
                        return None
                    add(value)
                    continue
                for tensor in tensors:
                    if tensor.dtype is not dtype or (self.require_cuda and not tensor.is_cuda):
                        return None
                    index = tensor.get_device()
                    if device is None:
                        device = index
                    elif index != device:
                        return None
                    shape = tensor.shape
                    dims = len(shape)
                    if dims > _MAX_DIMS:
                        return None
                    add(tensor.data_ptr())
                    extend(map(to_bytes, tensor.stride()))
                    extend(_ZEROS[dims])
                    extend(shape)
                    extend(_ZEROS[dims])
                    add(dims)
        except (AttributeError, TypeError):
            return None
        return (-1 if device is None else device), values

    def _slow_pack(self, kwargs: Mapping[str, Any]) -> int:
        packed = pack_arguments(self.kernel, self.params, kwargs, self.require_cuda)
        base = ctypes.addressof(self.buffer)
        for offset, value in zip(self.offsets, packed, strict=True):
            ctypes.memmove(base + offset, ctypes.addressof(value), ctypes.sizeof(value))
        for p in self.params:
            value = kwargs[p.name]
            first = value[0] if p.kind == "diff" else value
            device = getattr(first, "device", None)
            if getattr(device, "type", None) == "cuda":
                return device.index if device.index is not None else -1
        return -1


_ZEROS = tuple((0,) * (_MAX_DIMS - n) for n in range(_MAX_DIMS + 1))


def quick_launch_dims(kernel: str, grid: Any, block: Any) -> bool:
    """``check_launch_dims`` for any 3-sequences, with a shortcut for plain in-range ints."""
    if type(grid) is tuple and type(block) is tuple and len(grid) == 3 and len(block) == 3:
        gx, gy, gz = grid
        bx, by, bz = block
        if (
            type(gx) is int
            and type(gy) is int
            and type(gz) is int
            and type(bx) is int
            and type(by) is int
            and type(bz) is int
            and 0 <= gx < 2**31
            and 0 <= gy <= 65535
            and 0 <= gz <= 65535
            and bx > 0
            and by > 0
            and 0 < bz <= 64
            and bx * by * bz <= 1024
        ):
            return gx > 0 and gy > 0 and gz > 0
    return check_launch_dims(kernel, tuple(grid), tuple(block))


# ----------------------------------------------------------------------------------------------
# Tools: slangc, NVRTC, the CUDA driver


def find_slangc() -> Path | None:
    """slangc inside the installed slangtorch wheel, found without importing slangtorch."""
    spec = importlib.util.find_spec("slangtorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "bin" / "slangc"
        if path.is_file():
            return path
    return None


def _slangtorch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slangtorch")
    except PackageNotFoundError:
        return "unknown"


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


def find_nvrtc(package: str = "") -> Path | None:
    """Path of a libnvrtc.so, or None. See the module docstring for the search order."""
    override = os.environ.get(f"{package.upper()}_NVRTC_PATH") if package else None
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


def _cuda_include_dirs(nvrtc_path: Path) -> list[str]:
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
            options = [f"--gpu-architecture={target}", *_NVRTC_OPTIONS]
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


class _Driver:
    """The CUDA driver API on libcuda.so.1, through ctypes (one instance per process)."""

    _instance: _Driver | None = None
    _instance_lock = threading.Lock()

    def __init__(self):
        lib = ctypes.CDLL("libcuda.so.1")
        p, u, i = ctypes.c_void_p, ctypes.c_uint, ctypes.c_int
        lib.cuGetErrorString.argtypes = [i, ctypes.POINTER(ctypes.c_char_p)]
        lib.cuDriverGetVersion.argtypes = [ctypes.POINTER(i)]
        lib.cuDeviceGet.argtypes = [ctypes.POINTER(i), i]
        lib.cuDevicePrimaryCtxRetain.argtypes = [ctypes.POINTER(p), i]
        lib.cuCtxGetCurrent.argtypes = [ctypes.POINTER(p)]
        lib.cuCtxSetCurrent.argtypes = [p]
        lib.cuModuleLoadData.argtypes = [ctypes.POINTER(p), ctypes.c_char_p]
        lib.cuModuleGetFunction.argtypes = [ctypes.POINTER(p), p, ctypes.c_char_p]
        lib.cuLaunchKernel.argtypes = [p, u, u, u, u, u, u, u, p, ctypes.POINTER(p), p]
        lib.cuInit.argtypes = [u]
        self.lib = lib
        self.check(lib.cuInit(0), "cuInit")
        version = ctypes.c_int()
        self.check(lib.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
        self.version = (version.value // 1000, version.value % 1000 // 10)
        self.contexts: dict[int, ctypes.c_void_p] = {}

    @classmethod
    def get(cls) -> _Driver:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            text = ctypes.c_char_p()
            self.lib.cuGetErrorString(rc, ctypes.byref(text))
            message = text.value.decode() if text.value else "unknown error"
            raise RuntimeError(f"CUDA driver: {what} failed: {message} (CUresult {rc})")

    def make_current(self, device: int) -> None:
        """Make the device's primary context (torch's) current on this thread."""
        context = self.contexts.get(device)
        if context is None:
            handle = ctypes.c_int()
            self.check(self.lib.cuDeviceGet(ctypes.byref(handle), device), "cuDeviceGet")
            context = ctypes.c_void_p()
            self.check(
                self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), handle.value),
                "cuDevicePrimaryCtxRetain",
            )
            self.contexts[device] = context
        current = ctypes.c_void_p()
        self.check(self.lib.cuCtxGetCurrent(ctypes.byref(current)), "cuCtxGetCurrent")
        if current.value != context.value:
            self.check(self.lib.cuCtxSetCurrent(context), "cuCtxSetCurrent")

    def load(self, device: int, binary: bytes, lowered: Mapping[str, str]) -> dict[str, Any]:
        self.make_current(device)
        module = ctypes.c_void_p()
        self.check(self.lib.cuModuleLoadData(ctypes.byref(module), binary), "cuModuleLoadData")
        functions = {}
        for name, mangled in lowered.items():
            function = ctypes.c_void_p()
            self.check(
                self.lib.cuModuleGetFunction(ctypes.byref(function), module, mangled.encode()),
                f"cuModuleGetFunction({name})",
            )
            functions[name] = function
        return functions

    def launch(self, function, grid, block, stream: int, args: Sequence[Any], what: str) -> None:
        """Launch with ``args`` given as ctypes values (one pointer array built per call)."""
        pointers = (ctypes.c_void_p * max(len(args), 1))(
            *[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in args]
        )
        rc = self.lib.cuLaunchKernel(
            function, *grid, *block, 0, ctypes.c_void_p(stream), pointers, None
        )
        self.check(rc, what)

    def launch_pointers(self, function, grid, block, stream: int, pointers, name: str) -> None:
        """Launch with a prepared array of pointers to the parameter values."""
        gx, gy, gz = grid
        bx, by, bz = block
        rc = self.lib.cuLaunchKernel(function, gx, gy, gz, bx, by, bz, 0, stream, pointers, None)
        if rc:
            self.check(rc, f"launch {name}{tuple(grid)}x{tuple(block)}")


# ----------------------------------------------------------------------------------------------
# The cache


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(
    path: Path, timeout: float = _LOCK_TIMEOUT_S, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if needed).

    The kernel drops the lock when the holding process exits or is killed, so a lock file left
    behind never blocks. Raises TimeoutError after ``timeout`` seconds of waiting on a live
    holder; ``on_wait`` is called once if the lock is busy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"waited {timeout:.0f} s for the lock {path}, held by another process "
                        "that is still running; stop it or delete the cache folder"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def build_cached(
    folder: Path,
    build: Callable[[Path], None],
    marker: str = "kernels.json",
    on_build: Callable[[], None] | None = None,
    on_wait: Callable[[], None] | None = None,
    timeout: float = _LOCK_TIMEOUT_S,
) -> bool:
    """Make sure ``folder`` holds a complete build; return True if this call built it.

    ``build(tmp)`` fills a fresh temporary folder next to ``folder`` (it must write ``marker``),
    which is then renamed to ``folder``. Processes serialize on ``<folder>.lock``; the ones that
    waited find the folder complete and do not build again.
    """
    if (folder / marker).is_file():
        return False
    with file_lock(folder.with_name(folder.name + ".lock"), timeout, on_wait):
        if (folder / marker).is_file():
            return False
        if on_build is not None:
            on_build()
        if folder.exists():  # an incomplete folder from an interrupted in-place build
            shutil.rmtree(folder)
        for stale in folder.parent.glob(f".{folder.name}.*"):
            if stale.is_dir():  # the temporary folder of a builder that died (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            build(tmp)
            if not (tmp / marker).is_file():
                raise RuntimeError(f"the build did not write {marker}")
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


# ----------------------------------------------------------------------------------------------
# The module


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


def _add_autopybind(text: str) -> str:
    """Mark every [CudaKernel] with [AutoPyBindCUDA] (slangtorch binds only those)."""
    text = re.sub(r"\[\s*AutoPyBindCUDA\s*\]", "", text)
    return re.sub(r"\[\s*CudaKernel\s*\]", "[AutoPyBindCUDA][CudaKernel]", text)


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
        self._driver: _Driver | None = None
        self._raw_stream: Callable[[int], int] | None = None

    # -- paths and keys ------------------------------------------------------------------------

    @property
    def env_prefix(self) -> str:
        return re.sub(r"\W", "_", self.package).upper()

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
            f"format={_FORMAT_VERSION}",
            f"entry={self.entry.name}",
            f"slangtorch={_slangtorch_version()}",
            f"slangc_size={slangc.stat().st_size if slangc else None}",
            f"loader={loader}",
            f"torch={torch.__version__}",
            f"cuda={torch.version.cuda}",
            f"arch={arch}",
            f"nvrtc_options={_NVRTC_OPTIONS}",
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
                "bytes": _disk_usage(path),
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
            info["driver_cuda"] = _Driver.get().version
        except OSError:
            info["driver_note"] = "no NVIDIA driver (libcuda.so.1 not found)"
        except RuntimeError as error:
            info["driver_note"] = str(error)
        slangc = find_slangc()
        info["slangtorch"] = _slangtorch_version() if slangc else None
        info["slangc"] = slangc
        info["slangc_version"] = _slangc_version(slangc) if slangc else None
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
        elif info["loader"] not in _LOADERS:
            info["loader_used"] = None
            info["loader_note"] = f"{variable}={info['loader']!r} is not one of {_LOADERS}"
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
        self._driver = _Driver.get()
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
        if loader not in _LOADERS:
            raise ValueError(f"{variable} must be one of {', '.join(_LOADERS)}, got {loader!r}")
        if loader == "nvrtc":
            self._nvrtc_path = find_nvrtc(self.package)
            problem = None
            if self._nvrtc_path is None:
                problem = "NVRTC (libnvrtc.so) not found"
            else:
                driver = _Driver.get()
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
                    functions = _Driver.get().load(device, binary, info["lowered"])
                except RuntimeError as error:
                    raise self._compile_error(arch, f"loading {folder}: {error}") from error
                self._functions[device] = functions
            else:
                built = self._load_slangtorch(folder, arch, announce, waiting)
                info = json.loads((folder / "kernels.json").read_text())
            self._table = _table_from_json(info["kernels"])
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
            f"slangtorch {_slangtorch_version()} (slangc {_slangc_version(slangc)})",
            f"torch {torch.__version__}",
            f"CUDA {torch.version.cuda}",
            f"GPU sm_{arch}",
            f"loader {loader}",
        ]
        if loader == "nvrtc" and nvrtc_path is not None:
            parts.append(f"NVRTC {_nvrtc_version_text(nvrtc_path)} ({nvrtc_path})")
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
        return source, kernel_table(self.sources(), source), _slangc_version(slangc)

    def _build_nvrtc(self, tmp: Path, arch: int, nvrtc_path: Path) -> None:
        try:
            started = time.perf_counter()
            source, table, slangc_version = self.emit_cuda(tmp)
            emitted = time.perf_counter()
            nvrtc = Nvrtc(nvrtc_path)
            binary, kind, lowered, _ = nvrtc.compile(
                source, list(table), arch, _cuda_include_dirs(nvrtc_path)
            )
            compiled = time.perf_counter()
        except (RuntimeError, OSError) as error:
            raise self._compile_error(arch, str(error), "nvrtc", nvrtc_path) from error
        (tmp / f"kernels.{kind}").write_bytes(binary)
        info = {
            "kernels": _table_to_json(table),
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
                        (src / name).write_text(_add_autopybind(text))
                    try:
                        source, table, slangc_version = self.emit_cuda(folder)
                        self._slangtorch_module = _slangtorch_load(
                            slangtorch, src / self.entry.name
                        )
                    except Exception as error:
                        raise self._compile_error(arch, str(error)) from error
                    info = {"kernels": _table_to_json(table), "slangc": slangc_version}
                    _write_atomic(folder / "kernels.json", json.dumps(info, indent=1).encode())
                    return built
        self._slangtorch_module = _slangtorch_load(slangtorch, folder / "src" / self.entry.name)
        return built


_CXX_STANDARD_FLAG = re.compile(r"^(?:-{1,2}|/)std[=:]c\+\+\w+$")
_SLANGTORCH_PATCH_LOCK = threading.Lock()


def _ninja_builder_shim(original: Callable[..., Any]) -> Callable[..., Any] | None:
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
    torch 2.7+ requires; those are filled in (``_ninja_builder_shim``).
    """
    inner = sys.modules.get("slangtorch.slangtorch")
    original = getattr(inner, "jit_compile", None)
    if original is None:  # a slangtorch that builds differently: leave it alone
        yield
        return

    def jit_compile(*args: Any, **kwargs: Any) -> Any:
        for key in ("extra_cflags", "extra_cuda_cflags"):
            if kwargs.get(key):
                kwargs[key] = [f for f in kwargs[key] if not _CXX_STANDARD_FLAG.match(str(f))]
        return original(*args, **kwargs)

    compile_module = sys.modules.get("slangtorch.util.compile")
    builder = getattr(compile_module, "_write_ninja_file_and_build_library", None)
    shim = _ninja_builder_shim(builder) if builder is not None else None
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


def _slangtorch_load(slangtorch: Any, path: Path) -> Any:
    """slangtorch.loadModule with IEEE math (no --use_fast_math), like the NVRTC loader, and
    with torch's C++ standard (see torch_chooses_cxx_standard)."""
    import inspect

    options = {}
    if "cudaFastMath" in inspect.signature(slangtorch.loadModule).parameters:
        options["cudaFastMath"] = False
    with torch_chooses_cxx_standard():
        return slangtorch.loadModule(str(path), **options)


def _disk_usage(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _nvrtc_version_text(path: Path) -> str:
    try:
        major, minor = Nvrtc(path).version
        return f"{major}.{minor}"
    except (OSError, RuntimeError):
        return "unknown"


def _slangc_version(slangc: Path | None) -> str:
    if slangc is None:
        return "not found"
    result = subprocess.run([str(slangc), "-v"], capture_output=True, text=True)
    return (result.stdout + result.stderr).strip() or "unknown"


# ----------------------------------------------------------------------------------------------
# Reports and the command line (python -m <package> precompile | check | clear-cache | info)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def describe_cache(module: SlangModule) -> list[str]:
    """Lines saying where the module's cache is and what it holds."""
    entries = module.cache_entries()
    builds = [e for e in entries if e["kind"] == "build"]
    total = sum(e["bytes"] for e in entries)
    lines = [
        f"cache: {module.cache_dir} ({len(builds)} build(s), {format_bytes(total)}; set "
        f"{module.env_prefix}_CACHE_DIR to move it)"
    ]
    for e in entries:
        if e["kind"] == "lock":
            continue
        what = e["kind"]
        if what == "build":
            versions = f"slangc {e['slangc'] or '?'}"
            if e.get("nvrtc"):
                versions += f", NVRTC {e['nvrtc']}"
            what = f"{e['kernels']} kernels, {versions}"
        elif what == "temporary":
            what = "left by a killed build; removed by the next build or clear-cache"
        modified = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["modified"]))
        lines.append(f"  {e['name']}  {format_bytes(e['bytes'])}  {modified}  {what}")
    return lines


def describe_toolchain(info: Mapping[str, Any]) -> list[str]:
    """Lines for the dict of ``SlangModule.toolchain()``."""
    if info["driver_cuda"]:
        driver = "CUDA {}.{}".format(*info["driver_cuda"])
    else:
        driver = info["driver_note"] or "none"
    nvrtc = "not found"
    if info["nvrtc"] is not None:
        version = info["nvrtc_version"]
        archs = info["nvrtc_archs"]
        known = f"sm_{archs[0]}..sm_{archs[-1]}" if archs else "?"
        nvrtc = (
            f"{version[0]}.{version[1]} ({known}) {info['nvrtc']}"
            if version
            else info.get("nvrtc_note", str(info["nvrtc"]))
        )
    gpu = f"{info['gpu']} (sm_{info['arch']})" if info["gpu"] else "none"
    slangc = (
        f"{info['slangc_version']} {info['slangc']}" if info["slangc"] else "not found (slangtorch)"
    )
    used = info["loader_used"] or "none (the reference backend is used)"
    return [
        f"torch:       {info['torch'] or 'not installed'} "
        f"(CUDA {info['torch_cuda'] or 'none: CPU build'})",
        f"driver:      {driver}",
        f"GPU:         {gpu}",
        f"slangtorch:  {info['slangtorch'] or 'not installed'}",
        f"slangc:      {slangc}",
        f"NVRTC:       {nvrtc}",
        f"loader:      {used} ({info['loader_note']})",
    ]


def command_line(module: SlangModule, argv: Sequence[str] | None = None) -> int:
    """``python -m <package> precompile | check | clear-cache | info``; returns the exit code."""
    import argparse

    package = module.package
    parser = argparse.ArgumentParser(
        prog=f"python -m {package}",
        description=f"Compile, check and cache the Slang kernels of {package}.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "precompile", help="compile (or find in the cache) and load the kernels on this GPU"
    )
    check = commands.add_parser(
        "check", help="compile the kernels with slangc and NVRTC for GPU architectures (no GPU)"
    )
    check.add_argument(
        "--arch", default="80,90", help="comma-separated compute capabilities (default 80,90)"
    )
    check.add_argument("--nvrtc", help="path of the libnvrtc.so to use")
    commands.add_parser("clear-cache", help=f"delete the kernel cache ({module.cache_dir})")
    commands.add_parser("info", help="the cache and the tools in use")
    args = parser.parse_args(argv)
    has_kernels = module.entry.is_file()
    no_kernels = f"{package}: no Slang kernels in this version ({module.entry} is missing)"
    try:
        if args.command == "precompile":
            if not has_kernels:
                print(f"{no_kernels}; nothing to compile")
                return 0
            available, why = slang_available()
            if not available:
                print(f"{package}: cannot precompile here: {why}", file=sys.stderr)
                return 1
            started = time.perf_counter()
            folder = module.precompile()
            print(
                f"{package}: {len(module.kernels())} kernels ready in "
                f"{time.perf_counter() - started:.2f} s (loader {module._loader}) -> {folder}"
            )
        elif args.command == "check":
            if not has_kernels:
                print(f"{no_kernels}; nothing to check")
                return 0
            try:
                archs = [int(a.strip().removeprefix("sm_")) for a in args.arch.split(",")]
            except ValueError:
                parser.error(f"--arch must be comma-separated integers like 80,90; got {args.arch}")
            for arch in archs:
                info = module.compile_only(arch, args.nvrtc)
                print(
                    f"{package}: sm_{arch}: {len(info['kernels'])} kernels -> {info['binary']} "
                    f"{format_bytes(info['binary_bytes'])} (slangc {info['slangc_s']:.2f} s, "
                    f"NVRTC {info['nvrtc']} {info['nvrtc_s']:.2f} s)"
                )
        elif args.command == "clear-cache":
            entries = module.cache_entries()
            if not entries:
                print(f"{package}: nothing cached in {module.cache_dir}")
                return 0
            size = format_bytes(sum(e["bytes"] for e in entries))
            builds = sum(e["kind"] == "build" for e in entries)
            module.clear_cache()
            print(f"{package}: removed {module.cache_dir} ({builds} build(s), {size})")
        else:
            print(f"{package}: kernels {module.entry if has_kernels else 'none in this version'}")
            for line in describe_cache(module) + describe_toolchain(module.toolchain()):
                print(f"  {line}")
    except RuntimeError as error:
        print(str(error), file=sys.stderr)
        return 1
    return 0
