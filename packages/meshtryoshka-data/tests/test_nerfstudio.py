"""The nerfstudio ``transforms.json`` loader against synthetic scenes with known cameras, with
and without lens distortion, and its bad inputs."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from data_helpers import assert_close, assert_surface_colours
from PIL import Image

from meshtryoshka_data import (
    DatasetError,
    Undistorter,
    check_dataset,
    detect_format,
    load_dataset,
    load_nerfstudio,
    write_nerfstudio_scene,
)
from meshtryoshka_data.cli import main
from meshtryoshka_data.ply import read_ply_points, write_ply_points
from meshtryoshka_data.synthetic import render_sphere


@pytest.fixture(scope="module")
def pinhole_truth(tmp_path_factory):
    path = tmp_path_factory.mktemp("nerfstudio") / "pinhole"
    return write_nerfstudio_scene(path, n_images=10, camera_model="PINHOLE", seed=2)


@pytest.fixture
def pinhole_copy(pinhole_truth, tmp_path):
    return shutil.copytree(pinhole_truth.path, tmp_path / "scene")


def _edit(path, edit):
    json_path = path / "transforms.json"
    meta = json.loads(json_path.read_text())
    edit(meta)
    json_path.write_text(json.dumps(meta))
    return json_path


def test_cameras_points_and_images_equal_the_truth(pinhole_truth):
    dataset = load_nerfstudio(pinhole_truth.path, normalize=False)
    assert dataset.format == "nerfstudio" and dataset.camera_model == "PINHOLE"
    assert dataset.names == pinhole_truth.names
    # applied_transform is undone: the cameras and points are in the original frame.
    assert_close(dataset.world_to_camera, pinhole_truth.world_to_camera, 1e-6, "cameras")
    assert_close(dataset.intrinsics, pinhole_truth.intrinsics, 1e-5, "intrinsics")
    assert_close(dataset.points, pinhole_truth.points, 1e-5, "points")
    assert np.array_equal(dataset.point_colors.numpy(), pinhole_truth.point_colors)
    assert np.array_equal(dataset.images.numpy(), pinhole_truth.images)  # PNGs, no resampling
    assert dataset.splits["test"].tolist() == dataset.splits["val"].tolist() == [0, 8]
    assert detect_format(pinhole_truth.path) == "nerfstudio"
    assert load_dataset(pinhole_truth.path).format == "nerfstudio"


def test_surface_points_project_onto_their_colour(pinhole_truth):
    dataset = load_nerfstudio(pinhole_truth.path, orient=True)  # normalized and rotated
    assert assert_surface_colours(dataset, pinhole_truth) > 50


@pytest.mark.parametrize("model", ["OPENCV", "OPENCV_FISHEYE"])
@pytest.mark.parametrize("per_frame", [False, True], ids=["shared", "per-frame"])
def test_distorted_images_are_undistorted(tmp_path, model, per_frame):
    truth = write_nerfstudio_scene(
        tmp_path / "s",
        n_images=4,
        size=(64, 48),
        camera_model=model,
        per_frame_intrinsics=per_frame,
    )
    dataset = load_nerfstudio(truth.path, normalize=False)
    assert dataset.camera_model == model
    assert_close(dataset.world_to_camera, truth.world_to_camera, 1e-6, "cameras")
    for index in range(len(dataset)):
        pinhole = Undistorter(truth.distortion, truth.intrinsics[index], (64, 48)).intrinsics
        k = dataset.intrinsics[index].double().numpy()
        assert_close(k, pinhole, 1e-4, f"pinhole intrinsics of frame {index}")
        expected = render_sphere(
            truth.world_to_camera[index], k, 64, 48, truth.sphere_center, truth.sphere_radius, "sky"
        )[..., :3]
        error = np.abs(dataset.images[index].numpy().astype(float) - expected)
        assert np.median(error) <= 1.0 and error.mean() < 2.5, (index, error.mean())
    if per_frame:  # the focal length grows 1% per frame
        assert (dataset.intrinsics[1:, 0, 0] > dataset.intrinsics[:-1, 0, 0]).all()
    report = check_dataset(truth.path)
    assert report.ok, report.problems
    frames = "1 frame" if per_frame else "4 frames"
    assert any(note.startswith(f"{frames} ({model}) has lens distortion") for note in report.notes)


def test_downscale_reads_images_2_or_shrinks(pinhole_truth, pinhole_copy):
    from_folder = load_nerfstudio(pinhole_truth.path, downscale=2, normalize=False)
    assert from_folder.images.shape == (10, 12, 16, 3)
    half = pinhole_truth.intrinsics.copy()
    half[:, :2] /= 2
    assert_close(from_folder.intrinsics, half, 1e-5, "intrinsics at images_2")
    shutil.rmtree(pinhole_copy / "images_2")
    shrunk = load_nerfstudio(pinhole_copy, downscale=2, normalize=False)
    assert_close(shrunk.intrinsics, half, 1e-5, "intrinsics when shrinking")
    diff = (shrunk.images.float() - from_folder.images.float()).abs().max()
    assert diff <= 1, diff  # both a 2x2 box filter of the same PNGs
    assert any(
        "images_2/ not found" in note for note in check_dataset(pinhole_copy, downscale=2).notes
    )


def test_split_lists_choose_the_splits(pinhole_copy):
    def edit(meta):
        meta["train_filenames"] = [f"images/frame_{i:03d}.png" for i in range(6)]
        meta["val_filenames"] = ["./images/frame_006.png"]
        meta["test_filenames"] = ["images/frame_007.png", "images/frame_008.png"]

    _edit(pinhole_copy, edit)
    dataset = load_nerfstudio(pinhole_copy)
    assert len(dataset) == 9  # frame_009 is in no list
    assert dataset.splits["train"].tolist() == list(range(6))
    assert dataset.splits["val"].tolist() == [6]
    assert dataset.splits["test"].tolist() == [7, 8]
    assert any("1 frame(s) are in none of" in note for note in check_dataset(pinhole_copy).notes)


def test_without_applied_transform_or_points(pinhole_truth, pinhole_copy):
    def edit(meta):
        del meta["applied_transform"], meta["ply_file_path"]

    _edit(pinhole_copy, edit)
    dataset = load_nerfstudio(pinhole_copy, normalize=False)
    assert dataset.points is None
    # The cameras now stay in the file's frame: the axis swap (x, y, z) -> (x, z, -y).
    swap = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    expected = pinhole_truth.world_to_camera @ np.linalg.inv(swap)
    assert_close(dataset.world_to_camera, expected, 1e-6, "cameras in the file's frame")


def test_check_command(pinhole_truth):
    result = CliRunner().invoke(main, ["check", str(pinhole_truth.path)])
    assert result.exit_code == 0, result.output
    assert "format:       nerfstudio" in result.output and "PINHOLE" in result.output
    assert "train 8, val 2, test 2" in result.output and "points:       300" in result.output


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m.update(camera_model="EQUIRECTANGULAR"), ["camera_model", "EQUIRECTANGULAR"]),
        (lambda m: m.update(k1=0.1), ["camera_model PINHOLE has no distortion", "k1"]),
        (lambda m: m.update(camera_model="OPENCV_FISHEYE", p1=0.01), ["no tangential", "p1"]),
        (lambda m: m.update(k2="big"), ["'k2' must be a finite number"]),
        (lambda m: m.pop("fl_x"), ["frame 0: no intrinsics"]),
        (
            lambda m: m.update(applied_transform=(2 * np.eye(4)[:3]).tolist()),
            ["'applied_transform' is not a rigid transform"],
        ),
        (
            lambda m: m.update(applied_transform=[[1, 0], [0, 1]]),
            ["'applied_transform' must be 4x4"],
        ),
        (lambda m: m["frames"][3].pop("transform_matrix"), ["frame 3", "'transform_matrix'"]),
        (lambda m: m.update(frames=[]), ["'frames' is empty"]),
        (lambda m: m.update(train_filenames="images"), ["'train_filenames' must be a list"]),
    ],
)
def test_bad_transforms_json(pinhole_copy, edit, words):
    json_path = _edit(pinhole_copy, edit)
    with pytest.raises(DatasetError) as info:
        load_nerfstudio(pinhole_copy)
    assert info.value.path == json_path
    for word in words:
        assert word in str(info.value), str(info.value)


def test_missing_image_and_point_cloud(pinhole_copy):
    (pinhole_copy / "images" / "frame_004.png").unlink()
    with pytest.raises(DatasetError, match="does not exist") as info:
        load_nerfstudio(pinhole_copy)
    assert info.value.path == pinhole_copy / "images" / "frame_004.png"
    (pinhole_copy / "sparse_pc.ply").unlink()
    report = check_dataset(pinhole_copy)
    assert not report.ok and "point cloud file not found" in report.problems[0]


def test_ply_points_round_trip(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(50, 3))
    rgb = np.random.default_rng(1).integers(0, 256, (50, 3)).astype(np.uint8)
    for binary in (False, True):
        write_ply_points(tmp_path / "p.ply", xyz, rgb, binary=binary)
        points, colors = read_ply_points(tmp_path / "p.ply")
        assert_close(points, xyz, 0 if binary else 1e-12, "positions")
        assert np.array_equal(colors, rgb)
    write_ply_points(tmp_path / "p.ply", xyz)
    assert read_ply_points(tmp_path / "p.ply")[1] is None


def test_ply_float_colours_and_other_elements(tmp_path):
    # A binary file with float colours and a face element after the vertices (ignored).
    header = (
        "ply\nformat binary_big_endian 1.0\ncomment made by hand\nelement vertex 2\n"
        "property float x\nproperty float y\nproperty float z\nproperty float red\n"
        "property float green\nproperty float blue\nelement face 1\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    vertices = np.array([[1, 2, 3, 1.0, 0.5, 0.0], [4, 5, 6, 0.0, 0.0, 1.0]], dtype=">f4")
    face = b"\x03" + np.array([0, 1, 1], dtype=">i4").tobytes()
    (tmp_path / "p.ply").write_bytes(header.encode() + vertices.tobytes() + face)
    points, colors = read_ply_points(tmp_path / "p.ply")
    assert_close(points, [[1, 2, 3], [4, 5, 6]], 0)
    assert colors.tolist() == [[255, 128, 0], [0, 0, 255]]


@pytest.mark.parametrize(
    "content, words",
    [
        (b"not a ply", "not a PLY file"),
        (b"ply\nformat ascii 1.0\nelement face 1\nend_header\n", "no 'vertex' element"),
        (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
            "no y, z property",
        ),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 9\nproperty float x\n"
            b"property float y\nproperty float z\nend_header\n0000",
            "truncated",
        ),
        (b"ply\nformat ascii 2.0\nelement vertex 1\nbogus line\nend_header\n", "unreadable"),
    ],
)
def test_bad_ply(tmp_path, content, words):
    (tmp_path / "p.ply").write_bytes(content)
    with pytest.raises(DatasetError, match=words) as info:
        read_ply_points(tmp_path / "p.ply")
    assert info.value.path == tmp_path / "p.ply"


def test_rgba_frames_keep_alpha(pinhole_copy):
    for path in (pinhole_copy / "images").iterdir():
        rgb = np.asarray(Image.open(path))
        alpha = np.full(rgb.shape[:2] + (1,), 200, dtype=np.uint8)
        Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(path)
    dataset = load_nerfstudio(pinhole_copy, background="black")
    assert dataset.has_alpha
    batch = next(dataset.iterate("test"))
    assert batch.alpha is not None and float(batch.alpha.mean()) == pytest.approx(200 / 255)
