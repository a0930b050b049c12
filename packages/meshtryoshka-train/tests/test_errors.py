"""The commands' one map from errors to exit statuses and messages (cli.errors.ErrorReport)."""

import signal

import click
import pytest
import torch
from click.testing import CliRunner

from meshtryoshka_data import DatasetError
from meshtryoshka_train.cli import EXIT_FAILED, EXIT_USAGE, ErrorReport
from meshtryoshka_train.config import ConfigError
from meshtryoshka_train.run import RunError
from meshtryoshka_train.trainer import (
    TrainingDiverged,
    TrainingInterrupted,
    TrainingOutOfMemory,
)
from meshtryoshka_train.viewer import ViewerUnavailable


def invoke(error: BaseException, **options):
    """Run a command that raises `error` inside ``ErrorReport(**options)``."""

    @click.command()
    def command():
        with ErrorReport(**options) as report:
            report.run_dir = None
            raise error

    return CliRunner().invoke(command, [])


@pytest.mark.parametrize(
    "error, options, status, message",
    [
        (ConfigError("bad key"), {}, EXIT_USAGE, "Error: bad key"),
        (RunError("no checkpoint"), {}, EXIT_USAGE, "Error: no checkpoint"),
        (ViewerUnavailable("pip install it"), {}, EXIT_USAGE, "Error: pip install it"),
        (ValueError("size must be WxH"), {"bad_values": True}, EXIT_USAGE, "must be WxH"),
        (
            DatasetError("x.json", "missing"),
            {"dataset_hint": " (hint)"},
            1,
            "x.json: missing (hint)",
        ),
        (TrainingDiverged("the loss became NaN"), {}, EXIT_FAILED, "Error: the loss became NaN"),
        (TrainingOutOfMemory("out of GPU memory at"), {}, EXIT_FAILED, "out of GPU memory at"),
        (
            torch.OutOfMemoryError("CUDA out of memory"),
            {"training": True},
            EXIT_FAILED,
            "out of GPU memory while setting up the run (CUDA out of memory)",
        ),
        (
            TrainingInterrupted("SIGTERM: training stopped", 3, "c.pt", signal.SIGTERM),
            {},
            128 + signal.SIGTERM,
            "SIGTERM: training stopped. Resume with: meshtryoshka-train --resume --run-dir",
        ),
        (
            KeyboardInterrupt(),
            {"training": True},
            128 + signal.SIGINT,
            "interrupted (Ctrl-C): stopped at once; no checkpoint was written.",
        ),
    ],
)
def test_each_expected_error_has_its_status_and_message(error, options, status, message):
    result = invoke(error, **options)
    assert result.exit_code == status, result.output
    assert message in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    if status == EXIT_USAGE:
        assert result.output.startswith("Usage: ")


@pytest.mark.parametrize(
    "error", [ValueError("a bug"), torch.OutOfMemoryError("CUDA out of memory"), KeyError("x")]
)
def test_anything_else_is_left_to_its_traceback(error):
    result = invoke(error)  # not training, no bad_values: these are bugs
    assert result.exit_code == 1 and result.exception is error
