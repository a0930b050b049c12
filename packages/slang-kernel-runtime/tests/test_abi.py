"""Kernel arguments: Slang's struct layouts, checks that name the bad argument, packing, launch
dimensions, and the per-kernel launcher of the launch path (CPU)."""

from __future__ import annotations

import ctypes

import pytest
import torch
from kernel_runtime_helpers import PACKAGE, PROBE, PROBE_TABLE

from slang_kernel_runtime import SlangModule, abi, driver, parsing


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
    assert ctypes.sizeof(abi.TensorView) == 56  # 8 + 5*4 + 5*4 + 4, padded to 8
    assert abi.TensorView.strides.offset == 8
    assert abi.TensorView.sizes.offset == 28
    assert abi.TensorView.dimensionCount.offset == 48
    assert ctypes.sizeof(abi.DiffTensorView) == 112
    assert abi.DiffTensorView.diff.offset == 56


def test_tensor_view_packs_strides_in_bytes():
    view = abi.tensor_view(FakeTensor((3, 4), (1, 3), 4))  # a transposed [4, 3] float32
    assert view.data == 0x7F0000001000
    assert list(view.sizes) == [3, 4, 0, 0, 0]
    assert list(view.strides) == [4, 12, 0, 0, 0]
    assert view.dimensionCount == 2


