"""Check (or restore) the files vendored byte-identically into several packages.

Every package ships the repository's LICENSE inside its sdist and wheel, and a build backend
only takes license files from the package's own folder, so each package holds a copy of it.
(The Slang kernel runtime, once one file vendored into both kernel packages, is the package
slang-kernel-runtime now: docs/kernel-runtime.md.) `python tools/check_vendored.py` fails when
a copy drifts; `--fix` copies the canonical file over the copies.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDORED = {
    "LICENSE": [
        "packages/slang-kernel-runtime/LICENSE",
        "packages/slang-marching-cubes/LICENSE",
        "packages/slang-rasterizer/LICENSE",
        "packages/meshtryoshka-data/LICENSE",
        "packages/meshtryoshka-train/LICENSE",
    ],
}


def main(argv: list[str]) -> int:
    fix = "--fix" in argv
    drifted = []
    for canonical, copies in VENDORED.items():
        source = ROOT / canonical
        if not source.exists():
            continue
        for copy in copies:
            target = ROOT / copy
            if target.exists() and target.read_bytes() == source.read_bytes():
                continue
            if fix:
                shutil.copyfile(source, target)
                print(f"copied {canonical} -> {copy}")
            else:
                drifted.append(f"{copy} differs from {canonical}")
    for line in drifted:
        print(line)
    if drifted:
        print("run `python tools/check_vendored.py --fix` to restore the copies")
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
