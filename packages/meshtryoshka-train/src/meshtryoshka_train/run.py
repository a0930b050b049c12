"""A run: the directory a training writes, and one trained state of it (a `Snapshot`).

A run directory (`RunDir` names its paths) holds::

    config.toml                   the resolved configuration (what --resume, eval, ... read)
    metrics.jsonl                 one JSON object per progress line and per evaluation
    checkpoints/step_XXXXXXX.pt   the newest `train.keep_checkpoints` checkpoints
    eval/step_XXXXXXX[_<split>]/  metrics.json and layered/ + surface/ PNG renders
    mesh/                         export-mesh: mesh_step_XXXXXXX[_shellK | _levelX].<format>
    renders/                      render: <path>_<mode>_step_XXXXXXX/
    viewer/                       the viewer's screenshots and meshes

and, beside it, ``.<name>.lock``, held by the process that trains into it (`run_dir_lock`).

Everything that knows this layout lives here: the paths, the lock, preparing a directory for a
fresh or resumed run, the checkpoint files, the metrics log, and `Snapshot` with `open_run`.

Crash safety: checkpoints and ``config.toml`` are written atomically (`write_atomic`: a
temporary file in the same folder, flushed to disk, renamed over the final name), so a kill
loses at most the steps since the newest checkpoint; a resume deletes the temporary file a kill
left, ignores a log line it cut short, and falls back to the previous checkpoint when the
newest cannot be read.

Shells are numbered from 0, the outermost (highest signed-distance level), everywhere: the
``--shell K`` of export-mesh, the ``shell:K`` mode of render, file names ``_shellK`` and the
viewer's ``shell K (p=...)`` modes. `shells_at` is the one map from a configuration and a step
to the shells.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from meshtryoshka_data import load_blender, load_colmap, load_nerfstudio

from .config import Config, ConfigError, ModelConfig, dump_config, load_saved_config
from .contraction import Contraction
from .field import Field, shell_levels

if TYPE_CHECKING:
    from meshtryoshka_data import Dataset

__all__ = [
    "CHECKPOINT_FORMAT",
    "RunDir",
    "RunError",
    "Shell",
    "Snapshot",
    "append_metrics",
    "check_format",
    "checkpoint_path",
    "checkpoint_steps",
    "dataset_folder",
    "default_run_dir",
    "list_checkpoints",
    "load_latest_checkpoint",
    "load_scene",
    "open_run",
    "prepare_run_dir",
    "read_metrics",
    "resolve_device",
    "run_dir_lock",
    "save_checkpoint",
    "shell_levels_at",
    "shells_at",
    "trim_metrics",
    "write_atomic",
]

CHECKPOINT_FORMAT = 1
"""The ``format`` entry of the checkpoints this version writes and reads."""


class RunError(ValueError):
    """`RUN_DIR` is not a usable run directory, or the asked-for checkpoint is missing."""


# --- the layout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunDir:
    """The paths of a run directory (nothing is created or read). ``RunDir(path)``."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoint_dir / f"step_{step:07d}.pt"

    def eval_dir(self, step: int, split: str = "test") -> Path:
        """``eval/step_XXXXXXX/`` for the test split, ``eval/step_XXXXXXX_<split>/`` else."""
        return self.path / "eval" / (f"step_{step:07d}" + ("" if split == "test" else f"_{split}"))

    def mesh_file(self, step: int, fmt: str, suffix: str = "") -> Path:
        """``mesh/mesh_step_XXXXXXX<suffix>.<fmt>`` (suffix ``_shellK`` or ``_levelX``)."""
        return self.path / "mesh" / f"mesh_step_{step:07d}{suffix}.{fmt}"

    def render_dir(self, path: str, mode: str, step: int) -> Path:
        """``renders/<path>_<mode>_step_XXXXXXX/`` (``shell:K`` is written ``shellK``)."""
        return self.path / "renders" / f"{path}_{mode.replace(':', '')}_step_{step:07d}"

    @property
    def viewer_dir(self) -> Path:
        return self.path / "viewer"

    @property
    def lock_file(self) -> Path:
        """``.<name>.lock`` beside the run directory (so ``--overwrite`` can delete it)."""
        absolute = self.path.absolute()
        return absolute.with_name(f".{absolute.name}.lock")


