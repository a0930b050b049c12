"""Opening a trained run directory: its configuration, one checkpoint's field, its dataset.

Used by the commands that read a finished (or running) run without training it:
``export-mesh`` and ``render``. The dataset is loaded lazily, on the CPU, when first asked for
(it holds the cameras and the normalization; exporting in normalized coordinates needs none).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import checkpoint_path, checkpoint_steps
from .config import Config, ConfigError, load_saved_config

if TYPE_CHECKING:
    from .field import Field

__all__ = ["RunError", "SavedRun", "checkpoint_steps", "open_run"]


class RunError(ValueError):
    """`RUN_DIR` is not a usable run directory, or the asked-for checkpoint is missing."""


@dataclass
class SavedRun:
    """One checkpoint of a run: ``config`` (the run's config.toml), ``step`` and ``field``."""

    run_dir: Path
    config: Config
    step: int
    field: Field
    _dataset: object = dataclass_field(default=None, repr=False)

    @property
    def dataset(self):
        """The run's `meshtryoshka_data.Dataset` (loaded on first use, images on the CPU)."""
        if self._dataset is None:
            from .trainer import load_scene

            self._dataset = load_scene(self.config, torch.device("cpu"))
        return self._dataset

    def shell_levels(self) -> list[float]:
        """The signed-distance levels of the shells scheduled at this step, outermost first."""
        from .field import shell_levels

        model = self.config.model
        return shell_levels(model.shells.at(self.step), model.sharpness)


def open_run(
    run_dir: str | Path, *, step: int | None = None, device: str | torch.device = "auto"
) -> SavedRun:
    """Load the newest checkpoint of `run_dir` (or the one of `step`) onto `device`.

    Args:
        run_dir: a run directory written by the trainer (``config.toml`` + ``checkpoints/``).
        step: the checkpoint's step; None takes the newest one.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a torch device.

    Raises:
        RunError: `run_dir` is missing or not a run directory, has no checkpoint, or has
            none for `step` (the message lists the steps it has).
        ConfigError: the saved configuration or checkpoint is not readable.
    """
    from .contraction import Contraction
    from .field import Field
    from .trainer import CHECKPOINT_FORMAT, resolve_device

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"RUN_DIR {run_dir} does not exist or is not a directory")
    if not (run_dir / "config.toml").is_file():
        raise RunError(f"RUN_DIR {run_dir} is not a run directory (no config.toml)")
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise RunError(f"RUN_DIR {run_dir} has no checkpoint in checkpoints/ (train it first)")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise RunError(
            f"--step {step}: {run_dir} has no checkpoint of that step; it has steps "
            + ", ".join(str(s) for s in steps)
        )
    config = load_saved_config(run_dir / "config.toml")
    state = torch.load(checkpoint_path(run_dir, step), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ConfigError(f"checkpoint format {found} is not supported")
    model = config.model
    contraction = Contraction(model.center_radius, model.center_extent, model.arm_ratio)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    field_ = Field.from_state(state["field"], contraction, target, backend=config.model.backend)
    return SavedRun(run_dir=run_dir, config=config, step=int(state["step"]), field=field_)
