"""Checkpoints written atomically: a crash mid-write never leaves a half-written file.

A checkpoint is ``RUN_DIR/checkpoints/step_XXXXXXX.pt``. It is written to a temporary file in
the same folder, flushed to disk, then renamed over the final name (``os.replace`` is atomic on
POSIX and Windows), so a reader sees either the previous complete file or the new complete one.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^step_(\d+)\.pt$")


def write_atomic(path: Path, write) -> None:
    """Create `path` through `write(file_object)` on a temporary file, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `state` as the checkpoint of `step` and keep only the newest `keep` checkpoints."""
    path = checkpoint_path(run_dir, step)
    write_atomic(path, lambda file: torch.save(state, file))
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def _complete(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    return [path for _, path in _complete(run_dir)]


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """Steps of the complete checkpoints of a run, oldest first."""
    return [step for step, _ in _complete(run_dir)]


def load_latest_checkpoint(
    run_dir: Path, map_location="cpu", warn: Callable[[str], None] = print
) -> dict[str, Any] | None:
    """The newest checkpoint of a run that loads, or None when there is none. An unreadable
    one (damaged on disk) is reported through `warn` and an older one tried."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as error:  # a damaged file: torch raises several kinds
            warn(f"warning: cannot read checkpoint {path} ({error}); trying an older one")
    return None
