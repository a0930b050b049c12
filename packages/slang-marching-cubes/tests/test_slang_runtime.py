"""Tests of the vendored Slang kernel runtime (_slang_runtime.py).

CPU: slangc output and kernel tables, argument checking and packing, launch dimensions, the cache
(key, folders, locking across processes, a lock left by a killed process), loader selection,
compile errors, and NVRTC compiling the emitted CUDA for sm_80/sm_90 when an NVRTC is installed.
GPU (marker ``cuda``): the probe kernels through both loaders against torch, strided views,
empty launches, cold and warm start times.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from slang_marching_cubes import _slang_runtime as rt

DATA = Path(__file__).parent / "data"
PROBE = DATA / "runtime_probe.slang"
RUNTIME_FILE = Path(rt.__file__)
PACKAGE = "slang_marching_cubes"
needs_slangc = pytest.mark.skipif(rt.find_slangc() is None, reason="slangtorch (slangc) missing")

PROBE_TABLE = {
    "affine_fwd": [
        rt.Param("x", "tensor", "float32"),
        rt.Param("y", "tensor", "float32"),
        rt.Param("scale", "float"),
        rt.Param("offset", "int"),
        rt.Param("negate", "bool"),
    ],
    "cube_diff": [rt.Param("x", "diff", "float32"), rt.Param("y", "diff", "float32")],
    "cube_bwd": [rt.Param("x", "diff", "float32"), rt.Param("y", "diff", "float32")],
    "histogram": [
        rt.Param("keys", "tensor", "int64"),
        rt.Param("counts", "tensor", "int32"),
        rt.Param("num_bins", "uint"),
        rt.Param("num_keys", "uint"),
    ],
}


def probe_module(tmp_path: Path, package: str = PACKAGE) -> rt.SlangModule:
    """A SlangModule over a private copy of the probe sources."""
    src = tmp_path / "src"
    if not src.exists():
        shutil.copytree(DATA, src)
    return rt.SlangModule(package=package, entry=src / PROBE.name)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLANG_MARCHING_CUBES_CACHE_DIR", str(cache))
    return cache


# ----------------------------------------------------------------------------------------------
# Import, slangc, kernel tables


def test_import_needs_neither_torch_nor_slangtorch():
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("runtime_copy", {str(RUNTIME_FILE)!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["runtime_copy"] = module
        spec.loader.exec_module(module)
        assert "torch" not in sys.modules and "slangtorch" not in sys.modules, sys.modules.keys()
        assert hasattr(module, "SlangModule") and hasattr(module, "slang_available")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vendored_copy_is_identical():
    # Compare the repository's files (the installed package may live in a venv's site-packages).
    packages = Path(__file__).resolve().parents[2]
    canonical = packages / "slang-marching-cubes/src/slang_marching_cubes/_slang_runtime.py"
    copy = packages / "slang-rasterizer/src/slang_rasterizer/_slang_runtime.py"
    assert copy.read_bytes() == canonical.read_bytes()


@needs_slangc
def test_slangc_emits_cuda_and_the_kernel_table(tmp_path):
    module = probe_module(tmp_path)
    source, table, version = module.emit_cuda(tmp_path)
    assert table == PROBE_TABLE
    assert "__global__ void histogram(" in source
    assert version and version != "unknown"
    assert (tmp_path / "kernels.cu").read_text() == source


def test_parse_slang_kernels_reads_attributes_comments_and_modifiers():
    source = """
    // [CudaKernel] void commented_out(TensorView<float> a)
    /* [CudaKernel]
       void also_commented(int a) */
    [Differentiable]
    [CudaKernel]
    [BackwardDerivative(foo_bwd)]
    void foo(DiffTensorView<float> a, no_diff TensorView<uint8_t> mask,
             TensorView<int64_t> ids, uint n, bool flag)
    { }
    void not_a_kernel(TensorView<float> a) { }
    [CudaKernel] void empty() { }
    """
    assert rt.parse_slang_kernels({"a.slang": source}) == {
        "foo": [
            rt.Param("a", "diff", "float32"),
            rt.Param("mask", "tensor", "uint8"),
            rt.Param("ids", "tensor", "int64"),
            rt.Param("n", "uint"),
            rt.Param("flag", "bool"),
        ],
        "empty": [],
    }


def test_parse_slang_kernels_accepts_access_modifiers():
    source = """
    [CudaKernel] public void a(TensorView<float> x, int n) { }
    [CudaKernel]
    [Differentiable]
    internal static void b(DiffTensorView x) { }
    [CudaKernel] public [Differentiable] void c() { }
    public void not_a_kernel(TensorView<float> x) { }
    """
    assert rt.parse_slang_kernels({"a.slang": source}) == {
        "a": [rt.Param("x", "tensor", "float32"), rt.Param("n", "int")],
        "b": [rt.Param("x", "diff", "float32")],
        "c": [],
    }


@needs_slangc
def test_public_kernels_compile_into_the_kernel_table(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "public_kernels.slang").write_text(
        "[CudaKernel] public void scale_by(TensorView<float> x, float s, uint n)\n"
        "{\n"
        "    uint i = (cudaBlockIdx() * cudaBlockDim() + cudaThreadIdx()).x;\n"
        "    if (i < n) x[i] = x[i] * s;\n"
        "}\n"
    )
    module = rt.SlangModule(package=PACKAGE, entry=src / "public_kernels.slang")
    (tmp_path / "work").mkdir()
    _, table, _ = module.emit_cuda(tmp_path / "work")
    assert table == {
        "scale_by": [
            rt.Param("x", "tensor", "float32"),
            rt.Param("s", "float"),
            rt.Param("n", "uint"),
        ]
    }


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("uint3 v", "parameter v has type uint3"),
        ("TensorView<float3> t", "parameter t has type TensorView"),
        ("double d", "parameter d has type double"),
        ("MyStruct s", "parameter s has type MyStruct"),
    ],
)
def test_parse_slang_kernels_rejects_unsupported_parameters(declaration, message):
    source = f"[CudaKernel] void bad(TensorView<float> x, {declaration}) {{ }}"
    with pytest.raises(RuntimeError, match=f"kernel bad: {message}"):
        rt.parse_slang_kernels({"a.slang": source})


def test_kernel_table_checks_the_slang_source_against_the_cuda_signature():
    slang = {"a.slang": "[CudaKernel] void k(TensorView<float> x, int n) { }"}
    assert rt.kernel_table(slang, "__global__ void k(TensorView x_0, int n_3)\n{") == {
        "k": [rt.Param("x", "tensor", "float32"), rt.Param("n", "int")]
    }
    with pytest.raises(RuntimeError, match=r"parameters \['x', 'n'\] in the .slang source"):
        rt.kernel_table(slang, "__global__ void k(TensorView x_0, int m_3)\n{")
    with pytest.raises(RuntimeError, match="parameter n is lowered to CUDA type float"):
        rt.kernel_table(slang, "__global__ void k(TensorView x_0, float n_3)\n{")
    with pytest.raises(RuntimeError, match="kernel other is in slangc's output"):
        rt.kernel_table(slang, "__global__ void other(int a_0)\n{")


def test_add_autopybind_marks_every_kernel_once_and_keeps_line_numbers():
    text = "[CudaKernel]\nvoid a() {}\n[AutoPyBindCUDA]\n[CudaKernel]\nvoid b() {}\n"
    marked = rt._add_autopybind(text)
    assert marked.count("[AutoPyBindCUDA][CudaKernel]") == 2
    assert marked.count("AutoPyBindCUDA") == 2
    assert marked.count("\n") == text.count("\n")


# ----------------------------------------------------------------------------------------------
# Argument packing and checking


class FakeTensor:
    """Tensor-like with only what the packer reads."""

    def __init__(self, shape, stride, item, dtype=torch.float32, ptr=0x7F0000001000):
        self.shape, self._stride, self._item, self.dtype, self._ptr = (
            shape,
            stride,
            item,
            dtype,
            ptr,
        )
        self.device = torch.device("cuda", 0)

    def stride(self):
        return self._stride

    def element_size(self):
        return self._item

    def data_ptr(self):
        return self._ptr


def test_struct_layouts_match_slang():
    assert ctypes.sizeof(rt.TensorView) == 56  # 8 + 5*4 + 5*4 + 4, padded to 8
    assert rt.TensorView.strides.offset == 8
    assert rt.TensorView.sizes.offset == 28
    assert rt.TensorView.dimensionCount.offset == 48
    assert ctypes.sizeof(rt.DiffTensorView) == 112
    assert rt.DiffTensorView.diff.offset == 56


def test_tensor_view_packs_strides_in_bytes():
    view = rt.tensor_view(FakeTensor((3, 4), (1, 3), 4))  # a transposed [4, 3] float32
    assert view.data == 0x7F0000001000
    assert list(view.sizes) == [3, 4, 0, 0, 0]
    assert list(view.strides) == [4, 12, 0, 0, 0]
    assert view.dimensionCount == 2


def test_pack_arguments_with_real_cpu_tensors():
    x = torch.zeros(4, 6)[:, ::2]  # strided view, float32
    y = torch.zeros(3, 4).t()
    packed = rt.pack_arguments(
        "affine_fwd",
        PROBE_TABLE["affine_fwd"],
        {"x": x, "y": y, "scale": 0.5, "offset": -3, "negate": True},
        require_cuda=False,
    )
    assert [type(p) for p in packed] == [
        rt.TensorView,
        rt.TensorView,
        ctypes.c_float,
        ctypes.c_int32,
        ctypes.c_bool,
    ]
    assert packed[0].data == x.data_ptr()
    assert list(packed[0].strides)[:2] == [24, 8] and list(packed[0].sizes)[:2] == [4, 3]
    assert list(packed[1].strides)[:2] == [4, 16] and list(packed[1].sizes)[:2] == [4, 3]
    assert (packed[2].value, packed[3].value, packed[4].value) == (0.5, -3, True)
    keys = torch.arange(10, dtype=torch.int64)[::3]
    packed = rt.pack_arguments(
        "histogram",
        PROBE_TABLE["histogram"],
        {"keys": keys, "counts": torch.zeros(5, dtype=torch.int32), "num_bins": 5, "num_keys": 4},
        require_cuda=False,
    )
    assert list(packed[0].strides)[:1] == [24] and packed[0].dimensionCount == 1
    assert isinstance(packed[2], ctypes.c_uint32) and packed[3].value == 4
    primal, grad = torch.ones(7), torch.zeros(7)
    (diff, _) = rt.pack_arguments(
        "cube_bwd",
        PROBE_TABLE["cube_bwd"],
        {"x": (primal, grad), "y": [primal, grad]},
        require_cuda=False,
    )
    assert diff.primal.data == primal.data_ptr() and diff.diff.data == grad.data_ptr()
    assert list(diff.diff.sizes)[:1] == [7] and list(diff.diff.strides)[:1] == [4]


def _affine_args(**changes):
    args = {
        "x": FakeTensor((2, 2), (2, 1), 4),
        "y": FakeTensor((2, 2), (2, 1), 4),
        "scale": 1.0,
        "offset": 0,
        "negate": False,
    }
    args.update(changes)
    return args


#: (changes to valid `affine_fwd` arguments, the error they must raise)
BAD_AFFINE_ARGUMENTS = [
    ({"x": None}, "affine_fwd: argument x must be a float32 tensor, got NoneType"),
    (
        {"x": torch.zeros(2, 2, dtype=torch.float64)},
        "argument x must be a float32 tensor, got float64",
    ),
    ({"x": torch.zeros(2, 2)}, "argument x must be on a CUDA device, got a cpu tensor"),
    ({"y": FakeTensor((1,) * 6, (1,) * 6, 4)}, "argument y has 6 dimensions"),
    ({"scale": torch.tensor(1.0)}, "argument scale must be a Python float, got Tensor"),
    ({"scale": True}, "argument scale must be a Python float, got bool"),
    ({"offset": 1.5}, "argument offset must be a Python int, got float"),
    ({"offset": 2**31}, "argument offset=2147483648 does not fit a int"),
    ({"negate": 1}, "argument negate must be a bool, got int"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_AFFINE_ARGUMENTS)
def test_check_arguments_names_the_bad_argument(changes, message):
    with pytest.raises(ValueError, match=message):
        rt.pack_arguments("affine_fwd", PROBE_TABLE["affine_fwd"], _affine_args(**changes))


def test_check_arguments_names_all_missing_and_unknown_arguments():
    args = _affine_args(scael=2.0)
    del args["scale"], args["negate"]
    with pytest.raises(ValueError) as info:
        rt.check_arguments("affine_fwd", PROBE_TABLE["affine_fwd"], args)
    message = str(info.value)
    assert "missing argument(s) scale, negate" in message
    assert "unknown argument(s) scael" in message
    assert "parameters are x, y, scale, offset, negate" in message


def test_check_arguments_uint_range_and_diff_pairs():
    params = PROBE_TABLE["histogram"]
    keys = FakeTensor((4,), (1,), 8, dtype=torch.int64)
    counts = FakeTensor((3,), (1,), 4, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"num_bins=-1 does not fit a uint \[0, 4294967295\]"):
        rt.check_arguments(
            "h", params, {"keys": keys, "counts": counts, "num_bins": -1, "num_keys": 4}
        )
    rt.check_arguments(
        "h", params, {"keys": keys, "counts": counts, "num_bins": 2**32 - 1, "num_keys": 0}
    )
    diff = PROBE_TABLE["cube_bwd"]
    a, b = FakeTensor((4,), (1,), 4), FakeTensor((5,), (1,), 4)
    with pytest.raises(ValueError, match=r"argument x must be a \(primal, grad\) tuple"):
        rt.check_arguments("cube_bwd", diff, {"x": a, "y": (a, a)})
    with pytest.raises(ValueError, match=r"argument y: primal \[4\] and grad \[5\]"):
        rt.check_arguments("cube_bwd", diff, {"x": (a, a), "y": (a, b)})
    with pytest.raises(ValueError, match=r"argument x\[1\] \(grad\) must be a float32 tensor"):
        rt.check_arguments("cube_bwd", diff, {"x": (a, keys), "y": (a, a)})


def test_check_arguments_rejects_tensors_on_two_devices():
    other = FakeTensor((2, 2), (2, 1), 4)
    other.device = torch.device("cuda", 1)
    with pytest.raises(
        ValueError, match=r"tensors are on different devices \['cuda:0', 'cuda:1'\]"
    ):
        rt.check_arguments("affine_fwd", PROBE_TABLE["affine_fwd"], _affine_args(y=other))


def test_tensor_view_rejects_strides_beyond_uint32():
    with pytest.raises(ValueError, match="argument big: size 3 / stride 4294967296 bytes"):
        rt.tensor_view(FakeTensor((3,), (2**30,), 4), "big")


def test_launch_dims():
    assert rt.check_launch_dims("k", (1, 1, 1), (256, 1, 1))
    assert not rt.check_launch_dims("k", (0, 1, 1), (256, 1, 1))
    assert not rt.check_launch_dims("k", (5, 0, 2), (16, 16, 1))
    assert rt.check_launch_dims("k", (2**31 - 1, 65535, 65535), (1024, 1, 1))
    with pytest.raises(ValueError, match=r"k: grid \(2147483648, 1, 1\) is too large"):
        rt.check_launch_dims("k", (2**31, 1, 1), (256, 1, 1))
    with pytest.raises(ValueError, match=r"k: grid \(1, 65536, 1\) is too large"):
        rt.check_launch_dims("k", (1, 65536, 1), (256, 1, 1))
    with pytest.raises(ValueError, match=r"k: grid \(-1, 1, 1\) must not be negative"):
        rt.check_launch_dims("k", (-1, 1, 1), (256, 1, 1))
    with pytest.raises(ValueError, match=r"k: block \(64, 32, 1\) must be positive"):
        rt.check_launch_dims("k", (1, 1, 1), (64, 32, 1))
    with pytest.raises(ValueError, match=r"k: block \(0, 1, 1\)"):
        rt.check_launch_dims("k", (1, 1, 1), (0, 1, 1))
    with pytest.raises(ValueError, match="k: grid must be 3 ints"):
        rt.check_launch_dims("k", (1, 1), (1, 1, 1))


def test_quick_launch_dims_agrees_with_check_launch_dims():
    cases = [
        ((1, 1, 1), (256, 1, 1)),
        ((0, 1, 1), (256, 1, 1)),
        ((5, 0, 2), (16, 16, 1)),
        ((2**31 - 1, 65535, 65535), (1024, 1, 1)),
        ([3, 1, 1], [32, 1, 1]),
    ]
    for grid, block in cases:
        assert rt.quick_launch_dims("k", grid, block) == rt.check_launch_dims(
            "k", tuple(grid), tuple(block)
        )
    bad = [
        ((2**31, 1, 1), (256, 1, 1), "is too large"),
        ((1, 65536, 1), (256, 1, 1), "is too large"),
        ((-1, 1, 1), (256, 1, 1), "must not be negative"),
        ((1, 1, 1), (64, 32, 1), "must be positive"),
        ((1, 1, 1), (1, 1, 65), "must be positive"),
        ((1, 1), (1, 1, 1), "grid must be 3 ints"),
        ((1.0, 1, 1), (1, 1, 1), "grid must be 3 ints"),
    ]
    for grid, block, message in bad:
        with pytest.raises(ValueError, match=message):
            rt.quick_launch_dims("k", grid, block)


# ----------------------------------------------------------------------------------------------
# KernelLauncher: the cached argument layout of the launch path


def _launcher_bytes(launcher: rt.KernelLauncher) -> list[bytes]:
    """The bytes each pointer of the launcher's pointer array points at, per parameter."""
    sizes = {"tensor": 56, "diff": 112, "int": 4, "uint": 4, "float": 4, "bool": 1}
    return [
        ctypes.string_at(launcher.pointers[i], sizes[p.kind]) for i, p in enumerate(launcher.params)
    ]


