"""The README's CPU example runs and writes its PNGs."""

import re
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = [b for b in blocks if "save(" in b]
    assert len(example) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(example[0], "README example", "exec"), {})
    for i in range(3):
        image = Image.open(tmp_path / f"view_{i}.png")
        assert image.size == (160, 160)
        extrema = image.getextrema()
        assert any(lo < 200 for lo, _ in extrema)  # the spheres are visible on white