def default_run_dir(config: Config, workspace: str | Path) -> Path:
    """``workspace / <experiment name> / <scene>`` (a .toml experiment uses its file stem)."""
    name = (
        Path(config.experiment).stem if config.experiment.endswith(".toml") else config.experiment
    )
    return Path(workspace) / name / config.dataset.scene


# --- the dataset -------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device/dataset.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def dataset_folder(config: Config) -> Path:
    """The scene folder: ``dataset.root / dataset.scene``; root "bundled" is the demo scene."""
    data = config.dataset
    if data.root == "bundled":
        if data.scene != "demo":
            raise ConfigError(
                f"dataset.root = 'bundled' holds only the scene 'demo', got '{data.scene}'"
            )
        return Path(str(resources.files("meshtryoshka_train") / "demo_scene"))
    return Path(data.root) / data.scene


def load_scene(config: Config, device: torch.device):
    """Load the configured dataset with its images on ``dataset.device``."""
    data = config.dataset
    image_device = device if data.device == "auto" else resolve_device(data.device)
    folder = dataset_folder(config)
    if data.format == "blender":
        return load_blender(
            folder,
            downscale=data.downscale,
            background=data.background,
            device=image_device,
            scale_factor=data.scale_factor,
        )
    load = load_nerfstudio if data.format == "nerfstudio" else load_colmap
    return load(
        folder,
        downscale=data.downscale,
        llffhold=data.llffhold,
        background=data.background,
        device=image_device,
        scale_factor=data.scale_factor,
        orient=data.orient,
    )


# --- writing, locking and preparing the directory ------------------------------------------------


