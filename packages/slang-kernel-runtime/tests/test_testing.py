"""`slang_kernel_runtime.testing.backend_fixture`, in a pytest run of its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from slang_kernel_runtime import testing
from slang_kernel_runtime.testing import CASES

CONFTEST = """
from slang_kernel_runtime import KernelPackage
from slang_kernel_runtime.testing import backend_fixture

kernels = KernelPackage("probe_package", "missing.slang")
kernels._available = (False, "no CUDA device")
backend = backend_fixture(kernels)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device")
"""

TESTS = """
def test_case(backend, request):
    marked = request.node.get_closest_marker("cuda") is not None
    assert marked == (backend.device == "cuda")
    assert (backend.name, backend.device) in {("reference", "cpu"), ("reference", "cuda")}
"""


def test_the_fixture_runs_each_case_and_skips_slang_with_the_reason(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_cases.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the repository's settings
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-v", "-c"]
    result = subprocess.run(
        [*command, str(tmp_path / "pytest.ini"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for case in ("reference-cpu", "reference-cuda"):
        assert f"test_case[{case}] PASSED" in out
    assert "test_case[slang] SKIPPED" in out
    assert "probe_package: the Slang backend cannot run here: no CUDA device" in out
    assert [case.id for case in CASES] == ["reference-cpu", "reference-cuda", "slang"]


def test_launched_kernels_reads_the_launch_calls(tmp_path):
    source = tmp_path / "_slang.py"
    source.write_text(
        '_MODULE.launch("a_fwd", grid, block, x=x)\n'
        '_MODULE.launch(\n    "b_bwd",\n    grid,\n)\n'
        'launcher.launch("c", g, b)\nlaunch("not_a_method_call")\n'
    )
    assert testing.launched_kernels(source) == {"a_fwd", "b_bwd", "c"}
