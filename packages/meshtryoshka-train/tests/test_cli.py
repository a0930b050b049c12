"""The command line's scaffolding: help, version, versions report."""

from click.testing import CliRunner

from meshtryoshka_train import __version__
from meshtryoshka_train.cli import main


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "--experiment" in result.output
    assert "versions" in result.output


def test_versions_names_torch_and_packages():
    result = CliRunner().invoke(main, ["versions"])
    assert result.exit_code == 0
    assert "torch" in result.output
    assert f"meshtryoshka-train   {__version__}" in result.output