def _ctypes_bytes(packed) -> list[bytes]:
    return [ctypes.string_at(ctypes.addressof(v), ctypes.sizeof(v)) for v in packed]


LAUNCH_CASES = {
    "affine_fwd": lambda: {
        "x": torch.zeros(4, 6)[:, ::2],
        "y": torch.zeros(3, 4).t(),
        "scale": 0.5,
        "offset": -3,
        "negate": True,
    },
    "histogram": lambda: {
        "keys": torch.arange(10, dtype=torch.int64)[::3],
        "counts": torch.zeros(5, dtype=torch.int32),
        "num_bins": 2**32 - 1,
        "num_keys": 0,
    },
    "cube_bwd": lambda: {
        "x": (torch.ones(7), torch.zeros(7)),
        "y": (torch.ones(2, 3, 1, 1, 2)[:, ::2], torch.zeros(2, 2, 1, 1, 2)),
    },
}


@pytest.mark.parametrize("kernel", sorted(LAUNCH_CASES))
def test_launcher_packs_the_same_bytes_as_pack_arguments(kernel):
    params = PROBE_TABLE[kernel]
    launcher = rt.KernelLauncher(kernel, params, require_cuda=False)
    for _ in range(2):  # the buffer is reused: the second fill must not keep stale bytes
        kwargs = LAUNCH_CASES[kernel]()
        assert launcher._quick_values(kwargs) is not None  # the quick path, not the fallback
        assert launcher.pack(kwargs) == -1  # CPU tensors
        expected = _ctypes_bytes(rt.pack_arguments(kernel, params, kwargs, require_cuda=False))
        assert _launcher_bytes(launcher) == expected


