"""Kernel arguments as the CUDA driver takes them: Slang's structs in ctypes, checks, packing.

Slang's ``TensorView`` is ``{void* data; uint32 strides[5] (in bytes); uint32 sizes[5]; uint32
dimensionCount}``, ``DiffTensorView`` is ``{TensorView primal, diff}``. ``check_arguments``
raises a ValueError naming the argument; ``pack_arguments`` checks and packs one ctypes value
per parameter; ``KernelLauncher`` lays out a kernel's whole argument block once and refills it
on every launch (a few microseconds of Python per launch).
"""

from __future__ import annotations

import ctypes
import numbers
import operator
import struct
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from .parsing import Param

__all__ = [
    "MAX_DIMS",
    "TENSOR_VIEW_BYTES",
    "TensorView",
    "DiffTensorView",
    "tensor_view",
    "check_arguments",
    "pack_arguments",
    "check_launch_dims",
    "quick_launch_dims",
    "KernelLauncher",
]

MAX_DIMS = 5  # Slang's kSlangTorchTensorMaxDim


class TensorView(ctypes.Structure):
    """Slang's ``TensorView``: data pointer, strides in bytes, sizes, number of dimensions."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("strides", ctypes.c_uint32 * MAX_DIMS),
        ("sizes", ctypes.c_uint32 * MAX_DIMS),
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
    if len(value.shape) > MAX_DIMS:
        raise ValueError(
            f"{kernel}: argument {label} has {len(value.shape)} dimensions {list(value.shape)}; "
            f"Slang tensor views hold at most {MAX_DIMS}"
        )


TENSOR_VIEW_BYTES = 2**32
"""A Slang tensor view computes its element offsets ``sum(index * stride)`` in uint32 bytes: no
element of a tensor passed to a kernel may lie this many bytes or more from its start."""


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
    span = item * sum(map(_last_offset, value.shape, value.stride()))
    if span >= TENSOR_VIEW_BYTES:
        raise ValueError(
            f"argument {label}: {list(value.shape)} reaches byte offset {span}; Slang's tensor "
            "views address at most 4 GiB (uint32 byte offsets): pass it in smaller parts"
        )
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
            item = dtype.itemsize if dtype is not None else 0
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
                    if dims > MAX_DIMS:
                        return None
                    strides = tensor.stride()
                    if to_bytes(sum(map(operator.mul, shape, strides))) >= TENSOR_VIEW_BYTES:
                        return None  # maybe past 4 GiB (a bound): the slow path decides
                    add(tensor.data_ptr())
                    extend(map(to_bytes, strides))
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


def _last_offset(size: int, stride: int) -> int:
    return (size - 1) * stride if size else 0


_ZEROS = tuple((0,) * (MAX_DIMS - n) for n in range(MAX_DIMS + 1))


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