def write_atomic(path: Path, write: Callable[[Any], Any]) -> None:
    """Create `path` through `write(file_object)` on a temporary file, then rename it into place.

    The temporary file (``.<name>.<random>``, same folder) is flushed to disk before the rename
    (``os.replace``, atomic on POSIX and Windows), so a reader sees the previous complete file
    or the new complete one; on any error it is deleted. Creates the parent folder.
    """
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


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir` (a process training into it) while the block runs.

    The lock is ``flock`` on the sibling file ``.<name>.lock`` (outside the run directory, so
    that ``--overwrite`` can delete the directory); the OS releases it when the process dies,
    so a crash never leaves a stale lock. Raises ConfigError naming the process that holds it.
    No-op where ``fcntl`` is missing (Windows).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    lock_file = RunDir(run_dir).lock_file
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            raise ConfigError(
                f"another process (pid {holder}) is training into {Path(run_dir).absolute()}; "
                "wait for it, or stop it (Ctrl-C checkpoints it) before starting or resuming "
                "this run"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        try:
            yield
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def prepare_run_dir(run_dir: Path, config: Config, *, resume: bool, overwrite: bool) -> Config:
    """Create (or, with `resume`, reopen) a run directory; returns the config to train with.

    A fresh run refuses an existing non-empty directory unless `overwrite` (which deletes it)
    and writes ``config.toml``. A resumed run rewrites ``config.toml`` only when `config`
    differs from it (overrides given with ``--resume`` then also hold for later resumes and
    `eval`), and deletes the temporary files of checkpoint writes that a kill interrupted.
    """
    files = RunDir(run_dir)
    text = dump_config(config)
    if resume:
        if not files.config_file.is_file():
            raise ConfigError(f"cannot resume: {run_dir} has no config.toml (not a run directory)")
        if files.config_file.read_text() != text:
            write_atomic(files.config_file, lambda file: file.write(text.encode()))
        for leftover in files.checkpoint_dir.glob(".step_*.pt.*"):
            leftover.unlink(missing_ok=True)
        return config
    if files.path.exists() and any(files.path.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"run directory {run_dir} already exists; pass --resume to continue it or "
                "--overwrite to delete it and start again"
            )
        shutil.rmtree(files.path)
    files.path.mkdir(parents=True, exist_ok=True)
    write_atomic(files.config_file, lambda file: file.write(text.encode()))
    return config


# --- checkpoints -------------------------------------------------------------------------------

_CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """``RUN_DIR/checkpoints/step_XXXXXXX.pt``."""
    return RunDir(run_dir).checkpoint(step)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `state` as the checkpoint of `step` (atomically) and keep only the newest `keep`."""
    path = checkpoint_path(run_dir, step)
    write_atomic(path, lambda file: torch.save(state, file))
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def _complete(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints of a run, oldest first."""
    folder = RunDir(run_dir).checkpoint_dir
    if not folder.is_dir():
        return []
    return sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT_NAME.match(p.name))
    )


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary files are not listed)."""
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


def check_format(state: object) -> dict[str, Any]:
    """`state` when it is a checkpoint of `CHECKPOINT_FORMAT`; else ConfigError."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ConfigError(f"checkpoint format {found} is not supported")
    return state


# --- the metrics log -----------------------------------------------------------------------------


def append_metrics(run_dir: Path, entry: dict) -> None:
    """Add one JSON line to ``metrics.jsonl``."""
    with open(RunDir(run_dir).metrics_file, "a") as file:
        file.write(json.dumps(entry) + "\n")


def _metric_lines(run_dir: Path) -> Iterator[tuple[str, dict]]:
    """(line, entry) of each readable entry of ``metrics.jsonl`` (a line a kill cut short and
    anything not a JSON object are skipped)."""
    path = RunDir(run_dir).metrics_file
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            yield line, entry


def read_metrics(run_dir: Path) -> list[dict]:
    """The entries of ``metrics.jsonl``, oldest first (none when there is no log)."""
    return [entry for _, entry in _metric_lines(run_dir)]


def trim_metrics(run_dir: Path, step: int) -> None:
    """Drop the log entries past `step` (written after the checkpoint a resume starts from)
    and a line that a kill cut short. Nothing happens when there is no log."""
    path = RunDir(run_dir).metrics_file
    if not path.is_file():
        return
    kept = [line for line, entry in _metric_lines(run_dir) if entry.get("step", 0) <= step]
    text = "".join(line + "\n" for line in kept)
    write_atomic(path, lambda file: file.write(text.encode()))


# --- shells ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shell:
    """One shell of a step's schedule.

    Attributes:
        number: 0 for the outermost shell, counting inward (the one numbering everywhere).
        cdf: its CDF level p (``model.shells``); 0.5 is the zero level set.
        level: its signed-distance level ``logit(p) / model.sharpness`` (contracted units).
    """

    number: int
    cdf: float
    level: float

    @property
    def suffix(self) -> str:
        """The file-name suffix: ``_shellK``."""
        return f"_shell{self.number}"

    @property
    def label(self) -> str:
        """The viewer's mode name: ``shell K (p=...)``."""
        return f"shell {self.number} (p={self.cdf:g})"


def shells_at(model: ModelConfig, step: int) -> list[Shell]:
    """The shells scheduled at `step` (``model.shells``, ``model.sharpness``), outermost first."""
    cdf = sorted(model.shells.at(step), reverse=True)
    levels = shell_levels(cdf, model.sharpness)  # logit is increasing: same order
    return [
        Shell(number, p, level) for number, (p, level) in enumerate(zip(cdf, levels, strict=True))
    ]


def shell_levels_at(model: ModelConfig, step: int) -> list[float]:
    """The signed-distance levels of `shells_at`, outermost (highest) first."""
    return [shell.level for shell in shells_at(model, step)]


# --- one trained state -------------------------------------------------------------------------


class Snapshot:
    """One trained state of a run: its ``config``, ``step`` (optimizer steps done), ``field``
    and dataset, and, when it belongs to a run directory, ``run_dir``.

    `open_run` reads one from a checkpoint; `Trainer.snapshot` takes the live one. The dataset
    (cameras, normalization, images) is loaded on first use, images on the CPU, when it was not
    given (exporting in normalized coordinates needs none).
    """

    def __init__(
        self,
        config: Config,
        step: int,
        field: Field,
        dataset: Dataset | None = None,
        *,
        run_dir: str | Path | None = None,
    ):
        self.config = config
        self.step = int(step)
        self.field = field
        self._dataset = dataset
        self.run_dir = None if run_dir is None else Path(run_dir)

    def __repr__(self) -> str:
        return f"Snapshot(step={self.step}, run_dir={self.run_dir}, field={self.field!r})"

    @property
    def dataset(self) -> Dataset:
        """The run's `meshtryoshka_data.Dataset` (loaded on first use, images on the CPU)."""
        if self._dataset is None:
            self._dataset = load_scene(self.config, torch.device("cpu"))
        return self._dataset

    @property
    def files(self) -> RunDir:
        """The paths of the run directory; RunError when the snapshot has none."""
        if self.run_dir is None:
            raise RunError("this snapshot belongs to no run directory; give an output path")
        return RunDir(self.run_dir)

    def shells(self) -> list[Shell]:
        """The shells scheduled at this step, outermost (number 0) first."""
        return shells_at(self.config.model, self.step)

    def shell_levels(self) -> list[float]:
        """The signed-distance levels of the shells scheduled at this step, outermost first."""
        return shell_levels_at(self.config.model, self.step)

    def shell(self, number: int, what: str = "shell") -> Shell:
        """Shell `number` of this step; ValueError (naming `what`) when there is none."""
        shells = self.shells()
        if not 0 <= number < len(shells):
            raise ValueError(
                f"{what} must be in 0..{len(shells) - 1} at step {self.step} "
                f"({len(shells)} shells), got {number}"
            )
        return shells[number]


def open_run(
    run_dir: str | Path,
    *,
    step: int | None = None,
    device: str | torch.device | None = "auto",
    overrides: Sequence[str] = (),
    warn: Callable[[str], None] = print,
) -> Snapshot:
    """Load the newest readable checkpoint of `run_dir` (or the one of `step`) onto `device`.

    Args:
        run_dir: a run directory written by the trainer (``config.toml`` + ``checkpoints/``).
        step: the checkpoint's step; None takes the newest one that loads (an unreadable
            newer one is reported through `warn`, as a resume does).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, a torch device, or
            None for the run's ``train.device``.
        overrides: ``section.key=value`` changes to the saved configuration (not written).

    Raises:
        RunError: `run_dir` is missing or not a run directory, has no (readable) checkpoint, or
            none for `step` (the message lists the steps it has).
        ConfigError: the saved configuration, an override or the checkpoint's format is bad.
    """
    files = RunDir(run_dir)
    if not files.path.is_dir():
        raise RunError(f"RUN_DIR {run_dir} does not exist or is not a directory")
    if not files.config_file.is_file():
        raise RunError(f"RUN_DIR {run_dir} is not a run directory (no config.toml)")
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise RunError(f"RUN_DIR {run_dir} has no checkpoint in checkpoints/ (train it first)")
    config = load_saved_config(files.config_file, overrides)
    if step is None:
        state = load_latest_checkpoint(files.path, warn=warn)
        if state is None:
            raise RunError(f"RUN_DIR {run_dir}: no checkpoint can be read")
    elif step not in steps:
        raise RunError(
            f"--step {step}: {run_dir} has no checkpoint of that step; it has steps "
            + ", ".join(str(s) for s in steps)
        )
    else:
        try:
            state = torch.load(files.checkpoint(step), map_location="cpu", weights_only=False)
        except Exception as error:  # a damaged file: torch raises several kinds
            raise RunError(f"cannot read checkpoint {files.checkpoint(step)} ({error})") from None
    check_format(state)
    model = config.model
    contraction = Contraction(model.center_radius, model.center_extent, model.arm_ratio)
    if device is None:
        device = config.train.device
    target = device if isinstance(device, torch.device) else resolve_device(device)
    field = Field.from_state(state["field"], contraction, target, backend=model.backend)
    return Snapshot(config, int(state["step"]), field, run_dir=files.path)
