"""COLMAP / Mip-NeRF 360 loader against the synthetic scene's ground truth."""

import shutil

import numpy as np
import pytest
import torch
from data_helpers import assert_close, assert_surface_colours
from PIL import Image

from meshtryoshka_data import load_colmap, load_dataset, read_colmap_model, write_colmap_scene


@pytest.mark.parametrize("sparse_format", ["bin", "txt"])
def test_cameras_equal_ground_truth(colmap_truth, sparse_format):
    dataset = load_colmap(colmap_truth.path, sparse_format=sparse_format, normalize=False)
    assert dataset.names == colmap_truth.names  # sorted by name, not by image id
    assert_close(dataset.world_to_camera, colmap_truth.world_to_camera, 1e-6, "world_to_camera")
    assert_close(dataset.intrinsics, colmap_truth.intrinsics, 1e-5, "intrinsics")
    assert dataset.camera_model == "PINHOLE"


def test_simple_pinhole(tmp_path):
    truth = write_colmap_scene(tmp_path / "s", n_images=4, camera_model="SIMPLE_PINHOLE")
    dataset = load_colmap(truth.path, normalize=False)
    assert dataset.camera_model == "SIMPLE_PINHOLE"
    assert_close(dataset.intrinsics, truth.intrinsics, 1e-5, "intrinsics")
    assert torch.equal(dataset.intrinsics[:, 0, 0], dataset.intrinsics[:, 1, 1])


def test_points_equal_ground_truth(colmap_truth):
    dataset = load_colmap(colmap_truth.path, normalize=False)
    assert_close(dataset.points, colmap_truth.points, 1e-6, "points")
    assert torch.equal(dataset.point_colors, torch.from_numpy(colmap_truth.point_colors))


def test_binary_and_text_models_agree_with_tracks(colmap_truth):
    sparse = colmap_truth.path / "sparse" / "0"
    binary = read_colmap_model(sparse, file_format="bin", keep_points2d=True)
    text = read_colmap_model(sparse, file_format="txt", keep_points2d=True)
    assert binary.cameras == text.cameras
    assert binary.images.keys() == text.images.keys()
    for image_id, image in binary.images.items():
        other = text.images[image_id]
        assert image.name == other.name and image.camera_id == other.camera_id
        assert_close(image.qvec, other.qvec, 0)
        assert_close(image.points2d, other.points2d, 0)
        assert np.array_equal(image.point3d_ids, other.point3d_ids)
    for a, b in zip(binary.points.tracks, text.points.tracks, strict=True):
        assert np.array_equal(a, b)
    # Every track entry points back at a keypoint that names the same 3D point.
    for point_id, track in zip(binary.points.ids, binary.points.tracks, strict=True):
        for image_id, index in track:
            assert binary.images[int(image_id)].point3d_ids[index] == point_id


def test_surface_points_project_onto_their_colour(colmap_truth):
    dataset = load_colmap(colmap_truth.path)  # normalized: the truth points are mapped in
    assert assert_surface_colours(dataset, colmap_truth) > 50


@pytest.mark.parametrize("llffhold, test", [(8, [0, 8]), (3, [0, 3, 6, 9]), (0, [])])
def test_split_every_llffhold_th_by_name(colmap_truth, llffhold, test):
    dataset = load_colmap(colmap_truth.path, llffhold=llffhold)
    assert dataset.splits["test"].tolist() == test
    assert dataset.splits["val"].tolist() == test
    assert sorted(dataset.splits["train"].tolist() + test) == list(range(10))


def test_images_2_intrinsics_follow_actual_size(tmp_path):
    # 33x25 -> images_2 is 17x13 (ceil), not 16.5x12.5: the scale is per axis, from the files.
    truth = write_colmap_scene(tmp_path / "odd", n_images=3, size=(33, 25), downscales=(2,))
    dataset = load_colmap(truth.path, downscale=2, normalize=False)
    assert dataset.images.shape[1:3] == (13, 17)
    expected = truth.intrinsics.copy()
    expected[:, 0] *= 17 / 33
    expected[:, 1] *= 13 / 25
    assert_close(dataset.intrinsics, expected, 1e-5, "intrinsics at images_2")


def test_missing_downscale_folder_falls_back_to_resizing(colmap_truth, colmap_copy):
    from_folder = load_colmap(colmap_truth.path, downscale=2)
    shutil.rmtree(colmap_copy / "images_2")
    resized = load_colmap(colmap_copy, downscale=2)
    assert resized.images.shape == from_folder.images.shape == (10, 12, 16, 3)
    assert_close(resized.intrinsics, from_folder.intrinsics, 1e-6, "intrinsics")
    for index, name in enumerate(colmap_truth.names):  # exactly a 2x2 box filter of images/
        full = Image.open(colmap_copy / "images" / name).convert("RGB")
        assert np.array_equal(resized.images[index].numpy(), np.asarray(full.reduce(2)))
    # The folder was filtered before JPEG compression, the fallback after: close, not equal.
    diff = (resized.images.float() - from_folder.images.float()).abs().mean()
    assert diff < 6.0, f"mean |diff| {diff:.2f} levels"


def test_images_are_the_jpegs(colmap_truth):
    dataset = load_colmap(colmap_truth.path)
    for index, name in enumerate(colmap_truth.names):
        expected = np.asarray(Image.open(colmap_truth.path / "images" / name).convert("RGB"))
        assert np.array_equal(dataset.images[index].numpy(), expected)
    batch = next(dataset.iterate("test"))
    assert batch.alpha is None and batch.images.shape == (1, 3, 24, 32)


def test_default_root_and_format_detection(colmap_truth, tmp_path, monkeypatch):
    shutil.copytree(colmap_truth.path, tmp_path / "datasets" / "mipnerf360" / "toy")
    monkeypatch.chdir(tmp_path)
    assert load_colmap("toy").names == colmap_truth.names
    assert load_dataset("toy").format == "colmap"


def test_sparse_model_directly_in_sparse(colmap_copy, colmap_truth):
    for file in (colmap_copy / "sparse" / "0").iterdir():
        file.rename(colmap_copy / "sparse" / file.name)
    dataset = load_colmap(colmap_copy, normalize=False)
    assert_close(dataset.world_to_camera, colmap_truth.world_to_camera, 1e-6)
