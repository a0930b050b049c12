"""Checkpoint files: moved to `meshtryoshka_train.run`, which owns the run directory."""

# The old import path of these names; they live in run.py now.
from .run import (
    checkpoint_path,
    checkpoint_steps,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
    write_atomic,
)

__all__ = [
    "checkpoint_path",
    "checkpoint_steps",
    "list_checkpoints",
    "load_latest_checkpoint",
    "save_checkpoint",
    "write_atomic",
]
