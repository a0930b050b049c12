"""How a command ends when something goes wrong: the one map from errors to exit statuses.

- status 2: ConfigError (configuration, override, a run directory in use, the viewer extra
  missing), RunError (not a run directory, no such checkpoint) and, for commands that say
  ``bad_values``, any ValueError (an option's value): the usage line, then ``Error: ...``,
  as for click's own usage errors.
- status 1: DatasetError (the dataset cannot be read), TrainingDiverged, TrainingOutOfMemory,
  DistributedError (data-parallel training lost a rank or timed out) and, while training,
  torch's out-of-memory error (setting the run up): ``Error: ...``,
  saying what was kept and what to change.
- status 128 + signal (130 Ctrl-C, 143 SIGTERM): TrainingInterrupted (the step's checkpoint
  was written): its message and the command that resumes.
- status 130: KeyboardInterrupt while training (a second Ctrl-C): what was kept and the
  command that resumes.

Anything else is a bug and ends with its traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from meshtryoshka_data import DatasetError

from ..config import ConfigError
from ..distributed import DistributedError
from ..run import RunDir, RunError, list_checkpoints
from ..trainer import OUT_OF_MEMORY, TrainingDiverged, TrainingInterrupted, TrainingOutOfMemory

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "ErrorReport", "warn"]

EXIT_FAILED = 1
"""Training failed or the data cannot be read (click's status for a ClickException)."""
EXIT_USAGE = 2
"""A bad command line, configuration or run directory (click's status for a UsageError)."""


class ErrorReport:
    """Context manager that ends a command by the table above::

        with ErrorReport() as report:               # eval, export-mesh, render, view
            ...
        with ErrorReport(console.echo, training=True) as report:
            report.run_dir = ...                    # what the messages name, once known

    echo: where interruption messages (and, while training, the blank line that ends a
        progress line before an error) go.
    training: also map torch's out-of-memory error (setting a run up) and KeyboardInterrupt.
    bad_values: a ValueError is a bad option value (status 2), not a bug.
    dataset_hint: appended to a DatasetError's message.
    """

    def __init__(
        self,
        echo: Callable[[str], None] = click.echo,
        *,
        training: bool = False,
        bad_values: bool = False,
        dataset_hint: str = "",
    ):
        self.echo = echo
        self.training = training
        self.bad_values = bad_values
        self.dataset_hint = dataset_hint
        #: the run being trained, once known (the interruption messages name it)
        self.run_dir: Path | None = None
        #: train.steps of that run, once known
        self.final_step: int | None = None
        #: the command that continues after an interruption (default: --resume --run-dir)
        self.resume_command: str | None = None

    def __enter__(self) -> ErrorReport:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, (click.ClickException, SystemExit)):
            return False
        if isinstance(error, TrainingInterrupted):
            self.echo(f"{error}. Resume with: {self.resume()}")
            sys.exit(128 + error.signal)
        if isinstance(error, KeyboardInterrupt) and self.training:
            self._stopped_at_once()
        if isinstance(error, (ConfigError, RunError)):
            raise click.UsageError(str(error)) from None
        if isinstance(error, DatasetError):
            self._failed(f"{error}{self.dataset_hint}")
        if isinstance(error, (TrainingDiverged, TrainingOutOfMemory, DistributedError)):
            self._failed(str(error))
        if self.training and isinstance(error, OUT_OF_MEMORY):  # loading images, building grids
            self._failed(
                f"out of GPU memory while setting up the run ({str(error).strip()[:200]}). Try "
                "dataset.device=cpu (training images in CPU memory), a lower model.resolution, "
                "or a smaller experiment, e.g. --experiment mip360_24gb (made for 24 GB GPUs)"
            )
        if self.bad_values and isinstance(error, ValueError):
            raise click.UsageError(str(error)) from None
        return False

    def resume(self) -> str:
        """The command that continues the run."""
        return self.resume_command or f"meshtryoshka-train --resume --run-dir {self.run_dir}"

    def _failed(self, message: str) -> None:
        if self.training:
            self.echo("")  # ends a progress line that is being rewritten in place
        raise click.ClickException(message) from None

    def _stopped_at_once(self) -> None:
        """A second Ctrl-C: say what was kept (back to the newest checkpoint), exit 130."""
        kept = list_checkpoints(self.run_dir) if self.run_dir is not None else []
        finished = (
            kept
            and self.final_step is not None
            and kept[-1].name == RunDir(self.run_dir).checkpoint(self.final_step).name
        )
        if finished:
            what = f"training had finished ({kept[-1]}); --resume only evaluates it"
        elif kept:
            what = f"the newest checkpoint is {kept[-1]}; steps after it are lost"
        else:
            what = "no checkpoint was written"
        self.echo(f"interrupted (Ctrl-C): stopped at once; {what}.")
        if kept:
            self.echo(f"Resume with: {self.resume()}")
        sys.exit(128 + signal.SIGINT)


def warn(message: str) -> None:
    """A warning that does not stop the command (e.g. `open_run`'s unreadable newest
    checkpoint), on stderr."""
    click.echo(message, err=True)
