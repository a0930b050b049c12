"""Typed training configuration, TOML experiments and dotted command-line overrides.

An experiment is a TOML file shipped in ``meshtryoshka_train/experiments/``. Its tables map onto
the frozen dataclasses below; every key is optional (the dataclass default applies). An
experiment may start from another with ``extends = "NAME"``, and may hold per-scene settings
under ``[scenes.<scene>]`` (applied when ``dataset.scene`` is that scene). Command-line
overrides are ``section.key=value`` with a TOML value (``model.render_mode=explicit``,
``optim.batch_size={0=16,4800=8}``, ``model.shells=[0.9,0.5,0.1]``); a value that does not
parse as TOML is taken as a string. Order of precedence, lowest first: dataclass defaults,
the experiment chain, the scene's settings, the command line.

Units: lengths in the normalized world (cameras inside [-1, 1]^3) unless a field says
"contracted" (the grid's [0, 1]^3); steps count optimizer steps from 0.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .schedule import Schedule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration that cannot be used: unknown key, wrong type, bad value."""


@dataclass(frozen=True)
class DatasetConfig:
    format: Literal["blender", "colmap", "nerfstudio"] = "blender"
    """Dataset layout: NeRF-synthetic JSON ("blender"), COLMAP sparse model ("colmap", e.g.
    from `meshtryoshka-data from-images`) or nerfstudio transforms.json ("nerfstudio")."""
    root: str = "datasets/nerf_synthetic"
    """Folder holding one sub-folder per scene (relative to the working directory)."""
    scene: str = "lego"
    """Scene folder name under `root`."""
    downscale: int = 1
    """Integer image downscale (COLMAP: uses the images_<downscale> folder when present)."""
    background: Literal["white", "black", "random"] = "white"
    """Background that transparent training pixels are composited on ("random": per step)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the uint8 images are kept ("auto": on the training device)."""
    llffhold: int = 8
    """COLMAP/nerfstudio test split: every llffhold-th image sorted by name."""
    scale_factor: float = 1.0
    """Normalization: camera centres end up in [-scale_factor, scale_factor]^3."""
    orient: bool = False
    """COLMAP/nerfstudio: rotate the mean camera up direction onto +z before normalizing."""


