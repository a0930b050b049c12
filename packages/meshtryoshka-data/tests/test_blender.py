"""NeRF-synthetic loader against the synthetic scene's ground truth."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from data_helpers import assert_close, visible_surface_pixels

from meshtryoshka_data import area_downscale, load_blender, load_dataset
from meshtryoshka_data.synthetic import render_sphere


def test_cameras_equal_ground_truth(blender_truth):
    dataset = load_blender(blender_truth.path)
    assert dataset.names == blender_truth.names
    assert dataset.world_to_camera.dtype == torch.float32
    assert_close(dataset.world_to_camera, blender_truth.world_to_camera, 1e-6, "world_to_camera")
    assert_close(dataset.intrinsics, blender_truth.intrinsics, 1e-6 * 100, "intrinsics")
    for split, indices in blender_truth.splits.items():
        assert dataset.splits[split].tolist() == indices


def test_world_to_camera_is_rigid(blender_truth):
    w2c = load_blender(blender_truth.path).world_to_camera.double()
    rotation = w2c[:, :3, :3]
    assert_close(rotation @ rotation.transpose(1, 2), np.eye(3)[None].repeat(len(w2c), 0), 1e-6)
    assert_close(torch.linalg.det(rotation), np.ones(len(w2c)), 1e-6)
    assert_close(w2c[:, 3], np.tile([0, 0, 0, 1.0], (len(w2c), 1)), 0)


def test_images_are_the_pngs(blender_truth):
    dataset = load_blender(blender_truth.path)
    assert dataset.images.dtype == torch.uint8 and dataset.images.shape == (7, 24, 24, 4)
    assert np.array_equal(dataset.images.numpy(), blender_truth.images)


def test_surface_points_project_onto_their_colour(blender_truth):
    dataset = load_blender(blender_truth.path)
    w2c, k = dataset.world_to_camera.double().numpy(), dataset.intrinsics.double().numpy()
    checked = 0
    for index in range(len(dataset)):
        pixels, colors = visible_surface_pixels(blender_truth, w2c, k, 24, 24, index)
        columns, rows = np.floor(pixels).astype(int).T
        seen = dataset.images[index].numpy()[rows, columns]
        assert (seen[:, 3] == 255).all(), "a face-on surface point landed off the sphere"
        assert_close(seen[:, :3], colors, 0.08 * 255, f"colours in image {index}")
        checked += len(pixels)
    assert checked > 50


def test_rerendering_with_loaded_cameras_reproduces_the_files(blender_truth):
    dataset = load_blender(blender_truth.path)
    for index in range(len(dataset)):
        rendered = render_sphere(
            dataset.world_to_camera[index].double().numpy(),
            dataset.intrinsics[index].double().numpy(),
            24,
            24,
            blender_truth.sphere_center,
            blender_truth.sphere_radius,
        )
        mismatched = (rendered[..., 3] != dataset.images[index, ..., 3].numpy()).sum()
        assert mismatched <= 1, f"image {index}: {mismatched} alpha pixels differ"


@pytest.mark.parametrize("background, value", [("white", 1.0), ("black", 0.0)])
def test_composited_on_background(blender_truth, background, value):
    dataset = load_blender(blender_truth.path, background=background)
    batch = next(dataset.iterate("train", batch_size=2))
    rgba = torch.from_numpy(blender_truth.images[:2]).permute(0, 3, 1, 2).float() / 255
    expected = rgba[:, :3] * rgba[:, 3:] + value * (1 - rgba[:, 3:])
    assert_close(batch.images, expected, 1e-6, "composited images")
    assert_close(batch.alpha, rgba[:, 3:], 0, "alpha")
    corner = batch.images[:, :, 0, 0]  # off the sphere in every view
    assert_close(corner, torch.full_like(corner, value), 0, "background pixel")


def test_downscale_averages_and_scales_intrinsics(blender_truth):
    dataset = load_blender(blender_truth.path, downscale=2)
    assert dataset.images.shape == (7, 12, 12, 4)
    expected_k = blender_truth.intrinsics.copy()
    expected_k[:, :2] /= 2
    assert_close(dataset.intrinsics, expected_k, 1e-5, "intrinsics at 1/2")
    assert expected_k[0, 0, 2] == 6.0  # cx = W/2 stays the image centre
    expected = np.stack([area_downscale(image, 2) for image in blender_truth.images])
    assert np.array_equal(dataset.images.numpy(), expected)


def test_downscale_crops_partial_blocks(blender_truth):
    dataset = load_blender(blender_truth.path, downscale=5)  # 24 = 4 * 5 + 4
    assert dataset.images.shape[1:3] == (4, 4)
    assert_close(dataset.intrinsics[:, 0, 0], blender_truth.intrinsics[:, 0, 0] / 5, 1e-5)


def _rewrite(path, split, edit):
    json_path = path / f"transforms_{split}.json"
    meta = json.loads(json_path.read_text())
    edit(meta)
    json_path.write_text(json.dumps(meta))


def test_nerfstudio_intrinsics_at_file_level(blender_copy, blender_truth):
    def edit(meta):
        del meta["camera_angle_x"]
        meta.update(fl_x=40.0, fl_y=42.0, cx=11.0, cy=13.5, w=48, h=48)  # declared at 2x

    for split in ("train", "val", "test"):
        _rewrite(blender_copy, split, edit)
    dataset = load_blender(blender_copy)
    expected = [[20.0, 0, 5.5], [0, 21.0, 6.75], [0, 0, 1]]  # rescaled to the 24x24 files
    assert_close(dataset.intrinsics, np.tile(expected, (7, 1, 1)), 1e-6, "intrinsics")
    assert dataset.camera_model == "fl_x/fl_y"


def test_nerfstudio_intrinsics_at_frame_level_override_file(blender_copy):
    def edit(meta):
        meta["frames"][1].update(fl_x=30.0, cx=12.5, cy=11.5)

    _rewrite(blender_copy, "train", edit)
    dataset = load_blender(blender_copy)
    assert_close(dataset.intrinsics[1], [[30.0, 0, 12.5], [0, 30.0, 11.5], [0, 0, 1]], 1e-6)
    focal = 12 / math.tan(0.6911112070083618 / 2)
    assert_close(dataset.intrinsics[0, 0, 0], focal, 1e-4)


def test_camera_angle_y(blender_copy):
    _rewrite(blender_copy, "train", lambda meta: meta.update(camera_angle_y=0.5))
    dataset = load_blender(blender_copy)
    assert_close(dataset.intrinsics[0, 1, 1], 12 / math.tan(0.25), 1e-4)
    assert dataset.intrinsics[0, 0, 0] != dataset.intrinsics[0, 1, 1]


def test_default_root_and_format_detection(blender_truth, tmp_path, monkeypatch):
    shutil.copytree(blender_truth.path, tmp_path / "datasets" / "nerf_synthetic" / "toy")
    monkeypatch.chdir(tmp_path)
    assert load_blender("toy").names == blender_truth.names
    assert load_dataset("toy").format == "blender"


def test_missing_val_split_is_empty(blender_copy):
    (blender_copy / "transforms_val.json").unlink()
    dataset = load_blender(blender_copy)
    assert dataset.splits["val"].numel() == 0 and len(dataset) == 6
