"""The training loop: schedules, steps, checkpoints, resume, periodic and final evaluation.

A run directory holds::

    config.toml                 the resolved configuration (what `--resume` and `eval` read)
    metrics.jsonl               one JSON object per progress line and per evaluation
    checkpoints/step_XXXXXXX.pt the newest `train.keep_checkpoints` checkpoints (atomic writes)
    eval/step_XXXXXXX/          metrics.json and layered/ + surface/ PNG renders of the test split

Step ``s`` first applies the schedules of step ``s`` (resolution change, SH degree, learning
rates, batch size), then takes one optimizer step. The checkpoint written "at step s" is the
state after ``s`` optimizer steps, before the schedules of step ``s``: resuming from it repeats
exactly what an uninterrupted run does next (same parameters, optimizer moments, grid, SH
degree and batch-sampling RNG state).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from meshtryoshka_data import load_blender, load_colmap

from .checkpoint import list_checkpoints, load_latest_checkpoint, save_checkpoint, write_atomic
from .config import Config, ConfigError, dump_config
from .contraction import Contraction
from .evaluate import evaluate
from .field import Field, shell_levels
from .initializers import point_cloud_sdf, sphere_sdf, subsample_points
from .layout import Layout
from .losses import compute_losses
from .metrics import psnr
from .optim import (
    add_parameters,
    build_optimizer,
    moments,
    rebuild_optimizer,
    set_learning_rates,
)
from .rendering import render_extraction
from .visibility import grid_voxels_in_view

__all__ = [
    "CHECKPOINT_FORMAT",
    "Trainer",
    "TrainingDiverged",
    "TrainingResult",
    "dataset_folder",
    "default_run_dir",
    "load_scene",
    "prepare_run_dir",
    "resolve_device",
]

CHECKPOINT_FORMAT = 1


class TrainingDiverged(RuntimeError):
    """The loss (or the parameters) became NaN or infinite; the run stopped."""


@dataclass
class TrainingResult:
    step: int
    run_dir: Path
    evaluation: dict | None


# --- run setup ---------------------------------------------------------------------------------


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


def default_run_dir(config: Config, workspace: str | Path) -> Path:
    """``workspace / <experiment name> / <scene>`` (a .toml experiment uses its file stem)."""
    name = (
        Path(config.experiment).stem if config.experiment.endswith(".toml") else config.experiment
    )
    return Path(workspace) / name / config.dataset.scene


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
    return load_colmap(
        folder,
        downscale=data.downscale,
        llffhold=data.llffhold,
        background=data.background,
        device=image_device,
        scale_factor=data.scale_factor,
        orient=data.orient,
    )


def prepare_run_dir(run_dir: Path, config: Config, *, resume: bool, overwrite: bool) -> Config:
    """Create (or, with `resume`, reopen) a run directory; returns the config to train with.

    A fresh run refuses an existing non-empty directory unless `overwrite` (which deletes it)
    and writes ``config.toml``. A resumed run keeps its ``config.toml``.
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.toml").is_file():
            raise ConfigError(f"cannot resume: {run_dir} has no config.toml (not a run directory)")
        return config
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"run directory {run_dir} already exists; pass --resume to continue it or "
                "--overwrite to delete it and start again"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dump_config(config))
    return config


# --- the trainer -------------------------------------------------------------------------------


