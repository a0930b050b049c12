"""Compile and launch Slang kernels from PyTorch: fast, cached, and without a C++ build.

The shared runtime of the Meshtryoshka kernel packages (``slang_marching_cubes``,
``slang_rasterizer``). A kernel package makes one `KernelPackage` from its name and its entry
.slang module; that gives it the one `SlangModule` its ops launch through, the compilation hook
tools use (``<package>.compilation``), and the backend rule of every op (``resolve_backend``)::

    KERNELS = KernelPackage("my_package", Path(__file__).parent / "slang" / "my_package.slang")
    KERNELS.slang_module().launch("scale_fwd", grid=(n_blocks, 1, 1), block=(256, 1, 1), x=x, n=n)

Kernels are Slang functions marked ``[CudaKernel]``. Their parameters may be ``TensorView<T>``
(pass a CUDA tensor of the matching dtype), ``DiffTensorView`` (pass a ``(primal, grad)`` tuple
of float32 CUDA tensors of one shape) and the scalars ``int``, ``uint``, ``float`` and ``bool``
(pass Python numbers). ``launch`` checks every argument, runs the kernel asynchronously on
``torch.cuda.current_stream()`` and returns None. A grid with a zero dimension is a no-op.

Modules, each small and with its own docstring: `parsing` (kernel parameter lists), `abi`
(argument checking and packing), `slangc`, `nvrtc` and `driver` (the tools, through subprocess
and ctypes), `cache` (folders, lock), `slangtorch_loader` (the fallback loader), `module`
(`SlangModule`), `cli` (reports, ``python -m <package> ...``) and `package` (`KernelPackage`).
Importing the runtime imports neither torch nor slangtorch.
"""

from importlib.metadata import PackageNotFoundError, version

from .abi import TENSOR_VIEW_BYTES
from .module import SlangModule, slang_available
from .package import BACKENDS, HOOK, Backend, KernelPackage

try:  # the version block of every package's __init__.py in this repository
    __version__ = version("slang-kernel-runtime")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "Backend",
    "BACKENDS",
    "HOOK",
    "KernelPackage",
    "SlangModule",
    "TENSOR_VIEW_BYTES",
    "slang_available",
]
