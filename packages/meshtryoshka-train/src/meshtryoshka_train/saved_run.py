"""Opening a trained run: moved to `meshtryoshka_train.run` (`open_run`, `Snapshot`)."""

# The old import path of these names; they live in run.py now. `SavedRun` is the old name of
# `Snapshot` (whose constructor takes ``config, step, field, dataset=None, *, run_dir=None``).
from .run import RunError, Snapshot, checkpoint_steps, open_run

SavedRun = Snapshot

__all__ = ["RunError", "SavedRun", "Snapshot", "checkpoint_steps", "open_run"]
