"""The four packages install together and the app's command line runs."""

import subprocess
import sys

import meshtryoshka_data
import meshtryoshka_train
import slang_marching_cubes
import slang_rasterizer


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meshtryoshka_train", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_reports_every_package_version():
    result = run_cli("versions")
    assert result.returncode == 0, result.stderr
    for module in (slang_marching_cubes, slang_rasterizer, meshtryoshka_data, meshtryoshka_train):
        name = module.__name__.replace("_", "-")
        assert f"{name}" in result.stdout
        assert module.__version__ in result.stdout


def test_cli_version_flag():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert meshtryoshka_train.__version__ in result.stdout