def test_launcher_layout_aligns_every_parameter():
    params = [
        rt.Param("flag", "bool"),
        rt.Param("t", "tensor", "float32"),
        rt.Param("n", "int"),
        rt.Param("d", "diff", "float32"),
        rt.Param("b", "bool"),
        rt.Param("f", "float"),
    ]
    launcher = rt.KernelLauncher("k", params, require_cuda=False)
    assert launcher.offsets == (0, 8, 64, 72, 184, 188)
    base = ctypes.addressof(launcher.buffer)
    assert [p - base for p in launcher.pointers] == list(launcher.offsets)
    kwargs = {
        "flag": True,
        "t": torch.zeros(2, 3),
        "n": -7,
        "d": (torch.zeros(4), torch.ones(4)),
        "b": False,
        "f": 2.5,
    }
    launcher.pack(kwargs)
    expected = _ctypes_bytes(rt.pack_arguments("k", params, kwargs, require_cuda=False))
    assert _launcher_bytes(launcher) == expected


def test_launcher_falls_back_for_values_the_quick_path_does_not_take():
    import numpy as np

    params = PROBE_TABLE["affine_fwd"]
    launcher = rt.KernelLauncher("affine_fwd", params, require_cuda=False)
    kwargs = {
        "x": torch.zeros(3),
        "y": torch.zeros(3),
        "scale": np.float32(0.25),
        "offset": np.int64(4),
        "negate": np.bool_(True),
    }
    assert launcher._quick_values(kwargs) is None
    launcher.pack(kwargs)
    expected = _ctypes_bytes(rt.pack_arguments("affine_fwd", params, kwargs, require_cuda=False))
    assert _launcher_bytes(launcher) == expected
    diff = rt.KernelLauncher("cube_bwd", PROBE_TABLE["cube_bwd"], require_cuda=False)
    pair = [torch.ones(2), torch.zeros(2)]  # a list, not a tuple: the slow path packs it
    diff.pack({"x": pair, "y": pair})
    expected = rt.pack_arguments("cube_bwd", diff.params, {"x": pair, "y": pair}, False)
    assert _launcher_bytes(diff) == _ctypes_bytes(expected)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        *BAD_AFFINE_ARGUMENTS,
        ({"offset": True}, "argument offset must be a Python int, got bool"),
        ({"scael": 1.0}, "unknown argument\\(s\\) scael"),
    ],
)
def test_launcher_raises_what_check_arguments_raises(changes, message):
    launcher = rt.KernelLauncher("affine_fwd", PROBE_TABLE["affine_fwd"])
    with pytest.raises(ValueError, match=message):
        launcher.pack(_affine_args(**changes))


