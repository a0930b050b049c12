"""``meshtryoshka-data from-images``: photos -> poses (pycolmap) -> a COLMAP dataset.

The photos are views of a procedurally textured room with known cameras. The tests that run
structure from motion skip, saying why, when pycolmap (the ``colmap`` extra) is missing; the
checks of the command's input run without it.
"""

import importlib.util
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from data_helpers import assert_close, render_room
from PIL import Image

from meshtryoshka_data import (
    LensDistortion,
    Undistorter,
    camera_pose_errors,
    check_dataset,
    load_colmap,
    read_colmap_model,
)
from meshtryoshka_data._geometry import look_at_world_to_camera, quaternion_to_rotation
from meshtryoshka_data.cli import main

needs_pycolmap = pytest.mark.skipif(
    importlib.util.find_spec("pycolmap") is None,
    reason="pycolmap is not installed: the from-images tests need the extra "
    "(pip install 'meshtryoshka-data[colmap]')",
)

WIDTH, HEIGHT = 240, 180
INTRINSICS = np.array([[180.0, 0.0, 120.0], [0.0, 180.0, 90.0], [0.0, 0.0, 1.0]])


def room_cameras(count: int = 12) -> np.ndarray:
    """OpenCV world-to-camera [count, 4, 4]: a sideways walk, turning from corner to corner."""
    cameras = []
    for a in np.linspace(0.0, 1.0, count):
        eye = np.array([-1.5 + 3.0 * a, -1.0, 0.3 * np.sin(6 * a)])
        target = np.array([4.0 * (1 - 2 * a), 3.0, -1.0 + 1.5 * a])
        cameras.append(look_at_world_to_camera(eye, target, np.array([0.0, 0.0, 1.0])))
    return np.stack(cameras)


def _room_photos(folder, suffix: str, distortion=None):
    """Render the room's 12 photos (240x180) into ``folder``; return (folder, true cameras)."""
    folder.mkdir()
    cameras = room_cameras()
    for index, w2c in enumerate(cameras):
        pixels = render_room(w2c, INTRINSICS, WIDTH, HEIGHT, distortion=distortion)
        Image.fromarray(pixels).save(folder / f"room_{index:02d}{suffix}", quality=95)
    return folder, cameras


@pytest.fixture(scope="module")
def room_photos(tmp_path_factory):
    """A folder of 12 JPEG photos of the room through a pinhole camera; their true cameras."""
    return _room_photos(tmp_path_factory.mktemp("room") / "photos", ".jpg")


def run(*args):
    return CliRunner().invoke(main, ["from-images", *map(str, args)])


@pytest.fixture(scope="module")
def room_dataset(room_photos, tmp_path_factory):
    """The from-images result on the room photos (default options, two threads)."""
    out = tmp_path_factory.mktemp("out") / "room"
    return out, run(room_photos[0], out, "--threads", 2)


