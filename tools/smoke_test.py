"""Smoke-test one installed package as a user would meet it (run by `nox -s build`).

    python smoke_test.py PACKAGE

Run it with the interpreter of a fresh venv that holds torch, the package's built sdist or
wheel and what the package declares, from a working directory outside the repository. It
imports the package (from the venv, not from a source tree) and checks its version, `py.typed`
and LICENSE; runs the README's Python examples as PyPI shows them (the long description in the
installed metadata) in an empty folder; runs `--help` of each console script; and for
meshtryoshka-train lists the shipped experiments and checks the bundled demo scene with
`meshtryoshka-data check`. Exits non-zero at the first failure.
"""

from __future__ import annotations

import email.parser
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = "meshtryoshka-train"


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"smoke test FAILED: {message}")


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    check(
        result.returncode == 0,
        f"`{' '.join(command)}` exited {result.returncode}:\n{result.stdout}{result.stderr}",
    )
    return result.stdout


def check_install(package: str) -> importlib.metadata.Distribution:
    distribution = importlib.metadata.distribution(package)
    module = importlib.import_module(package.replace("-", "_"))
    folder = Path(module.__file__).resolve().parent
    check(
        folder.is_relative_to(Path(sys.prefix).resolve()),
        f"{module.__name__} imported from {folder}, not from the venv {sys.prefix}",
    )
    check(
        module.__version__ == distribution.version,
        f"{module.__name__}.__version__ is {module.__version__}, metadata {distribution.version}",
    )
    check((folder / "py.typed").is_file(), f"{folder}/py.typed is missing")
    licenses = [f for f in distribution.files or [] if f.name == "LICENSE"]
    check(bool(licenses), f"{package} installed no LICENSE")
    check(
        licenses[0].read_text().startswith("MIT License"),
        f"{licenses[0]} is not the MIT license",
    )
    print(f"{package} {distribution.version}: imported from {folder}, py.typed and LICENSE present")
    return distribution


def run_readme_examples(distribution: importlib.metadata.Distribution) -> None:
    """Every ```python block of the long description, in order, in one namespace."""
    metadata = email.parser.Parser().parsestr(distribution.read_text("METADATA") or "")
    blocks = re.findall(r"^```python\n(.*?)^```", metadata.get_payload(), re.S | re.M)
    if not blocks:
        print("README: no Python example")
        return
    namespace: dict = {"__name__": "__readme__"}
    start = time.perf_counter()
    for block in blocks:
        exec(compile(block, f"<README of {distribution.name}>", "exec"), namespace)
    print(f"README: {len(blocks)} Python block(s) ran in {time.perf_counter() - start:.1f} s")


def run_console_scripts(distribution: importlib.metadata.Distribution) -> None:
    bin_dir = Path(sys.executable).parent
    for entry in distribution.entry_points.select(group="console_scripts"):
        run(str(bin_dir / entry.name), "--help")
        print(f"{entry.name} --help: ok")
    if distribution.name != APP:
        return
    listed = run(str(bin_dir / APP), "experiments")
    package = Path(importlib.import_module("meshtryoshka_train").__file__).parent
    shipped = sorted(p.stem for p in (package / "experiments").glob("*.toml"))
    check(bool(shipped), "no experiments shipped")
    missing = [name for name in shipped if name not in listed]
    check(not missing, f"`{APP} experiments` does not list {missing}:\n{listed}")
    print(f"{APP} experiments: {', '.join(shipped)}")
    run(str(bin_dir / "meshtryoshka-data"), "check", str(package / "demo_scene"))
    print("demo scene: `meshtryoshka-data check` passed")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    package = argv[0]
    with tempfile.TemporaryDirectory(prefix="smoke-") as folder:
        os.chdir(folder)
        distribution = check_install(package)
        run_readme_examples(distribution)
        run_console_scripts(distribution)
        os.chdir(Path(folder).parent)
    print(f"smoke test of {package}: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