def test_launcher_range_errors_come_from_the_descriptive_checks():
    launcher = rt.KernelLauncher("histogram", PROBE_TABLE["histogram"], require_cuda=False)
    counts = torch.zeros(3, dtype=torch.int32)
    keys = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"num_bins=-1 does not fit a uint"):
        launcher.pack({"keys": keys, "counts": counts, "num_bins": -1, "num_keys": 4})
    with pytest.raises(ValueError, match=r"num_keys=4294967296 does not fit a uint"):
        launcher.pack({"keys": keys, "counts": counts, "num_bins": 1, "num_keys": 2**32})
    huge_stride = torch.zeros(1, dtype=torch.int64).as_strided((1,), (2**31,))
    with pytest.raises(ValueError, match=r"argument keys: size 1 / stride 17179869184 bytes"):
        launcher.pack({"keys": huge_stride, "counts": counts, "num_bins": 1, "num_keys": 1})
    huge_size = torch.zeros(1, dtype=torch.int32).expand(2**32)
    with pytest.raises(ValueError, match=r"argument counts: size 4294967296 / stride 0"):
        launcher.pack({"keys": keys, "counts": huge_size, "num_bins": 1, "num_keys": 1})
    with pytest.raises(ValueError, match=r"tensors are on different devices"):
        other = FakeTensor((2,), (1,), 4, dtype=torch.int32)
        other.device = torch.device("cuda", 1)
        launcher.pack({"keys": keys, "counts": other, "num_bins": 1, "num_keys": 1})


