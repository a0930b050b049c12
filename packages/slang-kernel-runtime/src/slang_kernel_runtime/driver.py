"""The CUDA driver API (``libcuda.so.1``) through ctypes: load a cubin, launch a kernel.

The cubin is loaded into the device's primary context (the one torch uses) and
``cuLaunchKernel`` runs a kernel on torch's current stream. Every CUresult is checked
(RuntimeError with ``cuGetErrorString``).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Driver"]


class Driver:
    """The CUDA driver API on libcuda.so.1, through ctypes (one instance per process)."""

    _instance: Driver | None = None
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
    def get(cls) -> Driver:
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
