"""Test setup of slang-rasterizer: puts ``raster_helpers`` on the path; the ``backend`` fixture
(reference on the CPU, reference on CUDA, Slang; slang_kernel_runtime.testing)."""

from __future__ import annotations

import sys
from pathlib import Path

from slang_kernel_runtime.testing import backend_fixture
from slang_rasterizer import compilation

sys.path.insert(0, str(Path(__file__).parent))

backend = backend_fixture(compilation.KERNELS)
