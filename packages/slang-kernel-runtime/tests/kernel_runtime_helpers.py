"""The probe kernel module and what the tests know about it.

Imported as ``kernel_runtime_helpers``: a unique name, since pytest may run every package's
tests in one process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slang_kernel_runtime import SlangModule, parsing, slangc

DATA = Path(__file__).parent / "data"
PROBE = DATA / "runtime_probe.slang"
#: The package name the probe module is compiled under (cache folder, environment variables).
PACKAGE = "runtime_probe"
ENV_CACHE = "RUNTIME_PROBE_CACHE_DIR"
needs_slangc = pytest.mark.skipif(
    slangc.find_slangc() is None, reason="slangtorch (slangc) missing"
)

Param = parsing.Param
PROBE_TABLE = {
    "affine_fwd": [
        Param("x", "tensor", "float32"),
        Param("y", "tensor", "float32"),
        Param("scale", "float"),
        Param("offset", "int"),
        Param("negate", "bool"),
    ],
    "cube_diff": [Param("x", "diff", "float32"), Param("y", "diff", "float32")],
    "cube_bwd": [Param("x", "diff", "float32"), Param("y", "diff", "float32")],
    "histogram": [
        Param("keys", "tensor", "int64"),
        Param("counts", "tensor", "int32"),
        Param("num_bins", "uint"),
        Param("num_keys", "uint"),
    ],
}


def probe_copy(tmp_path: Path) -> Path:
    """A private copy of the probe sources in ``tmp_path / "src"``; its entry module."""
    src = tmp_path / "src"
    if not src.exists():
        shutil.copytree(DATA, src)
    return src / PROBE.name


def probe_module(tmp_path: Path, package: str = PACKAGE) -> SlangModule:
    """A SlangModule over a private copy of the probe sources."""
    return SlangModule(package=package, entry=probe_copy(tmp_path))


def break_probe(entry: Path) -> None:
    """Put an undefined name into the probe's cube_diff kernel (a compile error)."""
    text = entry.read_text()
    assert "float v = x[idx.x];" in text
    entry.write_text(text.replace("float v = x[idx.x];", "float v = undefined_name;"))
