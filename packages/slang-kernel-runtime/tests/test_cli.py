"""Reports and ``python -m <package> precompile | check | clear-cache | info``, through
``cli.command_line`` (CPU)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from kernel_runtime_helpers import PACKAGE, PROBE, break_probe, needs_slangc, probe_copy

from slang_kernel_runtime import SlangModule, cli


def test_command_line_without_kernels(tmp_path, cache_env, capsys):
    module = SlangModule(package=PACKAGE, entry=tmp_path / "missing" / "marching_cubes.slang")
    assert cli.command_line(module, ["precompile"]) == 0
    assert "no Slang kernels in this version" in capsys.readouterr().out
    assert cli.command_line(module, ["check"]) == 0
    assert "nothing to check" in capsys.readouterr().out


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_command_line_precompile_without_cuda_says_why(tmp_path, cache_env, capsys):
    module = SlangModule(package=PACKAGE, entry=PROBE)
    assert cli.command_line(module, ["precompile"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("runtime_probe: cannot precompile here: no CUDA device")
    assert not cache_env.exists()


def test_command_line_rejects_bad_arch(capsys):
    module = SlangModule(package=PACKAGE, entry=PROBE)
    with pytest.raises(SystemExit) as info:
        cli.command_line(module, ["check", "--arch", "ampere"])
    assert info.value.code == 2
    assert (
        "--arch must be comma-separated integers like 80,90; got ampere" in capsys.readouterr().err
    )


@needs_slangc
def test_broken_slang_through_check_prints_message_versions_and_advice(tmp_path, capsys):
    entry = probe_copy(tmp_path)
    break_probe(entry)
    module = SlangModule(package=PACKAGE, entry=entry)
    # slangc fails before NVRTC is loaded, so any file stands in for libnvrtc here
    fake_nvrtc = tmp_path / "libnvrtc.so.13"
    fake_nvrtc.write_bytes(b"")
    assert cli.command_line(module, ["check", "--arch", "90", "--nvrtc", str(fake_nvrtc)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("runtime_probe: compiling the Slang kernels failed.")
    assert "undefined identifier 'undefined_name'" in err
    # the .slang file and line of the error: `file:21:` (slangc 2026), `file(21):` (2025.6.3)
    assert f"{entry}:" in err or f"{entry}(" in err
    assert f"torch {torch.__version__}" in err and "GPU sm_90" in err and "loader nvrtc" in err
    assert "slangtorch 1." in err and "(slangc " in err
    assert "What to do: if you edited the .slang files, fix the error above" in err
    assert "RUNTIME_PROBE_LOADER=slangtorch" in err and "backend='reference'" in err


def test_toolchain_never_raises_and_describes_this_machine():
    info = SlangModule(package=PACKAGE, entry=PROBE).toolchain()
    assert info["torch"] == torch.__version__
    lines = cli.describe_toolchain(info)
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