class _CudaLike:
    """A CPU tensor that reports itself as a CUDA tensor on device 0 (for the launch path)."""

    is_cuda = True
    device = torch.device("cuda", 0)

    def __init__(self, tensor):
        self._t = tensor
        self.dtype, self.shape = tensor.dtype, tensor.shape

    def get_device(self):
        return 0

    def stride(self):
        return self._t.stride()

    def data_ptr(self):
        return self._t.data_ptr()

    def element_size(self):
        return self._t.element_size()


class _RecordingDriver:
    def __init__(self):
        self.launches = []
        self.current = []

    def make_current(self, device):
        self.current.append(device)

    def launch_pointers(self, function, grid, block, stream, pointers, name):
        self.launches.append((function, tuple(grid), tuple(block), stream, name, pointers))


def test_launch_path_packs_once_per_kernel_and_launches_on_the_raw_stream(monkeypatch):
    driver = _RecordingDriver()
    monkeypatch.setattr(rt._Driver, "get", classmethod(lambda cls: driver))
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda d: 0xABC, raising=False)
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    module._loader = "nvrtc"
    module._table = dict(PROBE_TABLE)
    module._functions = {0: {name: f"fn-{name}" for name in PROBE_TABLE}}
    monkeypatch.setattr(module, "_ensure_loaded", lambda device: None)
    x, y = _CudaLike(torch.arange(6.0).reshape(2, 3)), _CudaLike(torch.zeros(3, 2).t())
    args = {"x": x, "y": y, "scale": 2.0, "offset": 1, "negate": False}
    module.launch("affine_fwd", (2, 1, 1), (16, 16, 1), **args)
    launcher = module._launchers["affine_fwd"]
    module.launch("affine_fwd", [3, 1, 1], (16, 16, 1), **{**args, "offset": 5})
    assert module._launchers["affine_fwd"] is launcher  # built once
    assert [launch[:5] for launch in driver.launches] == [
        ("fn-affine_fwd", (2, 1, 1), (16, 16, 1), 0xABC, "affine_fwd"),
        ("fn-affine_fwd", (3, 1, 1), (16, 16, 1), 0xABC, "affine_fwd"),
    ]
    assert driver.current == [0, 0]
    offset = ctypes.c_int32.from_address(launcher.pointers[3]).value
    assert offset == 5 and ctypes.c_float.from_address(launcher.pointers[2]).value == 2.0
    view = rt.TensorView.from_address(launcher.pointers[1])
    assert view.data == y.data_ptr() and list(view.strides)[:2] == [4, 8]
    module.launch("affine_fwd", (0, 1, 1), (16, 16, 1), **args)  # empty grid: checked, no launch
    assert len(driver.launches) == 2
    with pytest.raises(ValueError, match="argument negate must be a bool"):
        module.launch("affine_fwd", (1, 1, 1), (16, 16, 1), **{**args, "negate": 0})
    with pytest.raises(ValueError, match="block"):
        module.launch("affine_fwd", (1, 1, 1), (2048, 1, 1), **args)
    assert len(driver.launches) == 2


