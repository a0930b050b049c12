"""`SlangModule`: loader selection, availability, compile errors, NVRTC compiling the emitted
CUDA for sm_80/sm_90 (CPU, when an NVRTC is installed), and on a GPU (marker ``cuda``) the probe
kernels through both loaders against torch, strided views, empty launches, cold and warm starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from kernel_runtime_helpers import (
    ENV_CACHE,
    PACKAGE,
    PROBE,
    PROBE_TABLE,
    break_probe,
    needs_slangc,
    probe_copy,
    probe_module,
)

from slang_kernel_runtime import SlangModule, nvrtc, slangc
from slang_kernel_runtime import module as runtime_module


def test_loader_env_is_validated(monkeypatch):
    monkeypatch.setenv("RUNTIME_PROBE_LOADER", "nvcc")
    module = SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.raises(ValueError, match="RUNTIME_PROBE_LOADER must be one of nvrtc, slangtorch"):
        module._choose_loader()
    monkeypatch.setenv("RUNTIME_PROBE_LOADER", "slangtorch")
    assert module._choose_loader() == "slangtorch"


def test_missing_nvrtc_falls_back_to_slangtorch_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNTIME_PROBE_LOADER", raising=False)
    monkeypatch.setenv("RUNTIME_PROBE_NVRTC_PATH", str(tmp_path / "no-libnvrtc.so"))
    module = SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.warns(
        RuntimeWarning, match="NVRTC .* not found; using the slower slangtorch loader"
    ):
        assert module._choose_loader() == "slangtorch"


def test_slang_available_explains_why_not():
    available, reason = runtime_module.slang_available()
    if not torch.cuda.is_available():
        assert not available and "no CUDA device" in reason
    else:
        assert available == (slangc.find_slangc() is not None)


def test_slang_available_reasons(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    ok, why = runtime_module.slang_available()
    assert not ok and why.startswith("no CUDA device: torch ") and "CPU-only build" in why
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = runtime_module.slang_available()
    assert not ok and "no CUDA device (torch.cuda.is_available() is False" in why
    assert "built for CUDA 12.8" in why and "NVIDIA driver" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runtime_module, "find_slangc", lambda: None)
    assert runtime_module.slang_available() == (
        False,
        "slangc not found: install slangtorch (pip install slangtorch)",
    )


@needs_slangc
def test_compile_error_carries_message_versions_and_advice(tmp_path):
    module = probe_module(tmp_path)
    break_probe(tmp_path / "src" / PROBE.name)
    module._loader = "nvrtc"
    with pytest.raises(RuntimeError) as info:
        module._build_nvrtc(tmp_path, 90, Path("/nonexistent/libnvrtc.so.13"))
    message = str(info.value)
    assert "runtime_probe: compiling the Slang kernels failed" in message
    assert "undefined identifier 'undefined_name'" in message
    assert "runtime_probe.slang" in message
    assert f"torch {torch.__version__}" in message and "GPU sm_90" in message
    assert "RUNTIME_PROBE_LOADER=slangtorch" in message
    assert "the reference backend (backend='reference')" in message
    assert "backend='torch'" not in message


def test_check_without_nvrtc_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNTIME_PROBE_NVRTC_PATH", str(tmp_path / "none.so"))
    module = SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.raises(RuntimeError, match="NVRTC .* not found at .*none.so; pip install nvidia"):
        module.compile_only(90)


def _nvrtc_or_skip() -> nvrtc.Nvrtc:
    path = nvrtc.find_nvrtc(PACKAGE)
    if path is None:
        pytest.skip(
            "no NVRTC found: pip install nvidia-cuda-nvrtc (CUDA 13) or nvidia-cuda-nvrtc-cu12, "
            "or set RUNTIME_PROBE_NVRTC_PATH"
        )
    return nvrtc.Nvrtc(path)


@needs_slangc
@pytest.mark.parametrize("arch", [80, 90])
def test_nvrtc_compiles_the_emitted_cuda(tmp_path, arch):
    compiler = _nvrtc_or_skip()
    source, table, _ = probe_module(tmp_path).emit_cuda(tmp_path)
    binary, kind, lowered, _ = compiler.compile(source, list(table), arch)
    assert kind == "cubin" and binary[:4] == b"\x7fELF"
    assert set(lowered) == set(PROBE_TABLE)
    assert all(name.startswith("_Z") and kernel in name for kernel, name in lowered.items())


@needs_slangc
def test_nvrtc_emits_ptx_for_an_architecture_newer_than_it_knows(tmp_path):
    compiler = _nvrtc_or_skip()
    source, table, _ = probe_module(tmp_path).emit_cuda(tmp_path)
    binary, kind, _, _ = compiler.compile(source, list(table), max(compiler.archs) + 1)
    assert kind == "ptx"
    assert f".target sm_{max(compiler.archs)}" in binary.decode(errors="replace")


@needs_slangc
def test_compile_only_keeps_outputs_and_times_both_steps(tmp_path):
    path = nvrtc.find_nvrtc(PACKAGE)
    if path is None:
        pytest.skip("no NVRTC found (pip install nvidia-cuda-nvrtc)")
    module = SlangModule(package=PACKAGE, entry=probe_copy(tmp_path))
    info = module.compile_only(80, output=tmp_path / "out")
    assert sorted(info["kernels"]) == ["affine_fwd", "cube_bwd", "cube_diff", "histogram"]
    assert info["binary"] == "cubin" and info["arch"] == 80
    assert info["binary_bytes"] == (tmp_path / "out" / "kernels.cubin").stat().st_size
    assert 0 < info["slangc_s"] < 60 and 0 < info["nvrtc_s"] < 60
    assert not module.cache_dir.exists() or not list(module.cache_dir.iterdir())


# GPU: the probe kernels through both loaders. The tests look alike on purpose: each launches
# one probe kernel (one parameter kind or launch feature) and compares with torch.

TIMES: dict[str, float] = {}


@pytest.fixture(scope="module", params=["nvrtc", "slangtorch"])
def gpu_module(request, tmp_path_factory):
    loader = request.param
    if loader == "nvrtc" and nvrtc.find_nvrtc(PACKAGE) is None:
        pytest.skip("no NVRTC found")
    root = tmp_path_factory.mktemp(loader)
    patch = pytest.MonkeyPatch()
    patch.setenv("RUNTIME_PROBE_LOADER", loader)
    patch.setenv(ENV_CACHE, str(root / "cache"))
    module = probe_module(root)
    torch.zeros(1, device="cuda")
    start = time.perf_counter()
    folder = module.precompile()
    TIMES[f"{loader} cold"] = time.perf_counter() - start
    print(f"\n[{loader}] cold compile {TIMES[f'{loader} cold']:.2f} s -> {folder}")
    assert module.loader == loader
    yield module
    patch.undo()


# The GPU tests spell out each launch in full (parameter names are part of what they check),
# so their launch calls look alike by design.
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
    loader = gpu_module.loader
    code = textwrap.dedent(
        f"""
        import time, torch
        torch.zeros(1, device="cuda")
        from slang_kernel_runtime import SlangModule
        start = time.perf_counter()
        module = SlangModule(package={PACKAGE!r}, entry={str(gpu_module.entry)!r})
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


