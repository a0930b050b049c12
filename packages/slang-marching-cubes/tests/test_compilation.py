"""Kernel compilation as users see it.

The public hook ``slang_marching_cubes.compilation``, ``python -m slang_marching_cubes
precompile | check | clear-cache | info``, cache reports, a build killed half way, compile errors
through the public path, the slangtorch build's C++ standard, and why the Slang backend is
unavailable.

CPU unless marked ``cuda``. The probe module (tests/data/runtime_probe.slang) stands in for the
package's kernels where a test needs known kernels.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slang_marching_cubes import _slang_runtime as rt
from slang_marching_cubes import compilation

DATA = Path(__file__).parent / "data"
PROBE = DATA / "runtime_probe.slang"
RUNTIME_FILE = Path(rt.__file__)
PACKAGE = "slang_marching_cubes"
ENV_CACHE = "SLANG_MARCHING_CUBES_CACHE_DIR"
needs_slangc = pytest.mark.skipif(rt.find_slangc() is None, reason="slangtorch (slangc) missing")


def probe_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(DATA, src)
    return src / PROBE.name


def break_probe(entry: Path) -> None:
    text = entry.read_text()
    assert "float v = x[idx.x];" in text
    entry.write_text(text.replace("float v = x[idx.x];", "float v = undefined_name;"))


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV_CACHE, str(cache))
    return cache


# ----------------------------------------------------------------------------------------------
# The public hook


def test_hook_names_the_package_entry_module(cache_env):
    assert compilation.PACKAGE == PACKAGE
    assert compilation.ENTRY.name == "marching_cubes.slang"
    assert compilation.ENTRY.parent.parent == Path(compilation.__file__).parent
    assert compilation.entry_modules() == (
        [compilation.ENTRY] if compilation.ENTRY.is_file() else []
    )
    module = compilation.slang_module()
    assert module is compilation.slang_module()  # one per process: precompile serves launches
    assert (module.package, module.entry) == (PACKAGE, compilation.ENTRY)
    assert compilation.cache_dir() == cache_env
    assert compilation.cache_entries() == []


def test_python_dash_m_info_runs_without_a_gpu(cache_env):
    result = subprocess.run(
        [sys.executable, "-m", PACKAGE, "info"],
        capture_output=True,
        text=True,
        env={**os.environ, ENV_CACHE: str(cache_env)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"cache: {cache_env} (0 build(s), 0 B" in result.stdout
    assert "slangc:" in result.stdout and "NVRTC:" in result.stdout and "loader:" in result.stdout


def test_hook_kernels_compile_for_sm80_and_sm90(tmp_path):
    """The package's own kernels through slangc and NVRTC (skipped without both)."""
    if not compilation.entry_modules():
        pytest.skip("this version ships no Slang kernels yet")
    if rt.find_slangc() is None or rt.find_nvrtc(PACKAGE) is None:
        pytest.skip("needs slangc (slangtorch) and NVRTC (nvidia-cuda-nvrtc wheel)")
    for arch in (80, 90):
        info = compilation.slang_module().compile_only(arch, output=tmp_path / str(arch))
        assert info["binary"] == "cubin" and info["kernels"]
        assert (tmp_path / str(arch) / "kernels.cubin").read_bytes()[:4] == b"\x7fELF"


# ----------------------------------------------------------------------------------------------
# The command line