@needs_pycolmap
def test_recovers_the_poses_and_writes_the_mipnerf360_layout(room_photos, room_dataset):
    out, result = room_dataset
    assert result.exit_code == 0, result.output
    for words in ("[1/4] features", "[3/4] mapping", "registered:   12 of 12 images"):
        assert words in result.output
    assert "check:        VALID" in result.output
    assert f"dataset.root={out.parent} dataset.scene=room" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "from_images.json",
        "images",
        "images_2",
        "images_4",
        "sparse",
    ]
    assert sorted(p.name for p in (out / "sparse" / "0").iterdir()) == [
        "cameras.bin",
        "images.bin",
        "points3D.bin",
    ]
    assert Image.open(out / "images_2" / "room_00.jpg").size == (120, 90)
    assert Image.open(out / "images_4" / "room_00.jpg").size == (60, 45)

    dataset = load_colmap(out, normalize=False, llffhold=0)
    assert dataset.camera_model == "PINHOLE" and len(dataset) == 12
    _, rotation_error, center_error = camera_pose_errors(
        dataset.world_to_camera.double().numpy(), room_photos[1]
    )
    # Measured: at most 0.22 degrees and 0.015 units (the walk is 3 units long).
    assert rotation_error.max() < 1.0, rotation_error
    assert center_error.max() < 0.1, center_error
    focal = dataset.intrinsics[0, 0, 0].item()
    assert abs(focal / 180.0 - 1) < 0.03, focal
    assert load_colmap(out, downscale=4).images.shape == (12, 45, 60, 3)

    report = json.loads((out / "from_images.json").read_text())
    assert report["n_images"] == report["n_registered"] == 12 and report["n_models"] == 1
    assert report["unregistered"] == [] and report["matching"] == "exhaustive"
    assert 0 < report["mean_reprojection_error"] < 1.0 and report["n_points"] > 300
    assert report["cameras"][0]["model"] == "SIMPLE_RADIAL"
    assert (
        report["undistorted"][0]["width"] == 240
        and "camera:       SIMPLE_RADIAL 240x180: f " in result.output
    )
    assert set(report["seconds"]) == {"features", "matching", "mapping", "writing"}


#: the lens of the distorted photos: barrel distortion of about 4 pixels in the corners
LENS = LensDistortion("radial_tangential", (-0.1,))


@pytest.fixture(scope="module")
def distorted_photos(tmp_path_factory):
    """The room photos taken through :data:`LENS` (PNG); their true cameras."""
    return _room_photos(tmp_path_factory.mktemp("lens") / "photos", ".png", LENS)


@needs_pycolmap
def test_lens_is_recovered_photos_undistorted_and_overwrite_replaces(distorted_photos, tmp_path):
    photos, cameras = distorted_photos
    out = tmp_path / "room"
    out.mkdir()
    (out / "old.txt").write_text("an earlier attempt")
    assert "already exists" in run(photos, out).output  # refused without --overwrite
    result = run(photos, out, "--overwrite", "--threads", 2)
    assert result.exit_code == 0, result.output
    assert not (out / "old.txt").exists()
    report = json.loads((out / "from_images.json").read_text())
    assert report["cameras"][0]["model"] == "SIMPLE_RADIAL"
    f, cx, cy, k = report["cameras"][0]["params"]
    assert abs(k + 0.1) < 0.02 and abs(f / 180 - 1) < 0.03, report["cameras"]  # measured k -0.103
    # Every photo was resampled with that lens into the pinhole camera of the model.
    model = read_colmap_model(out / "sparse" / "0", keep_points2d=True)
    camera = next(iter(model.cameras.values()))
    lens_intrinsics = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
    undistorter = Undistorter(
        LensDistortion("radial_tangential", (k,)), lens_intrinsics, (240, 180)
    )
    assert camera.model == "PINHOLE"
    assert_close(camera.params, undistorter.intrinsics[[0, 1, 0, 1], [0, 1, 2, 2]], 1e-9)
    for name in ("room_00.png", "room_07.png"):
        written = np.asarray(Image.open(out / "images" / name))
        assert np.array_equal(written, undistorter(np.asarray(Image.open(photos / name))))
    # The keypoints moved with the photos: each 3D point projects onto its observations.
    errors = []
    for image in model.images.values():
        rotation = quaternion_to_rotation(image.qvec)
        seen = image.point3d_ids >= 0
        index = np.searchsorted(model.points.ids, image.point3d_ids[seen])
        in_camera = model.points.xyz[index] @ rotation.T + image.tvec
        projected = in_camera[:, :2] / in_camera[:, 2:] * camera.params[:2] + camera.params[2:]
        errors.append(np.linalg.norm(projected - image.points2d[seen], axis=1))
    assert np.median(np.concatenate(errors)) < 1.0
    dataset = load_colmap(out, normalize=False, llffhold=0)
    _, rotation_error, _ = camera_pose_errors(dataset.world_to_camera.numpy(), cameras)
    assert rotation_error.max() < 1.0, rotation_error
    assert check_dataset(out).ok


