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


def test_experiments_lists_shipped_names():
    result = CliRunner().invoke(main, ["experiments"])
    assert result.exit_code == 0
    assert result.output.split() == [
        "demo",
        "mip360",
        "mip360_140gb",
        "mip360_24gb",
        "nerf_synthetic",
    ]


def test_bad_override_on_the_command_line_lists_valid_keys():
    result = CliRunner().invoke(main, ["--experiment", "demo", "model.bogus=1"])
    assert result.exit_code == 2
    assert "unknown configuration key 'model.bogus'" in result.output
    assert "model.render_mode" in result.output


def test_overrides_without_experiment_are_refused():
    result = CliRunner().invoke(main, ["model.render_mode=explicit"])
    assert result.exit_code == 2
    assert "overrides need an experiment" in result.output