@dataclass(frozen=True)
class ModelConfig:
    render_mode: Literal["fused", "explicit"] = "fused"
    """Fused tile kernel (less memory) or explicit hit buffers; both give the same image."""
    backend: Literal["auto", "reference", "slang"] = "auto"
    """Kernel backend: Slang on CUDA, the pure-PyTorch reference elsewhere ("auto")."""
    shells: Schedule[list[float]] = field(
        default_factory=lambda: Schedule({0: [0.9, 0.5, 0.1, 0.01, 0.001]})
    )
    """CDF levels p of the shells, strictly decreasing (outermost first); 0.5 is the surface."""
    sharpness: float = 400.0
    """k of the logistic CDF: a shell's signed-distance level is logit(p) / k (contracted units)."""
    resolution: Schedule[int] = field(default_factory=lambda: Schedule({0: 32}))
    """Voxels per side of the centre grid, by step (coarse to fine)."""
    arm_resolution: Schedule[int] = field(default_factory=lambda: Schedule({0: 0}))
    """Voxels along each of the six arms (unbounded scenes); 0 = no arms."""
    center_extent: float = 1.0
    """Side of the centre cube in the contracted [0, 1]^3 (1.0 = the whole grid)."""
    center_radius: float = 1.5
    """Contraction: world half-size (infinity norm) mapped linearly onto the centre cube."""
    arm_ratio: float = 0.0
    """Contraction: log-space extent of the arms; the far bound is center_radius * e^(2 a)."""
    sh_degree: Schedule[int] = field(default_factory=lambda: Schedule({0: 0, 300: 1}))
    """Active spherical-harmonic degree (0..3), by step."""
    initializer: Literal["sphere", "point_cloud"] = "sphere"
    """Initial signed distance: a sphere (objects) or the COLMAP point cloud (unbounded)."""
    init_radius: float = 0.25
    """Sphere radius, or the radius of each point's ball for "point_cloud" (contracted units)."""
    init_points: int = 50000
    """Point-cloud initializer: points drawn (seeded, without replacement) from the cloud."""
    init_sdf_noise: float = 0.01
    """Standard deviation of the Gaussian noise added once to the initial signed distance."""
    init_sh_noise: float = 0.1
    """Standard deviation of the initial SH degree-0 coefficients (around colour 0.5)."""
    point_cloud_init: Literal["fade", "baked"] = "fade"
    """How the point-cloud initializer acts. "fade" (the original's): the shells see
    ``(1 - w) sdf + w d`` (``d`` the point cloud's distance), the learnable sdf starting from
    noise; ``w = 1`` for `init_freeze_steps`, then falls linearly to 0 over `init_blend_steps`.
    "baked": ``d`` is baked into the learnable sdf, whose learning rate is 0 for
    `init_freeze_steps` and ramps linearly to 1x over `init_blend_steps`."""
    init_freeze_steps: int = 0
    """Steps during which the initializer alone shapes the field (see `point_cloud_init`; with
    the sphere: the signed distance's learning rate is 0)."""
    init_blend_steps: int = 0
    """Steps after the freeze over which the initializer hands over to the learned field."""
    dilation: int = 4
    """Voxels the occupancy is dilated by around the kept faces at each resolution change."""
    min_voxel_pixels: float = 0.0
    """Resolution matched to the images: stop refining the grid (for the rest of the run) once
    the median occupied voxel of the next resolution would project to fewer than this many
    training pixels (at `train_ssaa`) in the closest training view that sees it. 0 = always
    follow `resolution` (the original)."""
    max_voxels: int = 0
    """Memory bound: stop refining the grid (for the rest of the run) when the next
    resolution's grid would hold more than this many voxels (all blocks; the count is known
    exactly before any parameter is allocated). 0 = no bound (the original)."""
    occupancy_rule: Literal["surface", "shells"] = "surface"
    """Which voxels a resolution change keeps (docs/recipe.md). "surface" (the original's): the
    voxels holding a face of the zero level set, dilated, intersected with the old occupancy,
    subdivided; the visibility filter is applied once, at creation. "shells": the voxels
    holding a face of any shell, dilated (may grow past the old occupancy), subdivided, then
    the visibility filter again at the new resolution."""
    readd_initializer: bool = True
    """At every resolution change add the sphere initializer to the transferred signed distance
    again, as the original does (its "double counting", ORIGINAL.md §6 item 2; measured in
    docs/recipe.md). No effect with the point-cloud initializer."""
    visibility_min_cameras: int = 1
    """A voxel may be occupied only if all its corners are in view of this many cameras."""
    train_ssaa: int = 3
    """Supersampling factor while training."""
    eval_ssaa: int = 3
    """Supersampling factor for evaluation renders."""
    train_near: float = 0.01
    """Near plane while training (camera-space depth)."""
    eval_near: float = 1.0
    """Near plane for evaluation renders."""
    alpha_max: float = 1.0
    """Cap on a shell's opacity while compositing (the original: 1.0, no cap)."""