class Trainer:
    """Trains one scene into `run_dir`.

    ``Trainer(config, run_dir)`` loads the dataset and builds the field (or, with
    ``resume=True``, restores the newest checkpoint of `run_dir`); `run` trains to
    ``train.steps``. `echo` receives the progress and event lines.
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        *,
        resume: bool = False,
        echo: Callable[[str], None] = print,
        progress: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.echo = echo
        self.progress = progress or echo
        self.device = resolve_device(config.train.device)
        self.dataset = load_scene(config, self.device)
        train = self.dataset.splits["train"]
        largest = max(config.optim.batch_size.values.values())
        if largest > len(train):
            raise ConfigError(
                f"optim.batch_size reaches {largest} but the dataset has only {len(train)} "
                f"training images; override it, e.g. optim.batch_size={len(train)}"
            )
        model = config.model
        self.contraction = Contraction(model.center_radius, model.center_extent, model.arm_ratio)
        self.layout = Layout(model.center_extent, model.arm_resolution.at(0) > 0)
        self.step = 0
        self.batch_generator = torch.Generator().manual_seed(config.train.seed + 1)
        self.elapsed = 0.0
        #: called after every step as ``hook(trainer, stats)``; a hook may return seconds it
        #: spent waiting (e.g. a paused viewer), which the steps/s rate leaves out
        self.step_hooks: list[Callable[[Trainer, dict], float | None]] = []
        state = load_latest_checkpoint(self.run_dir) if resume else None
        if resume and state is None:
            self.echo(f"no checkpoint in {self.run_dir}: starting from step 0")
        if state is None:
            self.field = self._create_field()
            self.optimizer = build_optimizer(self.field.parameters(), config.optim)
        else:
            self._restore(state)

    # ------------------------------------------------------------------------ creation, state
    def voxel_filter(self, block, grid) -> torch.Tensor:
        """Voxels that `model.visibility_min_cameras` training cameras see entirely."""
        model = self.config.model
        train = self.dataset.splits["train"].to(self.dataset.device)

        def to_world(unit: torch.Tensor) -> torch.Tensor:
            return self.contraction.uncontract(block.to_contracted(unit, model.center_extent))

        return grid_voxels_in_view(
            grid,
            to_world,
            self.dataset.world_to_camera[train],
            self.dataset.intrinsics[train],
            (self.dataset.height, self.dataset.width),
            near=model.train_near,
            min_cameras=model.visibility_min_cameras,
        )

    def _create_field(self) -> Field:
        model = self.config.model
        generator = torch.Generator().manual_seed(self.config.train.seed)
        if model.initializer == "sphere":
            initial = sphere_sdf(model.init_radius)
        else:
            if self.dataset.points is None or len(self.dataset.points) == 0:
                raise ConfigError(
                    "model.initializer = 'point_cloud' needs the dataset's sparse points; this "
                    "dataset has none (use model.initializer=sphere)"
                )
            points = subsample_points(self.dataset.points.cpu(), model.init_points, generator)
            initial = point_cloud_sdf(
                self.contraction.contract(points.to(self.device)), model.init_radius
            )
        field = Field.create(
            self.layout,
            self.contraction,
            model.resolution.at(0),
            model.arm_resolution.at(0),
            initial,
            self.voxel_filter,
            generator,
            model.init_sdf_noise,
            model.init_sh_noise,
            device=self.device,
        )
        if field.num_voxels == 0:
            raise ConfigError(
                "no voxel of the grid is seen entirely by any training camera: check "
                "model.center_radius (the world box is [-R, R]^3) and the cameras"
            )
        return field

    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "config": self.config.to_toml_dict(),
            "field": self.field.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "batch_generator": self.batch_generator.get_state(),
            "elapsed": self.elapsed,
        }

    def _restore(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"checkpoint format {state.get('format')} is not supported")
        self.step = int(state["step"])
        self.field = Field.from_state(state["field"], self.contraction, self.device)
        self.optimizer = build_optimizer(self.field.parameters(), self.config.optim)
        names = [group["name"] for group in state["optimizer"]["param_groups"]]
        if names != [name for name, _ in self.field.parameters()]:
            raise ConfigError(f"checkpoint optimizer groups {names} do not match the field")
        self.optimizer.load_state_dict(state["optimizer"])
        self.batch_generator.set_state(state["batch_generator"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.echo(
            f"resumed from step {self.step}: resolution {self.field.center_resolution}"
            + (f"/{self.field.arm_resolution}" if self.layout.arms else "")
            + f", SH degree {self.field.sh_degree}, {self.field.num_voxels} voxels"
        )

    def save_checkpoint(self) -> Path:
        return save_checkpoint(
            self.run_dir, self.step, self.state_dict(), keep=self.config.train.keep_checkpoints
        )

    # ------------------------------------------------------------------------ schedules
    def apply_schedules(self, step: int) -> None:
        """Resolution change, SH degree growth and learning rates for global step `step`."""
        model, optim = self.config.model, self.config.optim
        target = (model.resolution.at(step), model.arm_resolution.at(step))
        if target != (self.field.center_resolution, self.field.arm_resolution):
            self.resample(*target, step)
        degree = model.sh_degree.at(step)
        if degree > self.field.sh_degree:
            add_parameters(self.optimizer, self.field.grow_sh(degree), optim)
        set_learning_rates(self.optimizer, step, optim, model)

    def resample(self, center: int, arm: int, step: int) -> None:
        """Move the field to a new resolution; carry (or reset) Adam's moments with it."""
        model, optim = self.config.model, self.config.optim
        before = (self.field.center_resolution, self.field.num_voxels)
        remap = self.field.plan_resample(
            center,
            arm,
            shell_levels(model.shells.at(step), model.sharpness),
            model.dilation,
            self.voxel_filter,
            backend=model.backend,
        )
        old_named = self.field.parameters()
        tensors = [t.detach() for _, t in old_named]
        with_state = []
        if optim.resample_state == "transfer":
            for name, tensor in old_named:
                state = moments(self.optimizer, tensor)
                if state is not None:
                    tensors += list(state)
                    with_state.append(name)
        moved = remap.apply_many(tensors)
        count = len(old_named)
        self.field.apply_remap(remap, moved[:count])
        carried = {
            name: (moved[count + 2 * i], moved[count + 2 * i + 1])
            for i, name in enumerate(with_state)
        }
        self.optimizer = rebuild_optimizer(
            self.optimizer,
            old_named,
            self.field.parameters(),
            carried if optim.resample_state == "transfer" else None,
            optim,
        )
        self.echo(
            f"step {step}: resolution {before[0]} -> {center}"
            + (f" (arms {arm})" if self.layout.arms else "")
            + f", voxels {before[1]} -> {self.field.num_voxels}"
        )

    # ------------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimizer step at ``self.step`` (schedules already applied); returns its stats."""
        config, model = self.config, self.config.model
        batch = self.dataset.sample_batch(
            config.optim.batch_size.at(self.step), self.batch_generator
        )
        target = batch.images.to(self.device)
        levels = shell_levels(model.shells.at(self.step), model.sharpness)
        try:
            extraction = self.field.extract(levels, backend=model.backend)
        except ValueError:
            if not self.field.is_finite():
                raise self._diverged("the parameters") from None
            raise
        image, _ = render_extraction(
            extraction,
            batch.world_to_camera.to(self.device),
            batch.intrinsics.to(self.device),
            (batch.height, batch.width),
            batch.background.to(self.device),
            model,
            ssaa=model.train_ssaa,
            near=model.train_near,
        )
        weights = config.loss
        needs_regularizers = any((weights.eikonal_pos, weights.eikonal_neg, weights.curvature))
        regularizers = self.field.regularizers() if needs_regularizers else None
        losses = compute_losses(weights, image, target, extraction.sdf, extraction.sh, regularizers)
        total = losses["total"]
        if not math.isfinite(float(total.detach())):
            raise self._diverged("the loss")
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
        self.optimizer.step()
        stats = {name: value.detach() for name, value in losses.items()}
        stats["psnr"] = psnr(image.detach(), target).mean()
        stats["faces"] = torch.tensor(float(extraction.num_faces))
        return stats

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = list_checkpoints(self.run_dir)
        where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was written"
        return TrainingDiverged(
            f"{what} became NaN or infinite at step {self.step}; training stopped and {where}. "
            "Resume with --resume after lowering optim.lr, or check the data."
        )

    # ------------------------------------------------------------------------ the loop
    def run(self, stop_at: int | None = None) -> TrainingResult:
        """Train to ``train.steps``; checkpoints, logs and evaluates on the way.

        stop_at: stop after this many steps without the final checkpoint or evaluation (what
            a crash at that point leaves behind; used by tests).
        """
        train = self.config.train
        total = train.steps
        window_start, window_steps = time.perf_counter(), 0
        last_saved = self.step if list_checkpoints(self.run_dir) else None
        self._trim_metrics(self.step)
        while self.step < total:
            if stop_at is not None and self.step >= stop_at:
                return TrainingResult(self.step, self.run_dir, None)
            self.apply_schedules(self.step)
            stats = self.train_step()
            self.step += 1
            window_steps += 1
            for hook in self.step_hooks:
                window_start += hook(self, stats) or 0.0
            if self.step % train.log_interval == 0 or self.step == total:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                now = time.perf_counter()
                rate = window_steps / max(now - window_start, 1e-9)
                self.elapsed += now - window_start
                window_start, window_steps = now, 0
                self._log_progress(stats, rate, total)
            if train.checkpoint_interval and self.step % train.checkpoint_interval == 0:
                self.save_checkpoint()
                last_saved = self.step
            if train.eval_interval and self.step % train.eval_interval == 0 and self.step < total:
                self._periodic_evaluation()
                window_start = time.perf_counter()
        if last_saved != self.step:
            self.save_checkpoint()
        evaluation = self.final_evaluation()
        return TrainingResult(self.step, self.run_dir, evaluation)

    def final_evaluation(self) -> dict:
        """Both modes on the whole test split, written to ``eval/step_XXXXXXX/``."""
        out_dir = self.run_dir / "eval" / f"step_{self.step:07d}"
        result = evaluate(self.field, self.dataset, self.config, self.step, out_dir=out_dir)
        self._append_metrics({"event": "test", **_summary(result)})
        self.echo(
            f"test PSNR at step {self.step}: layered {result['layered']['psnr']:.2f} dB, "
            f"surface {result['surface']['psnr']:.2f} dB (SSIM {_fmt(result['layered']['ssim'])}"
            f" / {_fmt(result['surface']['ssim'])}); renders and metrics in {out_dir}"
        )
        return result

    def _periodic_evaluation(self) -> None:
        split = "val" if len(self.dataset.splits["val"]) else "test"
        result = evaluate(
            self.field,
            self.dataset,
            self.config,
            self.step,
            split=split,
            modes=("layered",),
            max_images=self.config.train.eval_images,
        )
        self._append_metrics({"event": "eval", **_summary(result)})
        self.echo(
            f"step {self.step}: {split} PSNR {result['layered']['psnr']:.2f} dB over "
            f"{result['images']} images"
        )

    def _log_progress(self, stats: dict[str, torch.Tensor], rate: float, total: int) -> None:
        values = {name: float(value) for name, value in stats.items()}
        remaining = (total - self.step) / max(rate, 1e-9)
        entry = {
            "event": "train",
            "step": self.step,
            **values,
            "steps_per_second": rate,
            "resolution": self.field.center_resolution,
            "arm_resolution": self.field.arm_resolution,
            "voxels": self.field.num_voxels,
            "vertices": self.field.num_vertices,
            "sh_degree": self.field.sh_degree,
            "lr": self.optimizer.param_groups[0]["lr"],
            "batch_size": self.config.optim.batch_size.at(self.step - 1),
        }
        self._append_metrics(entry)
        self.progress(
            f"step {self.step}/{total} | loss {values['total']:.4f} | psnr {values['psnr']:.2f}"
            f" | faces {_count(values['faces'])} | res {self.field.center_resolution}"
            f" | {rate:.2f} steps/s | eta {_duration(remaining)}"
        )

    def _append_metrics(self, entry: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps(entry) + "\n")

    def _trim_metrics(self, step: int) -> None:
        """Drop log entries past `step` (written after the checkpoint a resume starts from)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        lines = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        text = "".join(line + "\n" for line in lines)
        write_atomic(path, lambda file: file.write(text.encode()))


def _summary(result: dict) -> dict:
    out = {"step": result["step"], "split": result["split"], "images": result["images"]}
    for mode in ("layered", "surface"):
        if mode in result:
            out[f"{mode}_psnr"] = result[mode]["psnr"]
            out[f"{mode}_ssim"] = result[mode]["ssim"]
            out[f"{mode}_faces"] = result[mode]["faces"]
    return out


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{int(value)}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
