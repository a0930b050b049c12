"""Experiments load, overrides apply with type checks, and bad keys or values are refused."""

import sys

import pytest

from meshtryoshka_train.config import (
    Config,
    ConfigError,
    experiment_names,
    load_config,
    parse_override,
    valid_keys,
)
from meshtryoshka_train.schedule import Schedule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED = ["demo", "mip360", "mip360_140gb", "mip360_24gb", "nerf_synthetic"]


def test_every_shipped_experiment_loads():
    assert experiment_names() == SHIPPED
    for name in SHIPPED:
        config = load_config(name)
        assert isinstance(config, Config)
        assert config.experiment == name


def test_experiment_values_reach_the_dataclasses():
    config = load_config("mip360")
    assert config.dataset.format == "colmap"
    assert config.model.resolution.at(0) == 32
    assert config.model.resolution.at(4800) == 64
    assert config.model.resolution.at(4801) == 128
    assert config.model.shells.at(0) == [0.9, 0.5, 0.1, 0.01, 0.001]
    assert config.optim.batch_size.at(20000) == 4
    assert config.optim.lr == pytest.approx(8e-3)


def test_extends_merges_tables_and_replaces_schedules():
    base, small = load_config("mip360"), load_config("mip360_24gb")
    assert small.dataset.device == "cpu"
    assert small.dataset.format == base.dataset.format  # inherited
    assert small.optim.batch_size.at(12800) == 1
    assert 22401 not in small.model.resolution.values  # replaced, not merged
    assert small.model.arm_resolution == base.model.arm_resolution


def test_overrides_parse_toml_values_and_strings():
    config = load_config(
        "nerf_synthetic",
        [
            "dataset.scene=chair",
            "model.render_mode=explicit",
            "model.shells=[0.9, 0.5, 0.1]",
            "optim.batch_size={0=8, 100=4}",
            "train.steps=10",
            "optim.lr=1",
        ],
    )
    assert config.dataset.scene == "chair"
    assert config.model.render_mode == "explicit"
    assert config.model.shells == Schedule({0: [0.9, 0.5, 0.1]})
    assert config.optim.batch_size.at(99) == 8 and config.optim.batch_size.at(100) == 4
    assert config.train.steps == 10
    assert isinstance(config.optim.lr, float) and config.optim.lr == 1.0


def test_scene_settings_apply_only_to_their_scene_and_yield_to_the_command_line():
    assert load_config("mip360", ["dataset.scene=garden"]).dataset.downscale == 4
    assert load_config("mip360", ["dataset.scene=room"]).dataset.downscale == 2
    flowers = load_config("mip360", ["dataset.scene=flowers"])
    assert flowers.model.eval_near == pytest.approx(0.02)
    forced = load_config("mip360", ["dataset.scene=room", "dataset.downscale=8"])
    assert forced.dataset.downscale == 8


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError, match="unknown configuration key 'model.bogus'") as info:
        load_config("demo", ["model.bogus=1"])
    assert "model.render_mode" in str(info.value) and "train.steps" in str(info.value)
    with pytest.raises(ConfigError, match="unknown configuration key 'experiment'"):
        load_config("demo", ["experiment=mip360"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.render_mode=surface", "'model.render_mode' must be 'fused' | 'explicit'"),
        ("train.steps=1.5", "'train.steps' must be int"),
        ("train.steps=true", "'train.steps' must be int"),
        ("optim.lr=fast", "'optim.lr' must be float"),
        ("model.shells=[0.1, 0.5]", "strictly decreasing"),
        ("model.shells=[1.5]", r"in \(0, 1\)"),
        ("model.resolution={100=64}", "must start at step 0"),
        ("model.resolution={a=64}", "non-integer step"),
        ("model.sh_degree=4", "0..3"),
        ("optim.batch_size=0", "optim.batch_size must be > 0"),
        ("model.max_voxels=-1", r"model.max_voxels must be >= 0, got \[-1\]"),
        ("model.min_voxel_pixels=-0.5", r"model.min_voxel_pixels must be >= 0"),
        ("model=3", "'model' is a section"),
        ("novalue", "must look like section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("nerf_synthetic", [override])


def test_unknown_experiment_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="Shipped experiments: demo, mip360"):
        load_config("mip361")


def test_experiment_from_a_file_with_extends(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "nerf_synthetic"\n[train]\nsteps = 7\n')
    config = load_config(str(path))
    assert config.train.steps == 7
    assert config.model.shells.at(0) == [0.7, 0.5, 0.1, 0.001]


def test_extends_loop_is_an_error(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(f'extends = "{b}"\n')
    b.write_text(f'extends = "{a}"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_config(str(a))


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = load_config("mip360", ["dataset.scene=room"])
    text = _dump_toml(config.to_toml_dict())
    data = tomllib.loads(text)
    path = tmp_path / "resolved.toml"
    path.write_text(text)
    again = load_config(str(path))
    assert data["dataset"]["downscale"] == 2
    assert again.dataset == config.dataset and again.model == config.model
    assert again.optim == config.optim and again.loss == config.loss


def test_parse_override_keeps_strings_with_equals_signs():
    assert parse_override("dataset.root=/data/a=b") == (["dataset", "root"], "/data/a=b")


def test_valid_keys_cover_every_section():
    sections = {key.split(".")[0] for key in valid_keys()}
    assert sections == {"dataset", "model", "loss", "optim", "train", "viewer"}


def _dump_toml(data, prefix=""):
    """A tiny TOML writer for this test (values are numbers, strings, lists, tables)."""
    import json

    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict) and not all(k.isdigit() for k in value):
            tables.append((key, value))
        elif isinstance(value, dict):
            inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    out = ([f"[{prefix}]"] if prefix and lines else []) + lines
    for key, value in tables:
        out.append(_dump_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out)