def test_pack_arguments_with_real_cpu_tensors():
    x = torch.zeros(4, 6)[:, ::2]  # strided view, float32
    y = torch.zeros(3, 4).t()
    packed = abi.pack_arguments(
        "affine_fwd",
        PROBE_TABLE["affine_fwd"],
        {"x": x, "y": y, "scale": 0.5, "offset": -3, "negate": True},
        require_cuda=False,
    )
    assert [type(p) for p in packed] == [
        abi.TensorView,
        abi.TensorView,
        ctypes.c_float,
        ctypes.c_int32,
        ctypes.c_bool,
    ]
    assert packed[0].data == x.data_ptr()
    assert list(packed[0].strides)[:2] == [24, 8] and list(packed[0].sizes)[:2] == [4, 3]
    assert list(packed[1].strides)[:2] == [4, 16] and list(packed[1].sizes)[:2] == [4, 3]
    assert (packed[2].value, packed[3].value, packed[4].value) == (0.5, -3, True)
    keys = torch.arange(10, dtype=torch.int64)[::3]
    packed = abi.pack_arguments(
        "histogram",
        PROBE_TABLE["histogram"],
        {"keys": keys, "counts": torch.zeros(5, dtype=torch.int32), "num_bins": 5, "num_keys": 4},
        require_cuda=False,
    )
    assert list(packed[0].strides)[:1] == [24] and packed[0].dimensionCount == 1
    assert isinstance(packed[2], ctypes.c_uint32) and packed[3].value == 4
    primal, grad = torch.ones(7), torch.zeros(7)
    (diff, _) = abi.pack_arguments(
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
        abi.pack_arguments("affine_fwd", PROBE_TABLE["affine_fwd"], _affine_args(**changes))


def test_check_arguments_names_all_missing_and_unknown_arguments():
    args = _affine_args(scael=2.0)
    del args["scale"], args["negate"]
    with pytest.raises(ValueError) as info:
        abi.check_arguments("affine_fwd", PROBE_TABLE["affine_fwd"], args)
    message = str(info.value)
    assert "missing argument(s) scale, negate" in message
    assert "unknown argument(s) scael" in message
    assert "parameters are x, y, scale, offset, negate" in message


def test_check_arguments_uint_range_and_diff_pairs():
    params = PROBE_TABLE["histogram"]
    keys = FakeTensor((4,), (1,), 8, dtype=torch.int64)
    counts = FakeTensor((3,), (1,), 4, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"num_bins=-1 does not fit a uint \[0, 4294967295\]"):
        abi.check_arguments(
            "h", params, {"keys": keys, "counts": counts, "num_bins": -1, "num_keys": 4}
        )
    abi.check_arguments(
        "h", params, {"keys": keys, "counts": counts, "num_bins": 2**32 - 1, "num_keys": 0}
    )
    diff = PROBE_TABLE["cube_bwd"]
    a, b = FakeTensor((4,), (1,), 4), FakeTensor((5,), (1,), 4)
    with pytest.raises(ValueError, match=r"argument x must be a \(primal, grad\) tuple"):
        abi.check_arguments("cube_bwd", diff, {"x": a, "y": (a, a)})
    with pytest.raises(ValueError, match=r"argument y: primal \[4\] and grad \[5\]"):
        abi.check_arguments("cube_bwd", diff, {"x": (a, a), "y": (a, b)})
    with pytest.raises(ValueError, match=r"argument x\[1\] \(grad\) must be a float32 tensor"):
        abi.check_arguments("cube_bwd", diff, {"x": (a, keys), "y": (a, a)})


def test_check_arguments_rejects_tensors_on_two_devices():
    other = FakeTensor((2, 2), (2, 1), 4)
    other.device = torch.device("cuda", 1)
    with pytest.raises(
        ValueError, match=r"tensors are on different devices \['cuda:0', 'cuda:1'\]"
    ):
        abi.check_arguments("affine_fwd", PROBE_TABLE["affine_fwd"], _affine_args(y=other))


def test_tensor_view_rejects_strides_beyond_uint32():
    with pytest.raises(ValueError, match="argument big: size 3 / stride 4294967296 bytes"):
        abi.tensor_view(FakeTensor((3,), (2**30,), 4), "big")


def test_launch_dims():
    assert abi.check_launch_dims("k", (1, 1, 1), (256, 1, 1))
    assert not abi.check_launch_dims("k", (0, 1, 1), (256, 1, 1))
    assert not abi.check_launch_dims("k", (5, 0, 2), (16, 16, 1))
    assert abi.check_launch_dims("k", (2**31 - 1, 65535, 65535), (1024, 1, 1))
    with pytest.raises(ValueError, match=r"k: grid \(2147483648, 1, 1\) is too large"):
        abi.check_launch_dims("k", (2**31, 1, 1), (256, 1, 1))
    with pytest.raises(ValueError, match=r"k: grid \(1, 65536, 1\) is too large"):
        abi.check_launch_dims("k", (1, 65536, 1), (256, 1, 1))
    with pytest.raises(ValueError, match=r"k: grid \(-1, 1, 1\) must not be negative"):
        abi.check_launch_dims("k", (-1, 1, 1), (256, 1, 1))
    with pytest.raises(ValueError, match=r"k: block \(64, 32, 1\) must be positive"):
        abi.check_launch_dims("k", (1, 1, 1), (64, 32, 1))
    with pytest.raises(ValueError, match=r"k: block \(0, 1, 1\)"):
        abi.check_launch_dims("k", (1, 1, 1), (0, 1, 1))
    with pytest.raises(ValueError, match="k: grid must be 3 ints"):
        abi.check_launch_dims("k", (1, 1), (1, 1, 1))


def test_quick_launch_dims_agrees_with_check_launch_dims():
    cases = [
        ((1, 1, 1), (256, 1, 1)),
        ((0, 1, 1), (256, 1, 1)),
        ((5, 0, 2), (16, 16, 1)),
        ((2**31 - 1, 65535, 65535), (1024, 1, 1)),
        ([3, 1, 1], [32, 1, 1]),
    ]
    for grid, block in cases:
        assert abi.quick_launch_dims("k", grid, block) == abi.check_launch_dims(
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
            abi.quick_launch_dims("k", grid, block)


def _launcher_bytes(launcher: abi.KernelLauncher) -> list[bytes]:
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
    launcher = abi.KernelLauncher(kernel, params, require_cuda=False)
    for _ in range(2):  # the buffer is reused: the second fill must not keep stale bytes
        kwargs = LAUNCH_CASES[kernel]()
        assert launcher._quick_values(kwargs) is not None  # the quick path, not the fallback
        assert launcher.pack(kwargs) == -1  # CPU tensors
        expected = _ctypes_bytes(abi.pack_arguments(kernel, params, kwargs, require_cuda=False))
        assert _launcher_bytes(launcher) == expected


def test_launcher_layout_aligns_every_parameter():
    params = [
        parsing.Param("flag", "bool"),
        parsing.Param("t", "tensor", "float32"),
        parsing.Param("n", "int"),
        parsing.Param("d", "diff", "float32"),
        parsing.Param("b", "bool"),
        parsing.Param("f", "float"),
    ]
    launcher = abi.KernelLauncher("k", params, require_cuda=False)
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
    expected = _ctypes_bytes(abi.pack_arguments("k", params, kwargs, require_cuda=False))
    assert _launcher_bytes(launcher) == expected


def test_launcher_falls_back_for_values_the_quick_path_does_not_take():
    import numpy as np

    params = PROBE_TABLE["affine_fwd"]
    launcher = abi.KernelLauncher("affine_fwd", params, require_cuda=False)
    kwargs = {
        "x": torch.zeros(3),
        "y": torch.zeros(3),
        "scale": np.float32(0.25),
        "offset": np.int64(4),
        "negate": np.bool_(True),
    }
    assert launcher._quick_values(kwargs) is None
    launcher.pack(kwargs)
    expected = _ctypes_bytes(abi.pack_arguments("affine_fwd", params, kwargs, require_cuda=False))
    assert _launcher_bytes(launcher) == expected
    diff = abi.KernelLauncher("cube_bwd", PROBE_TABLE["cube_bwd"], require_cuda=False)
    pair = [torch.ones(2), torch.zeros(2)]  # a list, not a tuple: the slow path packs it
    diff.pack({"x": pair, "y": pair})
    expected = abi.pack_arguments("cube_bwd", diff.params, {"x": pair, "y": pair}, False)
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
    launcher = abi.KernelLauncher("affine_fwd", PROBE_TABLE["affine_fwd"])
    with pytest.raises(ValueError, match=message):
        launcher.pack(_affine_args(**changes))


def test_launcher_range_errors_come_from_the_descriptive_checks():
    launcher = abi.KernelLauncher("histogram", PROBE_TABLE["histogram"], require_cuda=False)
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
    recorder = _RecordingDriver()
    monkeypatch.setattr(driver.Driver, "get", classmethod(lambda cls: recorder))
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda d: 0xABC, raising=False)
    module = SlangModule(package=PACKAGE, entry=PROBE)
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
    assert [launch[:5] for launch in recorder.launches] == [
        ("fn-affine_fwd", (2, 1, 1), (16, 16, 1), 0xABC, "affine_fwd"),
        ("fn-affine_fwd", (3, 1, 1), (16, 16, 1), 0xABC, "affine_fwd"),
    ]
    assert recorder.current == [0, 0]
    offset = ctypes.c_int32.from_address(launcher.pointers[3]).value
    assert offset == 5 and ctypes.c_float.from_address(launcher.pointers[2]).value == 2.0
    view = abi.TensorView.from_address(launcher.pointers[1])
    assert view.data == y.data_ptr() and list(view.strides)[:2] == [4, 8]
    module.launch("affine_fwd", (0, 1, 1), (16, 16, 1), **args)  # empty grid: checked, no launch
    assert len(recorder.launches) == 2
    with pytest.raises(ValueError, match="argument negate must be a bool"):
        module.launch("affine_fwd", (1, 1, 1), (16, 16, 1), **{**args, "negate": 0})
    with pytest.raises(ValueError, match="block"):
        module.launch("affine_fwd", (1, 1, 1), (2048, 1, 1), **args)
    assert len(recorder.launches) == 2


def test_tensor_views_beyond_4_gib_are_refused_by_both_packing_paths():
    # Slang computes a view's byte offsets in uint32: an element past 4 GiB would wrap around
    big = FakeTensor((2**19 + 1, 2**10), (2**10, 1), 8, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"argument keys: \[524289, 1024\] reaches byte offset"):
        abi.tensor_view(big, "keys")
    fits = FakeTensor((2**19, 2**10), (2**10, 1), 8, dtype=torch.int64)  # last byte: 4 GiB - 1
    assert abi.tensor_view(fits, "keys").sizes[0] == 2**19

    class HostTensor(FakeTensor):  # what the launcher's quick path reads, on the CPU
        is_cuda = False

        def get_device(self):
            return -1

    launcher = abi.KernelLauncher("histogram", PROBE_TABLE["histogram"], require_cuda=False)
    counts = HostTensor((3,), (1,), 4, dtype=torch.int32)
    assert launcher.pack({"keys": HostTensor((2**29,), (1,), 8, dtype=torch.int64),
                          "counts": counts, "num_bins": 1, "num_keys": 1}) in (-1, 0)  # fmt: skip
    flat = HostTensor((2**29 + 1,), (1,), 8, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"argument keys: \[536870913\] reaches byte offset"):
        launcher.pack({"keys": flat, "counts": counts, "num_bins": 1, "num_keys": 1})