# Every section is a frozen dataclass of documented fields: the sections look alike by design.
@dataclass(frozen=True)
class LossConfig:
    rgb: float = 16.0
    """Weight of (L1 + L2) / 2 on RGB."""
    eikonal_pos: float = 0.0
    """Weight of the eikonal term where |grad s| > 1."""
    eikonal_neg: float = 1.0
    """Weight of the eikonal term where |grad s| < 1."""
    curvature: float = 0.1
    """Weight of the curvature term (see `curvature_operator`)."""
    curvature_operator: Literal["laplacian", "gradient"] = "laplacian"
    """"laplacian" (the original's): mean over voxels of the squared discrete Laplacian of the
    grid values at the voxel's +xyz corner (3-6 neighbours), grid units. "gradient": mean over
    face-adjacent voxel pairs of the squared difference of their centre gradients, times h^4
    (`slang_marching_cubes.sdf_regularizers`)."""
    sdf_binary: float = 0.02
    """Weight of -mean|s| over extracted shell vertices."""
    sh: float = 1.0
    """Weight of the L2 penalty on SH coefficients above degree 0."""
    clip_prediction: bool = True
    """Clip the rendered image to [0, 1] before the RGB loss, as the original's fused renderer
    does (no gradient where the prediction is clipped)."""


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-2
    """Adam learning rate of the signed distances and the SH degree-0 coefficients."""
    sh_rest_lr_scale: float = 0.05
    """Learning-rate multiplier of the SH coefficients above degree 0."""
    lr_schedule: Schedule[float] = field(default_factory=lambda: Schedule({0: 1.0}))
    """Learning-rate multiplier by global step."""
    batch_size: Schedule[int] = field(default_factory=lambda: Schedule({0: 16}))
    """Training images per step, by step."""
    resample_state: Literal["transfer", "reset"] = "reset"
    """Adam's state at a resolution change and at an SH-degree growth. "reset" (the original's):
    a fresh Adam for every parameter at both. "transfer": the moments are carried onto the new
    vertices like the values at a resolution change, and kept at an SH-degree growth."""
    lr_decay_start: float = 1.0
    """Fraction of ``train.steps`` after which the learning rate decays exponentially to
    ``lr_decay_final`` times its value at the last step (1.0: no decay, as the original)."""
    lr_decay_final: float = 1.0
    """Learning-rate multiplier reached at the last step by the decay (see `lr_decay_start`)."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 15000
    """Number of optimizer steps."""
    seed: int = 0
    """Seed of the initialization and of the batch sampling."""
    eval_interval: int = 2000
    """Evaluate on the test split every this many steps (and at the end); 0 = only at the end."""
    checkpoint_interval: int = 1000
    """Write a checkpoint every this many steps (and at the end)."""
    log_interval: int = 50
    """Update the progress line every this many steps."""
    eval_images: int = 8
    """Images rendered at each periodic evaluation (0 = all of the split)."""
    eval_split: Literal["val", "test"] = "val"
    """Split of the periodic evaluations ("val" falls back to "test" when it is empty)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept on disk (older ones are deleted)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device ("auto": CUDA when available)."""
    export_mesh: bool = False
    """After the final evaluation, write the zero level set as a coloured PLY to
    ``RUN_DIR/mesh/`` (what `meshtryoshka-train export-mesh RUN_DIR` writes)."""
    distributed_timeout: float = 1800.0
    """Data-parallel training (``torchrun --nproc-per-node N``): seconds a rank waits for the
    others in a collective before every rank stops with an error (so a stopped or lost rank
    never leaves the others hanging). It must exceed what rank 0 does alone between two steps
    (a periodic evaluation of ``train.eval_images`` renders, a checkpoint write) and at the end
    (the final evaluation and mesh export, which the other ranks wait for before all leave the
    process group). Ignored by a single process."""


@dataclass(frozen=True)
class ViewerConfig:
    enabled: bool = False
    """Serve the web viewer while training (needs `pip install meshtryoshka-train[viewer]`)."""
    host: str = "127.0.0.1"
    """Address the viewer listens on ("0.0.0.0": reachable from other machines)."""
    port: int = 8080
    """Port of the viewer (the next free one is used when it is taken)."""
    height: int = 512
    """Height in pixels of a still frame (the width follows the browser's aspect ratio)."""
    moving_height: int = 192
    """Height in pixels of a frame rendered while the camera moves."""
    max_slowdown: float = 0.1
    """How much slower training may get with the viewer on (0.1: at most ~10% slower)."""
    refresh_interval: float = 1.0
    """Seconds between live frames of a still camera while the field trains."""
    keep_alive: bool = True
    """After training, keep serving the final state until Ctrl-C."""


@dataclass(frozen=True)
class Config:
    experiment: str = ""
    """Name of the experiment this configuration came from."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)

    def to_toml_dict(self) -> dict[str, Any]:
        """The configuration as nested plain values (schedules as step-keyed tables)."""
        return _to_plain(self)


# --- building dataclasses from nested dictionaries, with type checks ------------------------


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of a configuration dataclass, e.g. ``model.render_mode``."""
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        if cls is Config and name == "experiment":
            continue  # set from the experiment's name, not a setting
        if dataclasses.is_dataclass(hint):
            keys += valid_keys(hint, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _unknown_key_error(key: str) -> ConfigError:
    listing = ", ".join(valid_keys())
    return ConfigError(f"unknown configuration key '{key}'. Valid keys: {listing}")


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from nested `data`, checking every key and type."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in hints:
            raise _unknown_key_error(key)
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}' is a section; set its keys, e.g. '{key}.<key>=...'")
            kwargs[name] = build(hint, value, f"{key}.")
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin is Schedule:
        return f"schedule of {_type_name(typing.get_args(hint)[0])} (e.g. {{0 = ..., 1000 = ...}})"
    if origin is list:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    wrong = ConfigError(f"'{key}' must be {_type_name(hint)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise wrong
        return value
    if origin is Schedule:
        (inner,) = typing.get_args(hint)
        table = value if isinstance(value, dict) else {0: value}
        entries = {}
        for step, entry in table.items():
            try:
                step_int = int(step)
            except (TypeError, ValueError):
                raise ConfigError(f"'{key}' has a non-integer step {step!r}") from None
            entries[step_int] = _coerce(entry, inner, f"{key}[{step}]")
        try:
            return Schedule(entries)
        except ValueError as error:
            raise ConfigError(f"'{key}': {error}") from None
    if origin is list:
        (inner,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise wrong
        return [_coerce(item, inner, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation for '{key}': {hint}")
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise TypeError(f"unsupported annotation for '{key}': {hint}")


def _to_plain(value: Any) -> Any:
    if isinstance(value, Schedule):
        return {str(k): _to_plain(v) for k, v in value.values.items()}
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


# --- experiments and overrides --------------------------------------------------------------


def experiment_names() -> list[str]:
    """Names of the experiments shipped with the package."""
    folder = resources.files("meshtryoshka_train") / "experiments"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_experiment(name: str) -> dict[str, Any]:
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        return tomllib.loads(path.read_text())
    resource = resources.files("meshtryoshka_train") / "experiments" / f"{name}.toml"
    if not resource.is_file():
        raise ConfigError(
            f"unknown experiment '{name}'. Shipped experiments: {', '.join(experiment_names())} "
            "(or give the path of a .toml file)"
        )
    try:
        return tomllib.loads(resource.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"experiment '{name}' is not valid TOML: {error}") from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge; tables merge key by key, anything else (schedules too) is replaced."""
    merged = dict(base)
    for key, value in update.items():
        is_section = isinstance(value, dict) and isinstance(merged.get(key), dict)
        if is_section and not _looks_like_schedule(value):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _looks_like_schedule(table: dict[str, Any]) -> bool:
    return bool(table) and all(str(k).lstrip("-").isdigit() for k in table)


def _experiment_chain(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in seen:
        raise ConfigError(f"experiment 'extends' loop: {' -> '.join((*seen, name))}")
    data = _read_experiment(name)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_experiment_chain(parent, (*seen, name)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed value); the value is TOML or a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def _set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict) or _looks_like_schedule(child):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def load_config(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The configuration of `experiment` (a shipped name or a .toml path) with `overrides`."""
    data = _experiment_chain(experiment)
    scenes = data.pop("scenes", {})
    cli: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 1 and path[0] in {key.split(".")[0] for key in valid_keys()}:
            raise ConfigError(f"'{path[0]}' is a section; set its keys, e.g. '{path[0]}.<key>=...'")
        if ".".join(path) not in valid_keys():
            raise _unknown_key_error(".".join(path))
        _set_dotted(cli, path, value)
    scene = cli.get("dataset", {}).get("scene", data.get("dataset", {}).get("scene"))
    if scene is None:
        scene = DatasetConfig.scene
    merged = _merge(_merge(data, scenes.get(scene, {})), cli)
    merged["experiment"] = experiment
    config = build(Config, merged)
    check_values(config)
    return config


def check_values(config: Config) -> None:
    """Range checks that types alone cannot express; raises ConfigError naming the key."""
    for step, levels in config.model.shells.values.items():
        if not levels or any(not 0.0 < p < 1.0 for p in levels):
            raise ConfigError(f"model.shells[{step}] must be CDF levels in (0, 1), got {levels}")
        if any(a <= b for a, b in zip(levels[:-1], levels[1:], strict=True)):
            raise ConfigError(
                f"model.shells[{step}] must be strictly decreasing (outermost first), got {levels}"
            )
    for step, degree in config.model.sh_degree.values.items():
        if not 0 <= degree <= 3:
            raise ConfigError(f"model.sh_degree[{step}] must be in 0..3, got {degree}")
    positive = {
        "model.resolution": config.model.resolution.values.values(),
        "optim.batch_size": config.optim.batch_size.values.values(),
        "model.train_ssaa": [config.model.train_ssaa],
        "model.eval_ssaa": [config.model.eval_ssaa],
        "model.sharpness": [config.model.sharpness],
        "dataset.downscale": [config.dataset.downscale],
        "dataset.llffhold": [config.dataset.llffhold],
        "dataset.scale_factor": [config.dataset.scale_factor],
        "train.steps": [config.train.steps],
        "train.distributed_timeout": [config.train.distributed_timeout],
    }
    for key, values in positive.items():
        if any(v <= 0 for v in values):
            raise ConfigError(f"{key} must be > 0, got {list(values)}")
    if not 0.0 < config.model.alpha_max <= 1.0:
        raise ConfigError(f"model.alpha_max must be in (0, 1], got {config.model.alpha_max}")
    non_negative = {
        "model.arm_resolution": config.model.arm_resolution.values.values(),
        "model.dilation": [config.model.dilation],
        "model.min_voxel_pixels": [config.model.min_voxel_pixels],
        "model.max_voxels": [config.model.max_voxels],
        "model.init_freeze_steps": [config.model.init_freeze_steps],
        "model.init_blend_steps": [config.model.init_blend_steps],
        "model.init_sdf_noise": [config.model.init_sdf_noise],
        "model.init_sh_noise": [config.model.init_sh_noise],
        "train.eval_interval": [config.train.eval_interval],
        "train.checkpoint_interval": [config.train.checkpoint_interval],
        "train.eval_images": [config.train.eval_images],
        "optim.sh_rest_lr_scale": [config.optim.sh_rest_lr_scale],
        "optim.lr_schedule": config.optim.lr_schedule.values.values(),
    }
    for key, values in non_negative.items():
        if any(v < 0 for v in values):
            raise ConfigError(f"{key} must be >= 0, got {list(values)}")
    at_least_one = {
        "model.init_points": config.model.init_points,
        "model.visibility_min_cameras": config.model.visibility_min_cameras,
        "train.log_interval": config.train.log_interval,
        "train.keep_checkpoints": config.train.keep_checkpoints,
    }
    for key, value in at_least_one.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    for key in ("model.resolution", "model.arm_resolution", "model.sh_degree"):
        section, name = key.split(".")
        values = list(getattr(getattr(config, section), name).values.values())
        if any(b < a for a, b in zip(values[:-1], values[1:], strict=True)):
            raise ConfigError(f"{key} must not decrease over the steps, got {values}")
    viewer = config.viewer
    if not 0 < viewer.port < 65536:
        raise ConfigError(f"viewer.port must be in 1..65535, got {viewer.port}")
    if viewer.height < 16 or viewer.moving_height < 16:
        raise ConfigError(
            f"viewer.height and viewer.moving_height must be >= 16 pixels, got {viewer.height} "
            f"and {viewer.moving_height}"
        )
    if not 0 < viewer.max_slowdown <= 1:
        raise ConfigError(f"viewer.max_slowdown must be in (0, 1], got {viewer.max_slowdown}")
    if not viewer.refresh_interval >= 0:
        raise ConfigError(f"viewer.refresh_interval must be >= 0, got {viewer.refresh_interval}")
    if not config.optim.lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {config.optim.lr}")
    if not 0.0 <= config.optim.lr_decay_start <= 1.0:
        raise ConfigError(
            f"optim.lr_decay_start must be in [0, 1] (a fraction of train.steps), got "
            f"{config.optim.lr_decay_start}"
        )
    if not config.optim.lr_decay_final > 0:
        raise ConfigError(f"optim.lr_decay_final must be > 0, got {config.optim.lr_decay_final}")
    model = config.model
    arms = model.arm_resolution.at(0) > 0
    if arms and 0 in model.arm_resolution.values.values():
        raise ConfigError(
            "model.arm_resolution must be > 0 at every step once the arms exist, got "
            f"{list(model.arm_resolution.values.values())}"
        )
    if arms and not (model.arm_ratio > 0 and model.center_extent < 1):
        raise ConfigError(
            "arms (model.arm_resolution > 0) need model.arm_ratio > 0 and "
            f"model.center_extent < 1, got {model.arm_ratio} and {model.center_extent}"
        )
    if not arms and model.center_extent != 1.0:
        raise ConfigError(
            "without arms (model.arm_resolution = 0) the centre fills the grid: "
            f"model.center_extent must be 1.0, got {model.center_extent}"
        )
    if not model.center_radius > 0:
        raise ConfigError(f"model.center_radius must be > 0, got {model.center_radius}")
    if not (0 < model.train_near and 0 < model.eval_near):
        raise ConfigError(
            f"model.train_near and model.eval_near must be > 0, got {model.train_near} and "
            f"{model.eval_near}"
        )


# --- resolved configurations on disk ---------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_config(config: Config) -> str:
    """The resolved configuration as TOML text that `load_config` reads back to `config`."""
    data = config.to_toml_dict()
    lines = [f"# Resolved configuration of experiment {config.experiment!r}."]
    lines.append(f"experiment = {_toml_value(config.experiment)}")
    for section, table in data.items():
        if section == "experiment":
            continue
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def load_saved_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A configuration written by `dump_config` (a run's config.toml), with `overrides`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no saved configuration at {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    experiment = data.pop("experiment", path.stem)
    cli: dict[str, Any] = {}
    for text in overrides:
        keys, value = parse_override(text)
        if ".".join(keys) not in valid_keys():
            raise _unknown_key_error(".".join(keys))
        _set_dotted(cli, keys, value)
    merged = _merge(data, cli)
    merged["experiment"] = experiment
    config = build(Config, merged)
    check_values(config)
    return config


def experiment_scenes(experiment: str) -> list[str]:
    """The scenes an experiment lists under ``[scenes.<scene>]`` (for training all of them)."""
    return list(_experiment_chain(experiment).get("scenes", {}))