@needs_pycolmap
def test_pinhole_photos_are_copied_byte_for_byte(room_photos, tmp_path):
    result = run(room_photos[0], tmp_path / "room", "--camera-model", "SIMPLE_PINHOLE")
    assert result.exit_code == 0, result.output
    assert "(no distortion: photos copied unchanged)" in result.output
    for path in room_photos[0].iterdir():
        assert (tmp_path / "room" / "images" / path.name).read_bytes() == path.read_bytes()
    report = json.loads((tmp_path / "room" / "from_images.json").read_text())
    assert report["undistorted"][0]["copied"] is True


@needs_pycolmap
def test_too_few_registered_exits_1_with_advice_and_writes_nothing(tmp_path):
    photos = tmp_path / "noise"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):  # unrelated noise: nothing matches
        pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"noise_{index}.png")
    out = tmp_path / "new" / "out"  # its parent is made for it, and removed on failure
    result = run(photos, out, "--threads", 2)
    assert result.exit_code == 1
    assert "Try: photos that overlap more" in result.output
    assert "--matching exhaustive" not in result.output  # it was exhaustive already
    assert "got a pose" in result.output or "no reconstruction" in result.output
    assert f"Nothing was written to {out}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise"]  # no partial folder


# --- input checks (no pycolmap needed) -------------------------------------------------------


def _photos(folder, sizes, suffix=".png"):
    folder.mkdir()
    for index, size in enumerate(sizes):
        Image.new("RGB", size, (index * 40, 100, 50)).save(folder / f"p{index}{suffix}")
    return folder


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p / "absent", "photo folder not found"),
        (lambda p: _photos(p / "two", [(32, 24)] * 2), "needs at least 3 photos, found 2"),
        (
            lambda p: _photos(p / "mixed", [(32, 24), (32, 24), (24, 32)]),
            "p2.png: is 24x32 but p0.png is 32x24: all photos must have one size",
        ),
    ],
)
def test_bad_photo_folders(tmp_path, make, words):
    result = run(make(tmp_path), tmp_path / "out")
    assert result.exit_code == 1 and words in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_videos_are_pointed_at_ffmpeg(tmp_path):
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "walk.mp4").write_bytes(b"\0" * 100)
    result = run(tmp_path / "clip", tmp_path / "out")
    assert result.exit_code == 1
    assert "video files (walk.mp4) but no photos" in result.output
    assert "ffmpeg -i walk.mp4" in result.output and "--matching sequential" in result.output


def test_unreadable_photo_is_named(tmp_path):
    photos = _photos(tmp_path / "photos", [(32, 24)] * 3)
    (photos / "p1.png").write_bytes(b"not an image")
    result = run(photos, tmp_path / "out")
    assert result.exit_code == 1 and f"{photos / 'p1.png'}: corrupt or unreadable" in result.output


def test_out_dir_checks_and_bad_options(tmp_path):
    photos = _photos(tmp_path / "photos", [(32, 24)] * 3)
    assert "OUT_DIR must differ from PHOTOS_DIR" in run(photos, photos).output
    result = run(photos, tmp_path / "out", "--downscales", "1,2")
    assert result.exit_code == 2 and "factors must be >= 2" in result.output
    result = run(photos, tmp_path / "out", "--min-registered", "1.5")
    assert result.exit_code == 1 and "min_registered must be a fraction in (0, 1]" in result.output
    result = run(photos, tmp_path / "out", "--camera-model", "FOV")
    assert result.exit_code == 2 and "FOV" in result.output


def test_missing_pycolmap_says_how_to_install(tmp_path, monkeypatch):
    photos = _photos(tmp_path / "photos", [(32, 24)] * 3)
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap now fails
    result = run(photos, tmp_path / "out")
    assert result.exit_code == 1
    assert "from-images needs pycolmap: pip install 'meshtryoshka-data[colmap]'" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