def test_command_line_without_kernels(tmp_path, cache_env, capsys):
    module = rt.SlangModule(package=PACKAGE, entry=tmp_path / "missing" / "marching_cubes.slang")
    assert rt.command_line(module, ["precompile"]) == 0
    assert "no Slang kernels in this version" in capsys.readouterr().out
    assert rt.command_line(module, ["check"]) == 0
    assert "nothing to check" in capsys.readouterr().out


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_command_line_precompile_without_cuda_says_why(tmp_path, cache_env, capsys):
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    assert rt.command_line(module, ["precompile"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("slang_marching_cubes: cannot precompile here: no CUDA device")
    assert not cache_env.exists()


def test_command_line_rejects_bad_arch(capsys):
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.raises(SystemExit) as info:
        rt.command_line(module, ["check", "--arch", "ampere"])
    assert info.value.code == 2
    assert (
        "--arch must be comma-separated integers like 80,90; got ampere" in capsys.readouterr().err
    )


def fill_cache(cache: Path) -> None:
    build = cache / "nvrtc-sm90-0123456789abcdef0123"
    build.mkdir(parents=True)
    (build / "kernels.cubin").write_bytes(b"\0" * 3000)
    table = {"k1": [["x", "tensor", "float32"]], "k2": []}
    info = {"kernels": table, "slangc": "2026.14.1", "nvrtc": "13.0"}
    (build / "kernels.json").write_text(json.dumps(info))
    (cache / "nvrtc-sm90-0123456789abcdef0123.lock").touch()
    (cache / ".nvrtc-sm80-aaaaaaaaaaaaaaaaaaaa.x1y2").mkdir()  # left by a killed build
    (cache / "slangtorch-sm90-bbbbbbbbbbbbbbbbbbbb").mkdir()  # no kernels.json: incomplete


def test_cache_entries_describe_and_clear_cache(cache_env, capsys):
    fill_cache(cache_env)
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    entries = {e["name"]: e for e in module.cache_entries()}
    assert [(e["kind"], e["loader"], e["arch"]) for e in entries.values()] == [
        ("temporary", "nvrtc", 80),
        ("build", "nvrtc", 90),
        ("lock", "nvrtc", 90),
        ("incomplete", "slangtorch", 90),
    ]
    build = entries["nvrtc-sm90-0123456789abcdef0123"]
    assert build["kernels"] == 2 and build["slangc"] == "2026.14.1" and build["nvrtc"] == "13.0"
    assert build["bytes"] == 3000 + len((build["path"] / "kernels.json").read_bytes())
    lines = rt.describe_cache(module)
    assert lines[0].startswith(f"cache: {cache_env} (1 build(s), 3.")
    assert "SLANG_MARCHING_CUBES_CACHE_DIR" in lines[0]
    assert any("2 kernels, slangc 2026.14.1, NVRTC 13.0" in line for line in lines)
    assert any("left by a killed build" in line for line in lines)
    assert not any(".lock" in line for line in lines)
    assert rt.command_line(module, ["clear-cache"]) == 0
    assert f"removed {cache_env} (1 build(s), 3." in capsys.readouterr().out
    assert not cache_env.exists()
    assert rt.command_line(module, ["clear-cache"]) == 0
    assert "nothing cached" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# A build killed half way


_KILLED_BUILDER = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("runtime_copy", {runtime!r})
rt = importlib.util.module_from_spec(spec)
sys.modules["runtime_copy"] = rt
spec.loader.exec_module(rt)

def build(tmp):
    (tmp / "kernels.cu").write_text("half written")
    print("building", flush=True)
    time.sleep(120)

rt.build_cached(Path({folder!r}), build)
"""


def test_a_build_killed_half_way_does_not_block_or_leak(tmp_path, monkeypatch):
    folder = tmp_path / "cache" / "nvrtc-sm90-key"
    folder.parent.mkdir()
    script = _KILLED_BUILDER.format(runtime=str(RUNTIME_FILE), folder=str(folder))
    builder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout.readline().strip() == "building"
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.wait(timeout=10)
    leftovers = sorted(p.name for p in folder.parent.iterdir())
    assert leftovers[0].startswith(".nvrtc-sm90-key.") and leftovers[1:] == ["nvrtc-sm90-key.lock"]
    monkeypatch.setenv(ENV_CACHE, str(folder.parent))
    kinds = {e["name"]: e["kind"] for e in rt.SlangModule(PACKAGE, PROBE).cache_entries()}
    assert kinds[leftovers[0]] == "temporary"
    start = time.monotonic()
    assert rt.build_cached(folder, lambda tmp: (tmp / "kernels.json").write_text("{}"), timeout=5)
    assert time.monotonic() - start < 1.0
    assert sorted(p.name for p in folder.parent.iterdir()) == [
        "nvrtc-sm90-key",
        "nvrtc-sm90-key.lock",
    ]


# ----------------------------------------------------------------------------------------------
# Compile errors through the public path


@needs_slangc
def test_broken_slang_through_check_prints_message_versions_and_advice(tmp_path, capsys):
    entry = probe_copy(tmp_path)
    break_probe(entry)
    module = rt.SlangModule(package=PACKAGE, entry=entry)
    # slangc fails before NVRTC is loaded, so any file stands in for libnvrtc here
    fake_nvrtc = tmp_path / "libnvrtc.so.13"
    fake_nvrtc.write_bytes(b"")
    assert rt.command_line(module, ["check", "--arch", "90", "--nvrtc", str(fake_nvrtc)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("slang_marching_cubes: compiling the Slang kernels failed.")
    assert "undefined identifier 'undefined_name'" in err
    # the .slang file and line of the error: `file:21:` (slangc 2026), `file(21):` (2025.6.3)
    assert f"{entry}:" in err or f"{entry}(" in err
    assert f"torch {torch.__version__}" in err and "GPU sm_90" in err and "loader nvrtc" in err
    assert "slangtorch 1." in err and "(slangc " in err
    assert "What to do: if you edited the .slang files, fix the error above" in err
    assert "SLANG_MARCHING_CUBES_LOADER=slangtorch" in err and "backend='reference'" in err


def test_check_without_nvrtc_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("SLANG_MARCHING_CUBES_NVRTC_PATH", str(tmp_path / "none.so"))
    module = rt.SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.raises(RuntimeError, match="NVRTC .* not found at .*none.so; pip install nvidia"):
        module.compile_only(90)


@needs_slangc
def test_compile_only_keeps_outputs_and_times_both_steps(tmp_path):
    path = rt.find_nvrtc(PACKAGE)
    if path is None:
        pytest.skip("no NVRTC found (pip install nvidia-cuda-nvrtc)")
    module = rt.SlangModule(package=PACKAGE, entry=probe_copy(tmp_path))
    info = module.compile_only(80, output=tmp_path / "out")
    assert sorted(info["kernels"]) == ["affine_fwd", "cube_bwd", "cube_diff", "histogram"]
    assert info["binary"] == "cubin" and info["arch"] == 80
    assert info["binary_bytes"] == (tmp_path / "out" / "kernels.cubin").stat().st_size
    assert 0 < info["slangc_s"] < 60 and 0 < info["nvrtc_s"] < 60
    assert not module.cache_dir.exists() or not list(module.cache_dir.iterdir())


# ----------------------------------------------------------------------------------------------
# slangtorch's build: torch chooses the C++ standard (slang-torch issue #50)


class _Stop(Exception):
    pass


@needs_slangc
def test_slangtorch_build_lets_torch_choose_the_cxx_standard(tmp_path, monkeypatch):
    slangtorch = pytest.importorskip("slangtorch")
    inner = sys.modules["slangtorch.slangtorch"]
    seen = {}

    def recorder(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(inner, "jit_compile", recorder)
    entry = probe_copy(tmp_path)
    entry.write_text(rt._add_autopybind(entry.read_text()))
    with pytest.raises(_Stop):
        rt._slangtorch_load(slangtorch, entry)
    assert inner.jit_compile is recorder  # restored after the build
    flags = list(seen["extra_cflags"] or []) + list(seen["extra_cuda_cflags"] or [])
    assert flags, "slangtorch passed no flags"
    assert not [f for f in flags if "std" in f and "c++" in f], flags
    assert "-DSLANG_CUDA_ENABLE_HALF=1" in seen["extra_cuda_cflags"]  # other flags are kept


def test_cxx_standard_flags_recognized():
    for flag in ("-std=c++17", "--std=c++17", "/std:c++17", "-std=c++20", "-std=c++2a"):
        assert rt._CXX_STANDARD_FLAG.match(flag), flag
    for flag in ("-DSLANG_CUDA_ENABLE_HALF=1", "--use_fast_math", "-std", "-isystem/std"):
        assert not rt._CXX_STANDARD_FLAG.match(flag), flag


def test_ninja_builder_shim_fills_in_the_sycl_arguments_torch_requires():
    calls = []

    def new_torch(name, sources, extra_cflags, extra_sycl_cflags, build_directory, with_sycl):
        calls.append((extra_sycl_cflags, with_sycl))

    shim = rt._ninja_builder_shim(new_torch)
    shim(name="m", sources=[], extra_cflags=[], build_directory="b")  # slangtorch 1.3.7's call
    shim(
        name="m",
        sources=[],
        extra_cflags=[],
        build_directory="b",
        with_sycl=None,
        extra_sycl_cflags=["-x"],
    )  # a newer slangtorch passes them: kept
    assert calls == [([], False), (["-x"], None)]

    def old_torch(name, sources, extra_cflags, build_directory, with_cuda=None):
        pass

    def defaulted(name, extra_sycl_cflags=None, with_sycl=None):
        pass

    assert rt._ninja_builder_shim(old_torch) is None
    assert rt._ninja_builder_shim(defaulted) is None


def test_cxx_standard_patch_wraps_and_restores_the_ninja_builder(monkeypatch):
    import types

    inner = types.ModuleType("slangtorch.slangtorch")
    inner.jit_compile = lambda *a, **k: None
    compile_module = types.ModuleType("slangtorch.util.compile")

    def builder(name, extra_sycl_cflags, with_sycl):
        return name, extra_sycl_cflags, with_sycl

    compile_module._write_ninja_file_and_build_library = builder
    monkeypatch.setitem(sys.modules, "slangtorch.slangtorch", inner)
    monkeypatch.setitem(sys.modules, "slangtorch.util.compile", compile_module)
    with rt.torch_chooses_cxx_standard():
        patched = compile_module._write_ninja_file_and_build_library
        assert patched is not builder
        assert patched(name="m") == ("m", [], False)
    assert compile_module._write_ninja_file_and_build_library is builder


def test_cxx_standard_patch_is_a_no_op_without_slangtorch(monkeypatch):
    monkeypatch.delitem(sys.modules, "slangtorch.slangtorch", raising=False)
    with rt.torch_chooses_cxx_standard():
        pass


# ----------------------------------------------------------------------------------------------
# Why the Slang backend is unavailable


def test_slang_available_reasons(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    ok, why = rt.slang_available()
    assert not ok and why.startswith("no CUDA device: torch ") and "CPU-only build" in why
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = rt.slang_available()
    assert not ok and "no CUDA device (torch.cuda.is_available() is False" in why
    assert "built for CUDA 12.8" in why and "NVIDIA driver" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(rt, "find_slangc", lambda: None)
    assert rt.slang_available() == (
        False,
        "slangc not found: install slangtorch (pip install slangtorch)",
    )


def test_toolchain_never_raises_and_describes_this_machine():
    info = rt.SlangModule(package=PACKAGE, entry=PROBE).toolchain()
    assert info["torch"] == torch.__version__
    lines = rt.describe_toolchain(info)
    assert [line.split(":")[0] for line in lines] == [
        "torch",
        "driver",
        "GPU",
        "slangtorch",
        "slangc",
        "NVRTC",
        "loader",
    ]
    if not torch.cuda.is_available():
        assert info["loader_used"] is None and "no CUDA device" in info["loader_note"]
        assert "GPU:         none" in lines
    if importlib.util.find_spec("slangtorch") is not None:
        assert info["slangc"] is not None and info["slangc_version"]


# ----------------------------------------------------------------------------------------------
# GPU: the public path end to end


_PRECOMPILE = """
import sys, time
from slang_marching_cubes import _slang_runtime as rt
go = {go!r}
import os
while not os.path.exists(go):
    time.sleep(0.01)
module = rt.SlangModule(package="slang_marching_cubes", entry={entry!r})
print(module.precompile())
"""


@pytest.mark.cuda
def test_gpu_two_cold_processes_precompile_once(tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    script = _PRECOMPILE.format(go=str(go), entry=str(probe_copy(tmp_path)))
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
    module = rt.SlangModule(package=PACKAGE, entry=entry)
    with pytest.raises(RuntimeError) as info:
        module.precompile()
    message = str(info.value)
    assert "compiling the Slang kernels failed" in message
    assert "undefined identifier 'undefined_name'" in message and "Versions: " in message
    major, minor = torch.cuda.get_device_capability()
    assert f"GPU sm_{major * 10 + minor}" in message
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]


@pytest.mark.cuda
def test_gpu_precompile_command_then_warm_info(tmp_path):
    if not compilation.entry_modules():
        pytest.skip("this version ships no Slang kernels yet")
    env = {**os.environ, ENV_CACHE: str(tmp_path / "cache")}
    cold = subprocess.run(
        [sys.executable, "-m", PACKAGE, "precompile"], capture_output=True, text=True, env=env
    )
    assert cold.returncode == 0, cold.stderr
    assert "compiling kernels (first use only)" in cold.stderr
    warm = subprocess.run(
        [sys.executable, "-m", PACKAGE, "precompile"], capture_output=True, text=True, env=env
    )
    assert warm.returncode == 0 and "compiling" not in warm.stderr
    info = subprocess.run(
        [sys.executable, "-m", PACKAGE, "info"], capture_output=True, text=True, env=env
    )
    assert "(1 build(s)" in info.stdout and "loader:      nvrtc" in info.stdout
