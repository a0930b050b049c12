"""The fallback loader's build: torch chooses the C++ standard (slang-torch issue #50), and
older slangtorch gets the SYCL arguments newer torch requires (CPU, nothing is compiled)."""

from __future__ import annotations

import sys
import types

import pytest
from kernel_runtime_helpers import needs_slangc, probe_copy

from slang_kernel_runtime import slangtorch_loader


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
    entry.write_text(slangtorch_loader.add_autopybind(entry.read_text()))
    with pytest.raises(_Stop):
        slangtorch_loader.slangtorch_load(slangtorch, entry)
    assert inner.jit_compile is recorder  # restored after the build
    flags = list(seen["extra_cflags"] or []) + list(seen["extra_cuda_cflags"] or [])
    assert flags, "slangtorch passed no flags"
    assert not [f for f in flags if "std" in f and "c++" in f], flags
    assert "-DSLANG_CUDA_ENABLE_HALF=1" in seen["extra_cuda_cflags"]  # other flags are kept


def test_cxx_standard_flags_recognized():
    for flag in ("-std=c++17", "--std=c++17", "/std:c++17", "-std=c++20", "-std=c++2a"):
        assert slangtorch_loader.CXX_STANDARD_FLAG.match(flag), flag
    for flag in ("-DSLANG_CUDA_ENABLE_HALF=1", "--use_fast_math", "-std", "-isystem/std"):
        assert not slangtorch_loader.CXX_STANDARD_FLAG.match(flag), flag


def test_ninja_builder_shim_fills_in_the_sycl_arguments_torch_requires():
    calls = []

    def new_torch(name, sources, extra_cflags, extra_sycl_cflags, build_directory, with_sycl):
        calls.append((extra_sycl_cflags, with_sycl))

    shim = slangtorch_loader.ninja_builder_shim(new_torch)
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

    assert slangtorch_loader.ninja_builder_shim(old_torch) is None
    assert slangtorch_loader.ninja_builder_shim(defaulted) is None


def test_cxx_standard_patch_wraps_and_restores_the_ninja_builder(monkeypatch):
    inner = types.ModuleType("slangtorch.slangtorch")
    inner.jit_compile = lambda *a, **k: None
    compile_module = types.ModuleType("slangtorch.util.compile")

    def builder(name, extra_sycl_cflags, with_sycl):
        return name, extra_sycl_cflags, with_sycl

    compile_module._write_ninja_file_and_build_library = builder
    monkeypatch.setitem(sys.modules, "slangtorch.slangtorch", inner)
    monkeypatch.setitem(sys.modules, "slangtorch.util.compile", compile_module)
    with slangtorch_loader.torch_chooses_cxx_standard():
        patched = compile_module._write_ninja_file_and_build_library
        assert patched is not builder
        assert patched(name="m") == ("m", [], False)
    assert compile_module._write_ninja_file_and_build_library is builder


def test_cxx_standard_patch_is_a_no_op_without_slangtorch(monkeypatch):
    """Without slangtorch's build module loaded, nothing is imported or patched."""
    monkeypatch.delitem(sys.modules, "slangtorch.slangtorch", raising=False)
    compile_module = types.ModuleType("slangtorch.util.compile")
    compile_module._write_ninja_file_and_build_library = builder = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "slangtorch.util.compile", compile_module)
    ran = []
    with slangtorch_loader.torch_chooses_cxx_standard():
        ran.append(compile_module._write_ninja_file_and_build_library)
    assert ran == [builder]  # the body ran, with the builder left alone
    assert compile_module._write_ninja_file_and_build_library is builder
    assert "slangtorch.slangtorch" not in sys.modules  # and nothing was imported
