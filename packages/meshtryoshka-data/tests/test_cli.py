"""``meshtryoshka-data check`` and ``synthetic`` through click's CliRunner."""

import json

from click.testing import CliRunner

from meshtryoshka_data import check_dataset, load_dataset
from meshtryoshka_data.cli import main


def test_check_valid_blender(blender_truth):
    result = CliRunner().invoke(main, ["check", str(blender_truth.path)])
    assert result.exit_code == 0, result.output
    assert "format:       blender" in result.output
    assert "train 4, val 1, test 2" in result.output
    assert "24x24 RGBA" in result.output and "camera_angle_x" in result.output
    assert "problems:     none" in result.output and "VALID" in result.output


def test_check_valid_colmap(colmap_truth):
    result = CliRunner().invoke(main, ["check", str(colmap_truth.path), "--downscale", "2"])
    assert result.exit_code == 0, result.output
    assert "format:       colmap" in result.output and "PINHOLE" in result.output
    assert "train 8, val 2, test 2" in result.output and "16x12 RGB" in result.output
    assert "points:       300" in result.output


def test_check_broken_dataset_lists_every_problem(blender_copy):
    (blender_copy / "train" / "r_0.png").unlink()
    (blender_copy / "test" / "r_1.png").write_bytes(b"not a png")
    result = CliRunner().invoke(main, ["check", str(blender_copy)])
    assert result.exit_code == 1
    assert "problems (2):" in result.output and "INVALID" in result.output
    assert str(blender_copy / "train" / "r_0.png") in result.output
    assert str(blender_copy / "test" / "r_1.png") in result.output


def test_check_finds_truncated_pixels_only_when_decoding(colmap_copy):
    path = colmap_copy / "images" / "frame_002.jpg"
    path.write_bytes(path.read_bytes()[:-300])  # header readable, scan data cut
    assert check_dataset(colmap_copy, decode=False).ok
    report = check_dataset(colmap_copy)
    assert not report.ok and str(path) in report.problems[0]


def test_check_structural_problem(blender_copy):
    path = blender_copy / "transforms_train.json"
    path.write_text(json.dumps({"camera_angle_x": 0.7}))
    result = CliRunner().invoke(main, ["check", str(blender_copy)])
    assert result.exit_code == 1 and f"{path}: no 'frames' list" in result.output


def test_check_not_a_dataset(tmp_path):
    result = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 1 and "unknown dataset layout" in result.output


def test_synthetic_command_writes_loadable_scenes(tmp_path):
    runner = CliRunner()
    for fmt in ("blender", "colmap"):
        result = runner.invoke(main, ["synthetic", str(tmp_path / fmt), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert load_dataset(tmp_path / fmt).format == fmt
        assert runner.invoke(main, ["check", str(tmp_path / fmt)]).exit_code == 0
