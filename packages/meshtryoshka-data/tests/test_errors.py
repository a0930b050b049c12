"""Every kind of bad input gives one DatasetError naming the file and the problem."""

import json
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from meshtryoshka_data import (
    ColmapCamera,
    DatasetError,
    detect_format,
    load_blender,
    load_colmap,
    read_colmap_model,
    write_colmap_model,
)


def _raises(load, path, file, *words):
    """Loading fails with a DatasetError (a ValueError) whose message names ``file``."""
    with pytest.raises(DatasetError) as info:
        load(path)
    error = info.value
    assert isinstance(error, ValueError)
    message = str(error)
    assert str(file) in message, f"{file} not named in: {message}"
    assert error.path == file
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    return message


def _edit_json(path, edit, split="train"):
    json_path = path / f"transforms_{split}.json"
    meta = json.loads(json_path.read_text())
    edit(meta)
    json_path.write_text(json.dumps(meta))
    return json_path


# --------------------------------------------------------------------------- missing things


def test_missing_dataset_folder(tmp_path):
    _raises(load_blender, tmp_path / "nope", tmp_path / "nope", "not found")
    _raises(load_colmap, "no_such_scene", __import__("pathlib").Path("no_such_scene"), "not found")


def test_missing_transforms_train(blender_copy):
    (blender_copy / "transforms_train.json").unlink()
    _raises(load_blender, blender_copy, blender_copy / "transforms_train.json", "missing")


def test_missing_sparse_folder(colmap_copy):
    shutil.rmtree(colmap_copy / "sparse")
    _raises(load_colmap, colmap_copy, colmap_copy / "sparse" / "0", "not found")


def test_missing_points3d(colmap_copy):
    (colmap_copy / "sparse" / "0" / "points3D.bin").unlink()
    _raises(load_colmap, colmap_copy, colmap_copy / "sparse" / "0" / "points3D.bin", "missing")


def test_missing_images_folder(colmap_copy):
    shutil.rmtree(colmap_copy / "images")
    _raises(load_colmap, colmap_copy, colmap_copy / "images", "image folder not found")


def test_referenced_but_absent_png(blender_copy):
    (blender_copy / "train" / "r_2.png").unlink()
    _raises(load_blender, blender_copy, blender_copy / "train" / "r_2.png", "does not exist")


def test_referenced_but_absent_jpeg(colmap_copy):
    (colmap_copy / "images" / "frame_004.jpg").unlink()
    _raises(load_colmap, colmap_copy, colmap_copy / "images" / "frame_004.jpg", "does not exist")


# --------------------------------------------------------------------------- corrupt images


def test_corrupt_png(blender_copy):
    path = blender_copy / "val" / "r_0.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    _raises(load_blender, blender_copy, path, "image")


def test_truncated_png(blender_copy):
    path = blender_copy / "train" / "r_1.png"
    path.write_bytes(path.read_bytes()[:-40])  # header intact, pixel data cut
    _raises(load_blender, blender_copy, path, "corrupt")


def test_truncated_jpeg(colmap_copy):
    path = colmap_copy / "images" / "frame_003.jpg"
    path.write_bytes(path.read_bytes()[:200])
    _raises(load_colmap, colmap_copy, path, "corrupt")


def test_garbage_jpeg(colmap_copy):
    path = colmap_copy / "images" / "frame_005.jpg"
    path.write_bytes(b"GIF? no, just text")
    _raises(load_colmap, colmap_copy, path, "image")


# --------------------------------------------------------------------------- JSON problems


def test_json_without_frames(blender_copy):
    path = _edit_json(blender_copy, lambda meta: meta.pop("frames"), "test")
    _raises(load_blender, blender_copy, path, "no 'frames'")


def test_json_with_empty_frames(blender_copy):
    path = _edit_json(blender_copy, lambda meta: meta.update(frames=[]))
    _raises(load_blender, blender_copy, path, "empty")


def test_invalid_json(blender_copy):
    path = blender_copy / "transforms_val.json"
    path.write_text('{"frames": [')
    _raises(load_blender, blender_copy, path, "invalid JSON")


def test_non_invertible_matrix(blender_copy):
    def edit(meta):
        matrix = np.array(meta["frames"][2]["transform_matrix"])
        matrix[:3, 2] = matrix[:3, 0]  # two equal columns
        meta["frames"][2]["transform_matrix"] = matrix.tolist()

    path = _edit_json(blender_copy, edit)
    _raises(load_blender, blender_copy, path, "frame 2", "not invertible")


def test_scaled_matrix_is_not_rigid(blender_copy):
    def edit(meta):
        matrix = np.array(meta["frames"][0]["transform_matrix"])
        matrix[:3, :3] *= 1.5
        meta["frames"][0]["transform_matrix"] = matrix.tolist()

    path = _edit_json(blender_copy, edit)
    _raises(load_blender, blender_copy, path, "frame 0", "not a rigid")