_PRECOMPILE = """
import os, time
from slang_kernel_runtime import SlangModule
go = {go!r}
while not os.path.exists(go):
    time.sleep(0.01)
module = SlangModule(package={package!r}, entry={entry!r})
print(module.precompile())
"""


@pytest.mark.cuda
def test_gpu_two_cold_processes_precompile_once(tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    script = _PRECOMPILE.format(go=str(go), package=PACKAGE, entry=str(probe_copy(tmp_path)))
    env = {**os.environ, ENV_CACHE: str(cache)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    time.sleep(3.0)  # both import torch and wait at the start line
    go.touch()
    results = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [r[1] for r in results]
    folders = {r[0].strip().splitlines()[-1] for r in results}
    assert len(folders) == 1
    assert sum("compiling kernels (first use only)" in r[1] for r in results) == 1
    builds = [p for p in cache.iterdir() if (p / "kernels.json").is_file()]
    assert [str(p) for p in builds] == list(folders)


@pytest.mark.cuda
def test_gpu_precompile_of_broken_slang_raises_with_the_message(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    entry = probe_copy(tmp_path)
    break_probe(entry)
    module = SlangModule(package=PACKAGE, entry=entry)
    with pytest.raises(RuntimeError) as info:
        module.precompile()
    message = str(info.value)
    assert "compiling the Slang kernels failed" in message
    assert "undefined identifier 'undefined_name'" in message and "Versions: " in message
    major, minor = torch.cuda.get_device_capability()
    assert f"GPU sm_{major * 10 + minor}" in message
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]