# ----------------------------------------------------------------------------------------------
# Cache: location, key, locking


def test_cache_dir_location(monkeypatch, tmp_path):
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    monkeypatch.delenv("SLANG_MARCHING_CUBES_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert module.cache_dir == tmp_path / "home" / ".cache" / PACKAGE
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert module.cache_dir == tmp_path / "xdg" / PACKAGE
    monkeypatch.setenv("SLANG_MARCHING_CUBES_CACHE_DIR", str(tmp_path / "mine"))
    assert module.cache_dir == tmp_path / "mine"


def test_cache_key_covers_sources_loader_and_arch(tmp_path):
    module = probe_module(tmp_path)
    key = module.cache_key("nvrtc", 90)
    assert key == probe_module(tmp_path).cache_key("nvrtc", 90)
    assert module.cache_key("nvrtc", 80) != key
    assert module.cache_key("slangtorch", 90) != key
    helper = tmp_path / "src" / "runtime_probe_util.slang"  # an imported file, not the entry
    helper.write_text(helper.read_text() + "\n// edited\n")
    assert module.cache_key("nvrtc", 90) != key
    (tmp_path / "src" / "new.slang").write_text("// new file\n")
    assert len(module.sources()) == 3


_BUILDER = """
import importlib.util, os, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("runtime_copy", {runtime!r})
rt = importlib.util.module_from_spec(spec)
sys.modules["runtime_copy"] = rt
spec.loader.exec_module(rt)
go = Path({go!r})
while not go.exists():  # start both processes at the same moment
    time.sleep(0.01)

def build(tmp):
    with open({counter!r}, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    time.sleep(1.0)
    (tmp / "payload.bin").write_bytes(b"cubin")
    (tmp / "kernels.json").write_text("{{}}")

print(rt.build_cached(Path({folder!r}), build))
"""


def test_two_processes_starting_cold_compile_once(tmp_path):
    folder, counter, go = (
        tmp_path / "cache" / "nvrtc-sm90-key",
        tmp_path / "builds.txt",
        tmp_path / "go",
    )
    folder.parent.mkdir()
    script = _BUILDER.format(
        runtime=str(RUNTIME_FILE), go=str(go), counter=str(counter), folder=str(folder)
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    go.touch()
    outputs = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    assert sorted(outputs) == ["False", "True"]
    assert len(counter.read_text().splitlines()) == 1
    assert (folder / "payload.bin").read_bytes() == b"cubin"
    leftovers = [p.name for p in folder.parent.iterdir()]
    assert sorted(leftovers) == ["nvrtc-sm90-key", "nvrtc-sm90-key.lock"]


def test_failed_build_leaves_nothing_and_the_next_call_builds(tmp_path):
    folder = tmp_path / "k"

    def broken(tmp):
        (tmp / "partial.bin").write_bytes(b"x")
        raise RuntimeError("compiler exploded")

    with pytest.raises(RuntimeError, match="compiler exploded"):
        rt.build_cached(folder, broken)
    assert not folder.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["k.lock"]
    assert rt.build_cached(folder, lambda tmp: (tmp / "kernels.json").write_text("{}"))
    assert not rt.build_cached(folder, lambda tmp: pytest.fail("must not rebuild"))


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    lock = tmp_path / "k.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        waited = []
        with pytest.raises(TimeoutError, match="held by another process"):
            with rt.file_lock(lock, timeout=0.3, on_wait=lambda: waited.append(1)):
                pass
        assert waited == [1]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert lock.exists()  # the file stays behind; the lock does not
    start = time.monotonic()
    with rt.file_lock(lock, timeout=5):
        pass
    assert time.monotonic() - start < 1.0


def test_clear_cache_removes_the_package_folder(cache_env):
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    (cache_env / "nvrtc-sm90-abc").mkdir(parents=True)
    (cache_env / "nvrtc-sm90-abc" / "kernels.json").write_text("{}")
    module.clear_cache()
    assert not cache_env.exists()
    module.clear_cache()  # no cache: nothing to do


# ----------------------------------------------------------------------------------------------
# Loader selection, availability, compile errors


def test_loader_env_is_validated(monkeypatch):
    monkeypatch.setenv("SLANG_MARCHING_CUBES_LOADER", "nvcc")
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.raises(
        ValueError, match="SLANG_MARCHING_CUBES_LOADER must be one of nvrtc, slangtorch"
    ):
        module._choose_loader()
    monkeypatch.setenv("SLANG_MARCHING_CUBES_LOADER", "slangtorch")
    assert module._choose_loader() == "slangtorch"


def test_missing_nvrtc_falls_back_to_slangtorch_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("SLANG_MARCHING_CUBES_LOADER", raising=False)
    monkeypatch.setenv("SLANG_MARCHING_CUBES_NVRTC_PATH", str(tmp_path / "no-libnvrtc.so"))
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.warns(
        RuntimeWarning, match="NVRTC .* not found; using the slower slangtorch loader"
    ):
        assert module._choose_loader() == "slangtorch"


def test_slang_available_explains_why_not():
    available, reason = rt.slang_available()
    if not torch.cuda.is_available():
        assert not available and "no CUDA device" in reason
    else:
        assert available == (rt.find_slangc() is not None)


@needs_slangc
def test_compile_error_carries_message_versions_and_advice(tmp_path):
    module = probe_module(tmp_path)
    entry = tmp_path / "src" / PROBE.name
    entry.write_text(entry.read_text().replace("float v = x[idx.x];", "float v = undefined_name;"))
    module._loader = "nvrtc"
    with pytest.raises(RuntimeError) as info:
        module._build_nvrtc(tmp_path, 90, Path("/nonexistent/libnvrtc.so.13"))
    message = str(info.value)
    assert "slang_marching_cubes: compiling the Slang kernels failed" in message
    assert "undefined identifier 'undefined_name'" in message
    assert "runtime_probe.slang" in message
    assert f"torch {torch.__version__}" in message and "GPU sm_90" in message
    assert "SLANG_MARCHING_CUBES_LOADER=slangtorch" in message
    assert "the reference backend (backend='reference')" in message
    assert "backend='torch'" not in message


def _nvrtc_or_skip() -> rt.Nvrtc:
    path = rt.find_nvrtc(PACKAGE)
    if path is None:
        pytest.skip(
            "no NVRTC found: pip install nvidia-cuda-nvrtc (CUDA 13) or nvidia-cuda-nvrtc-cu12, "
            "or set SLANG_MARCHING_CUBES_NVRTC_PATH"
        )
    return rt.Nvrtc(path)


@needs_slangc
@pytest.mark.parametrize("arch", [80, 90])
def test_nvrtc_compiles_the_emitted_cuda(tmp_path, arch):
    nvrtc = _nvrtc_or_skip()
    source, table, _ = probe_module(tmp_path).emit_cuda(tmp_path)
    binary, kind, lowered, _ = nvrtc.compile(source, list(table), arch)
    assert kind == "cubin" and binary[:4] == b"\x7fELF"
    assert set(lowered) == set(PROBE_TABLE)
    assert all(name.startswith("_Z") and kernel in name for kernel, name in lowered.items())


@needs_slangc
def test_nvrtc_emits_ptx_for_an_architecture_newer_than_it_knows(tmp_path):
    nvrtc = _nvrtc_or_skip()
    source, table, _ = probe_module(tmp_path).emit_cuda(tmp_path)
    binary, kind, _, _ = nvrtc.compile(source, list(table), max(nvrtc.archs) + 1)
    assert kind == "ptx"
    assert f".target sm_{max(nvrtc.archs)}" in binary.decode(errors="replace")


# ----------------------------------------------------------------------------------------------
# GPU: both loaders against torch

TIMES: dict[str, float] = {}


@pytest.fixture(scope="module", params=["nvrtc", "slangtorch"])
def gpu_module(request, tmp_path_factory):
    loader = request.param
    if loader == "nvrtc" and rt.find_nvrtc(PACKAGE) is None:
        pytest.skip("no NVRTC found")
    root = tmp_path_factory.mktemp(loader)
    patch = pytest.MonkeyPatch()
    patch.setenv("SLANG_MARCHING_CUBES_LOADER", loader)
    patch.setenv("SLANG_MARCHING_CUBES_CACHE_DIR", str(root / "cache"))
    module = probe_module(root)
    torch.zeros(1, device="cuda")
    start = time.perf_counter()
    folder = module.precompile()
    TIMES[f"{loader} cold"] = time.perf_counter() - start
    print(f"\n[{loader}] cold compile {TIMES[f'{loader} cold']:.2f} s -> {folder}")
    assert module._loader == loader
    yield module
    patch.undo()


@pytest.mark.cuda
def test_gpu_forward_on_strided_views(gpu_module):
    base = torch.randn(64, 90, device="cuda")
    x = base[::2, 1::3]  # [32, 30], non-contiguous
    y = torch.full((30, 32), float("nan"), device="cuda").t()  # transposed output view
    assert not x.is_contiguous() and not y.is_contiguous()
    gpu_module.launch(
        "affine_fwd",
        grid=(2, 2, 1),
        block=(16, 16, 1),
        x=x,
        y=y,
        scale=0.25,
        offset=-3,
        negate=True,
    )
    torch.cuda.synchronize()
    assert torch.equal(y, -(x * 0.25 - 3))


@pytest.mark.cuda
def test_gpu_autodiff_backward_matches_torch(gpu_module):
    n = 1000
    x = torch.randn(n, device="cuda", dtype=torch.float32)
    y = torch.zeros_like(x)
    gpu_module.launch(
        "cube_diff", grid=(4, 1, 1), block=(256, 1, 1), x=(x, torch.zeros_like(x)), y=(y, y.clone())
    )
    grad_y = torch.randn_like(x)
    grad_x = torch.zeros_like(x)
    expected_grad_y = grad_y.clone()  # the store's backward consumes the output gradient
    gpu_module.launch("cube_bwd", grid=(4, 1, 1), block=(256, 1, 1), x=(x, grad_x), y=(y, grad_y))
    reference = x.clone().requires_grad_(True)
    (reference * reference * reference).backward(expected_grad_y)
    torch.cuda.synchronize()
    assert torch.equal(y, x * x * x)
    torch.testing.assert_close(grad_x, reference.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_gpu_int64_and_atomics(gpu_module):
    keys = torch.randint(0, 2**40, (10_000,), device="cuda", dtype=torch.int64)
    counts = torch.zeros(37, device="cuda", dtype=torch.int32)
    gpu_module.launch(
        "histogram",
        grid=(40, 1, 1),
        block=(256, 1, 1),
        keys=keys,
        counts=counts,
        num_bins=37,
        num_keys=keys.numel(),
    )
    torch.cuda.synchronize()
    assert torch.equal(counts, torch.bincount(keys % 37, minlength=37).to(torch.int32))


@pytest.mark.cuda
def test_gpu_empty_launch_is_a_no_op(gpu_module):
    keys = torch.empty(0, device="cuda", dtype=torch.int64)
    counts = torch.full((3,), 7, device="cuda", dtype=torch.int32)
    gpu_module.launch(
        "histogram",
        grid=(0, 1, 1),
        block=(256, 1, 1),
        keys=keys,
        counts=counts,
        num_bins=3,
        num_keys=0,
    )
    torch.cuda.synchronize()
    assert counts.tolist() == [7, 7, 7]


@pytest.mark.cuda
def test_gpu_launch_rejects_bad_arguments(gpu_module):
    x = torch.zeros(4, 4, device="cuda")
    with pytest.raises(ValueError, match="argument y must be on a CUDA device"):
        gpu_module.launch(
            "affine_fwd",
            (1, 1, 1),
            (16, 16, 1),
            x=x,
            y=torch.zeros(4, 4),
            scale=1.0,
            offset=0,
            negate=False,
        )
    with pytest.raises(ValueError, match="no kernel 'nope'; kernels are"):
        gpu_module.launch("nope", (1, 1, 1), (1, 1, 1))


@pytest.mark.cuda
def test_gpu_warm_start_in_a_second_process(gpu_module):
    loader = gpu_module._loader
    code = textwrap.dedent(
        f"""
        import time, torch
        torch.zeros(1, device="cuda")
        from slang_marching_cubes import _slang_runtime as rt
        start = time.perf_counter()
        module = rt.SlangModule(package={PACKAGE!r}, entry={str(gpu_module.entry)!r})
        module.precompile()
        x = torch.ones(3, 2, device="cuda")
        y = torch.zeros_like(x)
        module.launch("affine_fwd", (1, 1, 1), (16, 16, 1), x=x, y=y, scale=2.0, offset=1,
                      negate=False)
        torch.cuda.synchronize()
        assert y.eq(3).all()
        print(time.perf_counter() - start)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    assert "compiling kernels" not in result.stderr
    warm = float(result.stdout.strip().splitlines()[-1])
    TIMES[f"{loader} warm"] = warm
    print(f"\n[{loader}] warm start (second process, load + first launch) {warm:.3f} s")
    if loader == "nvrtc":
        assert warm < 1.0
