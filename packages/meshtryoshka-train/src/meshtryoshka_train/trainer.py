"""The training loop: schedules, steps, checkpoints, resume, periodic and final evaluation.

A `Trainer` trains one scene into a run directory (its layout, lock, checkpoint files and log
are `meshtryoshka_train.run`'s). Its parts, each a small method:

- ``__init__``: load the dataset, build the field or restore the newest checkpoint;
- `run`: `_train_steps` (the step loop), then `final_evaluation` (and `export_mesh`);
- one step (`train_step`): sample a batch, extract the shells, render and compute the losses,
  take the optimizer step; after it (`_after_step`): hooks, progress line, checkpoint,
  periodic evaluation.

Step ``s`` first applies the schedules of step ``s`` (resolution change, SH degree, learning
rates, batch size), then takes one optimizer step. The checkpoint written "at step s" is the
state after ``s`` optimizer steps, before the schedules of step ``s``: resuming from it repeats
exactly what an uninterrupted run does next (same parameters, optimizer moments, grid, SH
degree and batch-sampling RNG state).

While `Trainer.run` trains, Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a
checkpoint of it and raises `TrainingInterrupted` (nothing is lost); a second Ctrl-C stops at
once (KeyboardInterrupt, back to the newest checkpoint).

Data-parallel training (a `Distributed` group of several ranks, as ``torchrun`` starts them;
`meshtryoshka_train.distributed`): every rank holds the same field and draws the same global
batch from the same generator, renders its contiguous shard of it and computes the image loss
scaled by its share of the batch; the loss terms that do not depend on the images (eikonal,
curvature, sdf binary, SH) are counted on rank 0 alone. One ``all_reduce`` per step sums the
gradients with the loss terms, the PSNR, a non-finite-loss sign and a stop request, so the
summed gradient is the one-process gradient of the global batch (up to float summation order),
every rank takes the same Adam step, and a signal to any rank stops all of them after the same
step. After every resolution change (and at the start) the ranks check that they hold the same
grid and parameters (`Distributed.check_same`). Rank 0 alone writes the metrics log,
checkpoints, evaluations and meshes and prints; the others wait for it in the next collective
(so ``train.distributed_timeout`` must exceed a periodic evaluation) and skip the final
evaluation (the command line then makes them wait for rank 0's before all leave the group).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from slang_rasterizer import Cameras

from .config import Config, ConfigError
from .contraction import Contraction
from .distributed import Distributed
from .evaluate import evaluate
from .export import export_mesh
from .field import Extraction, Field
from .initializers import fade_weight, point_cloud_sdf, sphere_sdf, subsample_points
from .layout import Layout
from .losses import LOSS_TERMS, compute_losses
from .metrics import psnr
from .optim import (
    add_parameters,
    build_optimizer,
    moments,
    rebuild_optimizer,
    set_learning_rates,
)
from .rendering import render_extraction
from .resolution import voxel_pixel_sizes

# The run directory's functions moved to run.py; imported here under their old import path.
from .run import (
    CHECKPOINT_FORMAT,
    RunDir,
    Snapshot,
    append_metrics,
    check_format,
    dataset_folder,
    default_run_dir,
    list_checkpoints,
    load_latest_checkpoint,
    load_scene,
    prepare_run_dir,
    resolve_device,
    run_dir_lock,
    save_checkpoint,
    shell_levels_at,
    trim_metrics,
)
from .visibility import grid_voxels_in_view

__all__ = [
    "CHECKPOINT_FORMAT",
    "OUT_OF_MEMORY",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingOutOfMemory",
    "TrainingResult",
    "dataset_folder",
    "default_run_dir",
    "format_count",
    "load_scene",
    "prepare_run_dir",
    "run_dir_lock",
    "resolve_device",
]


#: what torch raises when the GPU runs out of memory (torch.OutOfMemoryError from torch 2.5)
OUT_OF_MEMORY = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)


class TrainingDiverged(RuntimeError):
    """The loss (or the parameters) became NaN or infinite; the run stopped."""


class TrainingOutOfMemory(RuntimeError):
    """The GPU ran out of memory; the message gives the resolution, batch size and remedies."""


class TrainingInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM stopped training after a step; its checkpoint was written.

    Attributes: ``step`` (steps done), ``checkpoint`` (the checkpoint holding them),
    ``signal`` (the signal number; a command exits with status 128 + signal).
    """

    def __init__(self, message: str, step: int, checkpoint: Path, signum: int):
        super().__init__(message)
        self.step, self.checkpoint, self.signal = step, checkpoint, signum


