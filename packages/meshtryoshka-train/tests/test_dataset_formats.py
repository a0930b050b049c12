"""The dataset formats the config names beyond the shipped experiments' own: nerfstudio."""

import pytest

from meshtryoshka_data import write_nerfstudio_scene
from meshtryoshka_train.config import ConfigError, load_config
from meshtryoshka_train.trainer import Trainer, prepare_run_dir


def test_mip360_trains_two_steps_on_a_distorted_nerfstudio_scene(reduced, tmp_path):
    write_nerfstudio_scene(tmp_path / "data" / "toy", n_images=10, camera_model="OPENCV")
    overrides = [*reduced(tmp_path / "data", 2, unbounded=True), "dataset.format=nerfstudio"]
    config = load_config("mip360", overrides)
    prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=False)
    trainer = Trainer(config, tmp_path / "run", resume=False, echo=lambda line: None)
    assert trainer.dataset.format == "nerfstudio" and trainer.dataset.camera_model == "OPENCV"
    assert trainer.dataset.points is not None  # the point-cloud initializer has its points
    assert trainer.run().step == 2


def test_unknown_format_names_the_choices():
    with pytest.raises(ConfigError, match="nerfstudio"):
        load_config("mip360", ["dataset.format=llff"])