def test_matrix_of_wrong_shape(blender_copy):
    path = _edit_json(blender_copy, lambda m: m["frames"][1].update(transform_matrix=[[1, 0]]))
    _raises(load_blender, blender_copy, path, "frame 1", "4x4")


def test_no_intrinsics(blender_copy):
    path = _edit_json(blender_copy, lambda meta: meta.pop("camera_angle_x"))
    _raises(load_blender, blender_copy, path, "no intrinsics")


# --------------------------------------------------------------------------- COLMAP files


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_truncated_colmap_binary(colmap_copy, name):
    path = colmap_copy / "sparse" / "0" / name
    path.write_bytes(path.read_bytes()[:-5])
    _raises(load_colmap, colmap_copy, path, "truncated")


def test_colmap_binary_with_trailing_bytes(colmap_copy):
    path = colmap_copy / "sparse" / "0" / "cameras.bin"
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    _raises(load_colmap, colmap_copy, path, "unexpected bytes")


def test_unknown_camera_model_id(colmap_copy):
    path = colmap_copy / "sparse" / "0" / "cameras.bin"
    path.write_bytes(struct.pack("<QiiQQ4d", 1, 1, 42, 32, 24, 1.0, 1.0, 1.0, 1.0))
    _raises(load_colmap, colmap_copy, path, "unknown camera model id 42")


def test_unknown_camera_model_name_in_text(colmap_copy):
    path = colmap_copy / "sparse" / "0" / "cameras.txt"
    path.write_text("1 FANCY_LENS 32 24 1 2 3\n")
    load = lambda p: load_colmap(p, sparse_format="txt")  # noqa: E731
    _raises(load, colmap_copy, path, "line 1", "unknown camera model 'FANCY_LENS'")


def test_malformed_text_line(colmap_copy):
    path = colmap_copy / "sparse" / "0" / "images.txt"
    lines = path.read_text().splitlines()
    lines[3] = "1 0.5 nan? 0 0 0 0 0 1 frame_000.jpg"
    path.write_text("\n".join(lines))
    load = lambda p: load_colmap(p, sparse_format="txt")  # noqa: E731
    _raises(load, colmap_copy, path, "line 4")


def _replace_camera(sparse, model_name, params):
    model = read_colmap_model(sparse)
    camera = model.cameras[1]
    replaced = ColmapCamera(1, model_name, camera.width, camera.height, params)
    write_colmap_model(sparse, type(model)({1: replaced}, model.images, model.points))
    return camera


@pytest.mark.parametrize("model_name", ["FOV", "FULL_OPENCV", "THIN_PRISM_FISHEYE"])
def test_camera_model_that_is_not_undistorted_is_refused(colmap_copy, model_name):
    sparse = colmap_copy / "sparse" / "0"
    n_params = {"FOV": 5, "FULL_OPENCV": 12, "THIN_PRISM_FISHEYE": 12}[model_name]
    _replace_camera(sparse, model_name, (30.0, 30.0, 16.0, 12.0) + (0.01,) * (n_params - 4))
    message = _raises(load_colmap, colmap_copy, sparse / "cameras.bin", model_name, "OPENCV")
    assert "meshtryoshka-data from-images" in message and "colmap image_undistorter" in message


def test_distortion_that_folds_over_is_refused(colmap_copy):
    sparse = colmap_copy / "sparse" / "0"
    camera = _replace_camera(sparse, "RADIAL", (30.0, 16.0, 12.0, -1.5, 0.0))
    # r * (1 - 1.5 r^2) turns back at r = 0.47, inside the image (corner at r = 0.67)
    assert camera.width == 32
    _raises(load_colmap, colmap_copy, sparse / "cameras.bin", "camera 1 (RADIAL)", "folds over")


def test_image_with_unknown_camera(colmap_copy):
    sparse = colmap_copy / "sparse" / "0"
    model = read_colmap_model(sparse)
    camera = model.cameras[1]
    moved = ColmapCamera(7, camera.model, camera.width, camera.height, camera.params)
    write_colmap_model(sparse, type(model)({7: moved}, model.images, model.points))
    _raises(load_colmap, colmap_copy, sparse / "images.bin", "refers to camera 1")


# --------------------------------------------------------------------------- sizes


def test_mixed_image_sizes_blender(blender_copy):
    path = blender_copy / "test" / "r_1.png"
    Image.new("RGBA", (20, 20)).save(path)
    _raises(load_blender, blender_copy, path, "20x20", "one size")


def test_mixed_image_sizes_colmap(colmap_copy):
    path = colmap_copy / "images" / "frame_007.jpg"
    Image.new("RGB", (16, 12)).save(path)  # a uniform scaling of the camera, but smaller
    _raises(load_colmap, colmap_copy, path, "16x12", "one size")


def test_image_not_matching_camera_aspect(colmap_copy):
    path = colmap_copy / "images" / "frame_000.jpg"
    Image.new("RGB", (32, 32)).save(path)
    _raises(load_colmap, colmap_copy, path, "not a uniform scaling")


def test_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset layout") as info:
        detect_format(tmp_path)
    assert info.value.path == tmp_path