@dataclass
class TrainingResult:
    step: int
    run_dir: Path
    evaluation: dict | None


# --- the trainer -------------------------------------------------------------------------------


class Trainer:
    """Trains one scene into `run_dir`.

    ``Trainer(config, run_dir)`` loads the dataset and builds the field (or, with
    ``resume=True``, restores the newest readable checkpoint of `run_dir`); `run` trains to
    ``train.steps``. `echo` receives the event lines; `progress(step, total, text)` the
    progress line of every ``train.log_interval`` steps (default: `echo` of the text).
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        *,
        resume: bool = False,
        echo: Callable[[str], None] = print,
        progress: Callable[[int, int, str], None] | None = None,
        group: Distributed | None = None,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        #: the data-parallel ranks this trainer is one of (`Distributed()`: a single process)
        self.group = group or Distributed()
        if not self.group.is_main:  # rank 0 alone prints
            echo, progress = _silent, _silent
        self.echo = echo
        self.progress = progress or (lambda step, total, text: echo(text))
        #: the ranks' agreed stop request of the last step (data-parallel training)
        self._stop_agreed = False
        #: the signal (SIGINT, SIGTERM) that asked `run` to stop after the current step
        self.stop_signal: int | None = None
        self._phase = "the training step"  # what runs now, for the out-of-memory message
        self.device = resolve_device(config.train.device)
        if self.device.type == "cuda" and self.group.enabled:
            self.device = self.group.cuda_device()  # cuda:LOCAL_RANK
        if self.device.type == "cpu" and config.model.backend != "reference":
            self.echo(
                "no CUDA device: the kernels run on their pure-PyTorch reference backend "
                "(fine for the demo, slow for real scenes)"
            )
        self.dataset = load_scene(config, self.device)
        train = self.dataset.splits["train"]
        # every camera checked once here (values too), so that the steps skip those host syncs
        Cameras(
            self.dataset.world_to_camera.float(),
            self.dataset.intrinsics.float(),
            (self.dataset.height, self.dataset.width),
        )
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
        #: added to the signed distance at every resolution change (the original's re-added
        #: sphere, `model.readd_initializer`), or None
        self.readded_sdf = (
            sphere_sdf(model.init_radius)
            if model.readd_initializer and model.initializer == "sphere"
            else None
        )
        #: (centre, arm) resolution at which `model.min_voxel_pixels` stopped the refinement
        self.resolution_cap: tuple[int, int] | None = None
        state = load_latest_checkpoint(self.run_dir, warn=self.echo) if resume else None
        if resume and state is None:
            self.echo(f"no checkpoint in {self.run_dir}: starting from step 0")
        if state is None:
            self.field = self._create_field()
            self.optimizer = build_optimizer(self.field.parameters(), config.optim)
        else:
            self._restore(state)
        self._check_ranks_agree("the starting state")

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
        prior = None
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
            if model.point_cloud_init == "fade":  # the learned part starts from noise alone
                prior, initial = initial, _zero_sdf
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
            backend=model.backend,
        )
        if field.num_voxels == 0:
            raise ConfigError(
                "no voxel of the grid is seen entirely by any training camera: check "
                "model.center_radius (the world box is [-R, R]^3) and the cameras"
            )
        if prior is not None:
            field.prior = prior(field.contracted_vertices()).float()
            field.prior_weight = fade_weight(0, model.init_freeze_steps, model.init_blend_steps)
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
            "resolution_cap": self.resolution_cap,
        }

    def _restore(self, state: dict) -> None:
        check_format(state)
        self.step = int(state["step"])
        self.field = Field.from_state(
            state["field"], self.contraction, self.device, backend=self.config.model.backend
        )
        self.optimizer = build_optimizer(self.field.parameters(), self.config.optim)
        names = [group["name"] for group in state["optimizer"]["param_groups"]]
        if names != [name for name, _ in self.field.parameters()]:
            raise ConfigError(f"checkpoint optimizer groups {names} do not match the field")
        self.optimizer.load_state_dict(state["optimizer"])
        self.batch_generator.set_state(state["batch_generator"])
        self.elapsed = float(state.get("elapsed", 0.0))
        cap = state.get("resolution_cap")
        self.resolution_cap = None if cap is None else (int(cap[0]), int(cap[1]))
        self.echo(
            f"resumed from step {self.step}: resolution {self.field.center_resolution}"
            + (f"/{self.field.arm_resolution}" if self.layout.arms else "")
            + f", SH degree {self.field.sh_degree}, {self.field.num_voxels} voxels"
        )

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of this step (rank 0 only; the others return its path)."""
        if not self.group.is_main:
            return RunDir(self.run_dir).checkpoint(self.step)
        return save_checkpoint(
            self.run_dir, self.step, self.state_dict(), keep=self.config.train.keep_checkpoints
        )

    def _check_ranks_agree(self, what: str) -> None:
        """Data-parallel training: every rank holds the same state (`fingerprint`), or all
        raise. Nothing is computed for a single process (the fingerprint syncs per parameter)."""
        if self.group.enabled:
            self.group.check_same(f"{what} {_FINGERPRINT}", self.fingerprint())

    def fingerprint(self) -> list[float]:
        """Step, resolutions, voxel, vertex and SH-band counts and each parameter's float64
        sum: what the ranks of data-parallel training compare (`_FINGERPRINT`)."""
        field = self.field
        counts = [self.step, field.center_resolution, field.arm_resolution, field.num_voxels]
        counts += [field.num_vertices, field.sh_degree]
        with torch.no_grad():
            sums = [float(t.detach().double().sum()) for _, t in field.parameters()]
        return [float(c) for c in counts] + sums

    # ------------------------------------------------------------------------ schedules
    def apply_schedules(self, step: int) -> None:
        """Resolution change, SH degree growth and learning rates for global step `step`."""
        model, optim = self.config.model, self.config.optim
        if self.field.prior is not None:
            weight = fade_weight(step, model.init_freeze_steps, model.init_blend_steps)
            if weight > 0:
                self.field.prior_weight = weight
            else:
                self.field.prior = None  # the learned field alone from now on
        target = (model.resolution.at(step), model.arm_resolution.at(step))
        current = (self.field.center_resolution, self.field.arm_resolution)
        if target != current and self._refinement_stops(target, step):
            target = current
        if target != current:
            self.resample(*target, step)
        degree = model.sh_degree.at(step)
        if degree > self.field.sh_degree:
            added = self.field.grow_sh(degree)
            if optim.resample_state == "reset":  # the original rebuilds Adam here too
                self.optimizer = build_optimizer(self.field.parameters(), optim)
            else:
                add_parameters(self.optimizer, added, optim)
        set_learning_rates(self.optimizer, step, optim, model, self.config.train.steps)

    def _refinement_stops(self, target: tuple[int, int], step: int) -> bool:
        """Whether the grid stays at its resolution for good: `model.min_voxel_pixels` says so
        now, or it (or `model.max_voxels`, checked by `resample`) did before."""
        threshold = self.config.model.min_voxel_pixels
        if self.resolution_cap is not None:
            return True
        if threshold <= 0 or target[0] <= self.field.center_resolution:
            return False
        pixels = self.median_voxel_pixels() * self.field.center_resolution / target[0]
        if pixels >= threshold:
            return False
        self.resolution_cap = (self.field.center_resolution, self.field.arm_resolution)
        self.echo(
            f"step {step}: the grid stays at resolution {self.field.center_resolution}: at "
            f"{target[0]} its median voxel would project to {pixels:.2f} training pixels, "
            f"below model.min_voxel_pixels = {threshold}"
        )
        return True

    @torch.no_grad()
    def median_voxel_pixels(self, sample: int = 1 << 16) -> float:
        """The median, over (up to `sample` evenly spaced) occupied voxels, of the largest size
        in training pixels (at ``model.train_ssaa``) a voxel projects to in the training views
        that see its centre (`resolution.voxel_pixel_sizes`)."""
        model = self.config.model
        train = self.dataset.splits["train"].to(self.dataset.device)
        intrinsics = self.dataset.intrinsics[train].to(self.device).clone()
        intrinsics[:, :2] *= model.train_ssaa
        size = (self.dataset.height * model.train_ssaa, self.dataset.width * model.train_ssaa)
        sizes = []
        for block, grid in zip(self.layout.blocks, self.field.grids, strict=True):
            if grid.num_voxels == 0:
                continue
            step = max(1, grid.num_voxels // sample)
            corners = grid.voxel_corners()[::step].long()  # [n, 8]
            unit = grid.vertex_positions()[corners]  # [n, 8, 3]
            contracted = block.to_contracted(unit.reshape(-1, 3), model.center_extent)
            world = self.contraction.uncontract(contracted).reshape(-1, 8, 3)
            # the edges from corner 0 along i, j, k (corners 4, 2, 1)
            edges = (world[:, [4, 2, 1]] - world[:, :1]).norm(dim=-1).amax(1)
            sizes.append(
                voxel_pixel_sizes(
                    world.mean(1),
                    edges,
                    self.dataset.world_to_camera[train].to(self.device),
                    intrinsics,
                    size,
                    near=model.train_near,
                )
            )
        seen = torch.cat(sizes)
        seen = seen[seen > 0]
        return float(seen.median()) if seen.numel() else 0.0

    def resample(self, center: int, arm: int, step: int) -> None:
        """Move the field to a new resolution; carry (or reset) Adam's moments with it. If the
        new grid would hold more than `model.max_voxels` voxels, nothing changes and the grid
        stays at its resolution for the rest of the run (`resolution_cap`)."""
        model, optim = self.config.model, self.config.optim
        before = (self.field.center_resolution, self.field.num_voxels)
        remap = self.field.plan_resample(
            center,
            arm,
            shell_levels_at(model, step),
            model.dilation,
            self.voxel_filter,
            backend=model.backend,
            rule=model.occupancy_rule,
        )
        planned = sum(grid.num_voxels for grid in remap.grids)
        if 0 < model.max_voxels < planned:
            self.resolution_cap = (self.field.center_resolution, self.field.arm_resolution)
            self.echo(
                f"step {step}: the grid stays at resolution {before[0]}: at {center} it would "
                f"hold {planned} voxels, more than model.max_voxels = {model.max_voxels}"
            )
            return
        self.field.bake_prior()  # a resolution change before the prior has faded: keep the blend
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
        if self.readded_sdf is not None:
            with torch.no_grad():
                self.field.sdf += self.readded_sdf(self.field.contracted_vertices())
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
        self._check_ranks_agree(f"the grid after the resolution change of step {step}")

    # ------------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimizer step at ``self.step`` (schedules already applied); returns its stats."""
        size = self.config.optim.batch_size.at(self.step)
        if self.group.enabled:
            return self._data_parallel_step(size)
        batch = self.dataset.sample_batch(size, self.batch_generator)
        target = batch.images.to(self.device)
        extraction = self._extract_shells()
        image, losses = self._render_losses(extraction, batch, target)
        self._optimizer_step(losses["total"])
        return self._step_stats(losses, image, target, extraction)

    def _data_parallel_step(self, size: int) -> dict[str, torch.Tensor]:
        """`train_step` on one rank of several: this rank's shard of the step's batch of `size`
        images (drawn alike on every rank, only the shard's images built; possibly none),
        then the gradients, loss terms, PSNR and stop request summed over the ranks in one
        ``all_reduce``, then the same Adam step on every rank."""
        part = self.group.shard(size)
        count = len(range(size)[part])
        shard = self.dataset.sample_batch(size, self.batch_generator, part=part)
        extraction = self._extract_shells()
        zero = torch.zeros((), device=self.device)
        if count:
            target = shard.images.to(self.device)
            image, losses = self._render_losses(extraction, shard, target, share=count / size)
            psnr_sum = psnr(image.detach(), target).sum()
        else:  # more ranks than images: this rank only joins the sums
            losses, psnr_sum = {name: zero for name in LOSS_TERMS}, zero
        total = losses["total"]
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()  # a non-finite loss makes the summed total non-finite: raised below
        stop = float(self.stop_signal is not None)
        extra = torch.stack(
            [*(losses[name].detach().float() for name in LOSS_TERMS), psnr_sum.float()]
            + [torch.tensor(stop, device=self.device)]
        )
        summed = self.group.sum_gradients([t for _, t in self.field.parameters()], extra)
        self._stop_agreed = self._stop_agreed or bool(summed[-1] > 0)
        if not math.isfinite(float(summed[LOSS_TERMS.index("total")])):
            raise self._diverged("the loss")
        self.optimizer.step()
        stats = {name: summed[i] for i, name in enumerate(LOSS_TERMS)}
        stats["psnr"] = summed[len(LOSS_TERMS)] / size
        return stats | _mesh_stats(extraction)

    def _extract_shells(self) -> Extraction:
        """The shells scheduled at this step, with gradients to the field."""
        model = self.config.model
        try:
            return self.field.extract(shell_levels_at(model, self.step), backend=model.backend)
        except ValueError:
            if not self.field.is_finite():
                raise self._diverged("the parameters") from None
            raise

    def _render_losses(
        self, extraction: Extraction, batch, target: torch.Tensor, share: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(image ``[B, 3, H, W]``, the losses against `target`) of `batch` rendered from
        `extraction`; `batch` is the fraction `share` of the step's images (data-parallel
        training: this rank's shard), and the terms without images count on rank 0 only."""
        model, weights = self.config.model, self.config.loss
        background = batch.background.to(self.device)
        if self.dataset.background != "random":  # one colour: no need to compare them
            background = background[0]
        image, _ = render_extraction(
            extraction,
            batch.world_to_camera.to(self.device),
            batch.intrinsics.to(self.device),
            (batch.height, batch.width),
            background,
            model,
            ssaa=model.train_ssaa,
            near=model.train_near,
            check_cameras=False,
        )
        field_terms = self.group.is_main
        needs_regularizers = field_terms and any(
            (weights.eikonal_pos, weights.eikonal_neg, weights.curvature)
        )
        regularizers = (
            self.field.regularizers(weights.curvature_operator) if needs_regularizers else None
        )
        prediction = image.clamp(0.0, 1.0) if weights.clip_prediction else image
        losses = compute_losses(
            weights,
            prediction,
            target,
            extraction.sdf,
            extraction.sh,
            regularizers,
            image_share=share,
            field_terms=field_terms,
        )
        return image, losses

    def _optimizer_step(self, total: torch.Tensor) -> None:
        """Backward of the total loss and one Adam step; a non-finite loss stops training
        before the step. The loss is read (a host sync) after the backward is queued, so the
        host queues the backward while the GPU still runs the forward."""
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
        if not math.isfinite(float(total.detach())):
            raise self._diverged("the loss")
        self.optimizer.step()

    def _step_stats(
        self, losses: dict, image: torch.Tensor, target: torch.Tensor, extraction: Extraction
    ) -> dict[str, torch.Tensor]:
        stats = {name: value.detach() for name, value in losses.items()}
        stats["psnr"] = psnr(image.detach(), target).mean()
        return stats | _mesh_stats(extraction)

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

        Ctrl-C (SIGINT) or SIGTERM during the steps (main thread only): the current step
        finishes, its checkpoint is written and `TrainingInterrupted` is raised; a second
        Ctrl-C raises KeyboardInterrupt at once. Running out of GPU memory raises
        `TrainingOutOfMemory` naming the resolution, the batch size and what to change.

        stop_at: stop after this many steps without the final checkpoint or evaluation (what
            a crash at that point leaves behind; used by tests).
        """
        total = self.config.train.steps
        if self.group.is_main:
            trim_metrics(self.run_dir, self.step)
        self._phase = "the training step"
        try:
            with self._stop_requests():
                if not self._train_steps(total, stop_at):
                    return TrainingResult(self.step, self.run_dir, None)
            if self._stopping:
                raise self._interrupted(total)
            if not self.group.is_main:  # rank 0 alone evaluates and exports
                return TrainingResult(self.step, self.run_dir, None)
            self._phase = "the final evaluation"
            evaluation = self.final_evaluation()
            if self.config.train.export_mesh:
                self._phase = "the mesh export"
                self.export_mesh()
        except OUT_OF_MEMORY as error:
            raise TrainingOutOfMemory(self._out_of_memory_message(error)) from None
        return TrainingResult(self.step, self.run_dir, evaluation)

    def _train_steps(self, total: int, stop_at: int | None) -> bool:
        """Steps until `total` or a stop request, then the last step's checkpoint.

        Returns False when `stop_at` ended it (no final checkpoint).
        """
        last_saved = self.step if list_checkpoints(self.run_dir) else None
        self._window = (time.perf_counter(), 0)
        while self.step < total and not self._stopping:
            if stop_at is not None and self.step >= stop_at:
                return False
            self._phase = "the training step"
            self.apply_schedules(self.step)
            stats = self.train_step()
            self.step += 1
            if self._after_step(stats, total):
                last_saved = self.step
        if last_saved != self.step:
            self.save_checkpoint()
        self.group.barrier()  # the other ranks wait for rank 0's checkpoint
        return True

    @property
    def _stopping(self) -> bool:
        """Whether a stop request ends the loop: this process's signal, or (data-parallel)
        the request the ranks agreed on in the last step's ``all_reduce``."""
        return self._stop_agreed if self.group.enabled else self.stop_signal is not None

    def _after_step(self, stats: dict[str, torch.Tensor], total: int) -> bool:
        """The step hooks, the progress line, the periodic checkpoint and evaluation of the
        step just taken; returns whether it wrote a checkpoint (rank 0 only: the other ranks
        return False at once)."""
        if not self.group.is_main:
            return False
        train = self.config.train
        start, steps = self._window[0], self._window[1] + 1
        for hook in self.step_hooks:
            start += hook(self, stats) or 0.0  # seconds a hook waited (a paused viewer)
        if self.step % train.log_interval == 0 or self.step == total:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            rate = steps / max(now - start, 1e-9)
            self.elapsed += now - start
            start, steps = now, 0
            self._log_progress(stats, rate, total)
        self._window = (start, steps)
        saved = bool(train.checkpoint_interval) and self.step % train.checkpoint_interval == 0
        if saved:
            self.save_checkpoint()
        if train.eval_interval and self.step % train.eval_interval == 0 and self.step < total:
            self._phase = "the periodic evaluation"
            self._periodic_evaluation()
            self._window = (time.perf_counter(), self._window[1])
        return saved

    @contextlib.contextmanager
    def _stop_requests(self) -> Iterator[None]:
        """SIGINT and SIGTERM set `stop_signal` (the loop then stops after the current step)."""
        self.stop_signal = None
        self._stop_agreed = False
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return

        first = [0.0]  # when the first request came

        def request_stop(signum: int, frame) -> None:
            if signum == signal.SIGINT and self.stop_signal == signal.SIGINT:
                # torchrun passes a terminal's Ctrl-C on to its ranks, which the terminal
                # already sent them: a rank of several counts one within a second as the same
                if not self.group.enabled or time.monotonic() - first[0] > 1.0:
                    raise KeyboardInterrupt  # the second Ctrl-C: stop now
                return
            first[0] = time.monotonic()
            self.stop_signal = signum
            with contextlib.suppress(OSError):  # os.write: safe inside a signal handler
                os.write(
                    2,
                    f"\n{signal.Signals(signum).name}: stopping after the current step and "
                    "writing its checkpoint (Ctrl-C again to stop at once)\n".encode(),
                )

        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, request_stop)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                if signum == signal.SIGTERM and self.group.enabled and self._stopping:
                    # torchrun sends SIGTERM to the ranks still running once one has exited:
                    # ignore it while this rank says where it stopped and exits
                    handler = signal.SIG_IGN
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _interrupted(self, total: int) -> TrainingInterrupted:
        # data-parallel: the signal may have reached another rank only (torchrun: SIGTERM)
        signum = self.stop_signal if self.stop_signal is not None else signal.SIGTERM
        name = signal.Signals(signum).name
        path = RunDir(self.run_dir).checkpoint(self.step)
        left = "only the final evaluation is left" if self.step >= total else "no step is lost"
        return TrainingInterrupted(
            f"{name}: training stopped at step {self.step} of {total}; the checkpoint {path} "
            f"holds it ({left})",
            self.step,
            path,
            int(signum),
        )

    def _out_of_memory_message(self, error: BaseException) -> str:
        """What ran out, at which sizes, what is kept, and what to change (several lines)."""
        config, model, phase = self.config, self.config.model, self._phase
        batch = config.optim.batch_size.at(self.step)
        arms = f" (arms {self.field.arm_resolution})" if self.layout.arms else ""
        kept = list_checkpoints(self.run_dir)
        where = f"the newest checkpoint is {kept[-1]}" if kept else "no checkpoint was written"
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        training = phase == "the training step"
        if training:
            smaller = f"optim.batch_size={max(1, batch // 2)}"
            bound = model.max_voxels or "none"
            hints = [
                f"{smaller} (a lower batch size; now {batch})",
                f"a lower model.train_ssaa (now {model.train_ssaa})",
                f"model.max_voxels={max(1, self.field.num_voxels - 1)} (no grid this large again, "
                f"if the newest checkpoint is from before it; now {bound})",
            ]
        else:
            smaller = f"model.eval_ssaa={max(1, model.eval_ssaa - 1)}"
            hints = [f"{smaller} (a lower evaluation supersampling; now {model.eval_ssaa})"]
        hints += [
            f"dataset.device=cpu (training images in CPU memory; now {config.dataset.device})",
            "a smaller experiment, e.g. --experiment mip360_24gb (made for 24 GB GPUs)",
        ]
        ssaa = model.train_ssaa if training else model.eval_ssaa
        return "\n".join(
            [
                f"out of GPU memory at step {self.step} during {phase}"
                + (f" ({detail})" if detail else ""),
                f"  resolution {self.field.center_resolution}{arms}, {self.field.num_voxels} "
                f"voxels, batch size {batch} images of {self.dataset.width}x"
                f"{self.dataset.height} px at SSAA {ssaa}",
                f"  training stopped; {where}",
                "  to fit, try:",
                *(f"    - {hint}" for hint in hints),
                "  and continue with (overrides given with --resume are kept):",
                f"    meshtryoshka-train --resume --run-dir {self.run_dir} {smaller}",
            ]
        )

    def snapshot(self) -> Snapshot:
        """The current state (the live field, not a copy) as a `Snapshot` of the run."""
        return Snapshot(self.config, self.step, self.field, self.dataset, run_dir=self.run_dir)

    def export_mesh(self) -> Path:
        """Write the field's zero level set like ``export-mesh RUN_DIR``; returns the file."""
        result = export_mesh(self.snapshot())
        edges = result.edges
        self.echo(
            f"mesh: {result.mesh.num_vertices} vertices, {result.mesh.num_faces} faces, "
            f"watertight {'yes' if edges.watertight else 'no'}; written to {result.path}"
        )
        return result.path

    def final_evaluation(self) -> dict:
        """Both modes on the whole test split, written to ``eval/step_XXXXXXX/``."""
        out_dir = RunDir(self.run_dir).eval_dir(self.step)
        result = evaluate(self.field, self.dataset, self.config, self.step, out_dir=out_dir)
        append_metrics(self.run_dir, {"event": "test", "elapsed": self.elapsed, **_summary(result)})
        self.echo(
            f"test PSNR at step {self.step}: layered {result['layered']['psnr']:.2f} dB, "
            f"surface {result['surface']['psnr']:.2f} dB (SSIM {_fmt(result['layered']['ssim'])}"
            f" / {_fmt(result['surface']['ssim'])}); renders and metrics in {out_dir}"
        )
        return result

    def _periodic_evaluation(self) -> None:
        split = self.config.train.eval_split
        if not len(self.dataset.splits[split]):
            split = "test"
        result = evaluate(
            self.field,
            self.dataset,
            self.config,
            self.step,
            split=split,
            modes=("layered",),
            max_images=self.config.train.eval_images,
        )
        append_metrics(self.run_dir, {"event": "eval", "elapsed": self.elapsed, **_summary(result)})
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
            "elapsed": self.elapsed,
        }
        if self.device.type == "cuda":  # the allocator's own counter: no device sync
            entry["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        append_metrics(self.run_dir, entry)
        self.progress(
            self.step,
            total,
            f"step {self.step}/{total} | loss {values['total']:.4f} | psnr {values['psnr']:.2f}"
            f" | faces {format_count(values['faces'])} | res {self.field.center_resolution}"
            f" | {rate:.2f} steps/s | eta {_duration(remaining)}",
        )


_FINGERPRINT = (
    "(step, resolution, arm resolution, voxels, vertices, SH degree, the sum of each parameter)"
)


def _silent(*args) -> None:
    """Where the output of ranks other than 0 goes."""


def _mesh_stats(extraction: Extraction) -> dict[str, torch.Tensor]:
    """The step's mesh sizes for the log: faces and vertices of all shells."""
    return {
        "faces": torch.tensor(float(extraction.num_faces)),
        "shell_vertices": torch.tensor(float(extraction.sdf.shape[0])),
    }


def _zero_sdf(points: torch.Tensor) -> torch.Tensor:
    return torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)


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


def format_count(value: float) -> str:
    """A count for progress lines: ``812``, ``81.2k``, ``1.85M``."""
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{int(value)}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
