"""tools/check_imports.py on small package trees written by the tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_imports", TOOLS / "check_imports.py")
check_imports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_imports)


def write_package(src: Path, modules: dict[str, str]) -> Path:
    """Files of a package ``pkg`` below ``src``: {relative path: text}."""
    for name, text in {"pkg/__init__.py": "from .a import A\n", **modules}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    return src


def test_a_lazy_import_closes_a_cycle(tmp_path):
    src = write_package(
        tmp_path,
        {
            "pkg/a.py": "from .b import B\nA = 1\n",
            "pkg/b.py": "import pkg.c\nB = 2\n",
            "pkg/c.py": "def f():\n    from . import a\n    return a\n",
        },
    )
    graph = check_imports.package_graph(src)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert check_imports.cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_type_checking_imports_and_the_init_do_not_count(tmp_path):
    src = write_package(
        tmp_path,
        {
            "pkg/a.py": "from .b import B\nA = 1\n",
            "pkg/b.py": (
                "from typing import TYPE_CHECKING\n"
                "import pkg\n"
                "if TYPE_CHECKING:\n"
                "    from .a import A\n"
                "B = 2\n"
            ),
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "from .. import a\nfrom ..sub import e\n",
            "pkg/sub/e.py": "",
        },
    )
    graph = check_imports.package_graph(src)
    assert graph["pkg.b"] == set()  # TYPE_CHECKING, and the package's __init__
    assert graph["pkg.sub.d"] == {"pkg.a", "pkg.sub.e"}
    assert check_imports.cycles(graph) == []


def test_the_kernel_packages_have_no_cycle(capsys):
    assert check_imports.main(["slang-kernel-runtime", "slang-rasterizer"]) == 0
    assert "slang-rasterizer: " in capsys.readouterr().out
