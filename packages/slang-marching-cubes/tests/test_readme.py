"""The README's CPU example runs as written and writes a readable, closed sphere mesh."""

from __future__ import annotations

import re
from pathlib import Path

from mc_helpers import assert_closed_oriented_manifold

from slang_marching_cubes import read_ply

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    positions, faces = read_ply(tmp_path / "sphere.ply")
    assert faces.shape[0] > 1000
    assert_closed_oriented_manifold(faces, positions.shape[0])
    assert namespace["colors"].grad is not None
    assert capsys.readouterr().out.startswith("[0, ")
