"""render: orbit and test-camera paths to PNG frames and a GIF; the orbit's camera geometry."""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from meshtryoshka_train import camera_path
from meshtryoshka_train.camera_path import (
    focus_point,
    look_at,
    orbit_cameras,
    parse_mode,
    scale_intrinsics,
)
from meshtryoshka_train.cli import main
from meshtryoshka_train.config import load_config
from meshtryoshka_train.run import open_run, prepare_run_dir
from meshtryoshka_train.trainer import Trainer

_RUNS = {}


@pytest.fixture
def blender_run(reduced, blender_root, tmp_path_factory):
    """2 steps on the toy Blender sphere (cameras at distance 4, scaled by 0.75 on load)."""
    if "blender" not in _RUNS:
        overrides = [
            *reduced(blender_root, 2),
            "model.resolution={0=16}",
            "dataset.scale_factor=0.75",
        ]
        config = load_config("nerf_synthetic", overrides)
        run_dir = tmp_path_factory.mktemp("runs") / "blender"
        prepare_run_dir(run_dir, config, resume=False, overwrite=False)
        Trainer(config, run_dir, echo=lambda _: None).run()
        _RUNS["blender"] = run_dir
    return _RUNS["blender"]


def render(*args):
    return CliRunner().invoke(main, ["render", *map(str, args), "--device", "cpu"])


def project(w2c, k, point):
    """Pixel coordinates [F, 2] of a world point seen by cameras w2c [F, 4, 4], k [F, 3, 3]."""
    camera = torch.einsum("fij,j->fi", w2c[:, :3, :3].double(), point.double()) + w2c[:, :3, 3]
    pixel = torch.einsum("fij,fj->fi", k.double(), camera)
    return pixel[:, :2] / pixel[:, 2:], camera[:, 2]


@pytest.mark.parametrize("mode", ["layered", "surface", "shell:2"])
def test_orbit_writes_frames_and_a_gif_in_every_mode(blender_run, mode):
    result = render(blender_run, "--frames", 3, "--mode", mode, "--size", "20x16")
    assert result.exit_code == 0, result.output
    folder = blender_run / "renders" / f"orbit_{mode.replace(':', '')}_step_0000002"
    frames = sorted(folder.glob("*.png"))
    assert [f.name for f in frames] == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    for path in frames:
        pixels = np.asarray(Image.open(path))
        assert pixels.shape == (16, 20, 3)
        # White background at the corners, the sphere (not white) in the middle.
        assert (pixels[0, 0] == 255).all() and (pixels[-1, -1] == 255).all()
        assert pixels[7:9, 9:11].mean() < 200
    gif = Image.open(folder / f"orbit_{mode.replace(':', '')}.gif")
    assert gif.size == (20, 16) and gif.n_frames == 3
    assert f"3 frames written to {folder}" in result.output


def test_modes_differ_and_shells_nest(blender_run, tmp_path):
    """The outermost shell, opaque, covers more pixels than the innermost."""
    covered = {}
    for shell in (0, 3):
        out = tmp_path / f"s{shell}"
        result = render(blender_run, "--frames", 1, "--mode", f"shell:{shell}", "-o", out)
        assert result.exit_code == 0, result.output
        pixels = np.asarray(Image.open(out / "frame_0000.png")).astype(int)
        covered[shell] = int((pixels.sum(-1) < 3 * 250).sum())
    assert covered[0] > covered[3] > 0


def test_test_path_renders_the_test_cameras(blender_run, tmp_path):
    result = render(blender_run, "--path", "test", "--mode", "surface", "-o", tmp_path / "t")
    assert result.exit_code == 0, result.output
    frames = sorted((tmp_path / "t").glob("*.png"))
    assert [f.name for f in frames] == ["0000_r_0.png", "0001_r_1.png"]
    assert all(Image.open(f).size == (24, 24) for f in frames)  # the dataset's size
    # A shorter render into the same folder leaves no stale frame behind; other files stay.
    (tmp_path / "t" / "notes.png").write_bytes(b"")
    result = render(blender_run, "--path", "test", "--frames", 1, "-o", tmp_path / "t")
    assert result.exit_code == 0, result.output
    names = sorted(f.name for f in (tmp_path / "t").glob("*.png"))
    assert names == ["0000_r_0.png", "notes.png"]


def test_bad_arguments_are_refused(blender_run, tmp_path):
    result = render(tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = render(blender_run, "--mode", "shells")
    assert result.exit_code == 2 and "'layered', 'surface' or 'shell:K'" in result.output
    result = render(blender_run, "--mode", "shell:4")
    assert result.exit_code == 2 and "shell must be in 0..3" in result.output
    result = render(blender_run, "--size", "20")
    assert result.exit_code == 2 and "WxH" in result.output
    result = render(blender_run, "--frames", 0)
    assert result.exit_code == 2 and "frames must be >= 1" in result.output


def test_orbit_of_the_run_looks_at_the_centre(blender_run):
    dataset = open_run(blender_run, device="cpu").dataset
    train = dataset.splits["train"]
    path = orbit_cameras(
        dataset.world_to_camera[train], dataset.intrinsics[train], (24, 24), 12, (30, 40)
    )
    assert path.world_to_camera.shape == (12, 4, 4) and path.image_size == (30, 40)
    # The toy cameras all look at the origin from distance 4 (3 after the 0.75 scale).
    centre = focus_point(dataset.world_to_camera[train])
    assert centre.norm() < 1e-4
    pixels, depth = project(path.world_to_camera, path.intrinsics, centre)
    expected = torch.tensor([[20.0, 15.0]]).expand(12, 2).double()
    torch.testing.assert_close(pixels, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(depth, torch.full((12,), 3.0).double(), atol=1e-4, rtol=0)
    # Same horizontal field of view as the training cameras (24 px wide -> 40 px wide).
    assert path.intrinsics[0, 0, 0] == pytest.approx(dataset.intrinsics[0, 0, 0] * 40 / 24)


def test_orbit_circle_from_known_cameras():
    """Six cameras on a circle of radius 2 at height 1 above p = (1, 2, 3), looking at p with
    up +z: the orbit must reproduce that circle, starting at the first camera."""
    p = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    angles = torch.arange(6, dtype=torch.float64) * (2 * math.pi / 6) + 0.3
    eyes = p + torch.stack([2 * angles.cos(), 2 * angles.sin(), torch.ones(6)], dim=1)
    w2c = look_at(eyes, p, torch.tensor([0.0, 0.0, 1.0]))
    k = torch.tensor([[30.0, 0, 17], [0, 31.0, 11], [0, 0, 1]]).expand(6, 3, 3)
    path = orbit_cameras(w2c.float(), k, (24, 32), 8)
    torch.testing.assert_close(focus_point(w2c), p)
    rotation = path.world_to_camera[:, :3, :3].double()
    centres = -torch.einsum("fji,fj->fi", rotation, path.world_to_camera[:, :3, 3].double())
    offsets = centres - p
    torch.testing.assert_close(offsets[:, 2], torch.ones(8, dtype=torch.float64), atol=1e-5, rtol=0)
    horizontal = offsets[:, :2].norm(dim=1)
    torch.testing.assert_close(horizontal, torch.full((8,), 2.0).double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(centres[0], eyes[0], atol=1e-5, rtol=0)
    azimuth = torch.atan2(offsets[:, 1], offsets[:, 0])
    steps = torch.remainder(azimuth.diff(), 2 * math.pi)
    torch.testing.assert_close(steps, torch.full((7,), 2 * math.pi / 8).double(), atol=1e-5, rtol=0)
    # Upright: world +z points up in the image (camera -y), and the principal point is centred.
    assert (rotation[:, 1, 2] < 0).all()
    torch.testing.assert_close(path.intrinsics[0, :2, 2], torch.tensor([16.0, 12.0]))
    pixels, _ = project(path.world_to_camera, path.intrinsics, p)
    expected = torch.tensor([[16.0, 12.0]]).expand(8, 2).double()
    torch.testing.assert_close(pixels, expected, atol=1e-4, rtol=0)  # float32 poses


def test_look_at_is_an_opencv_pose():
    eye = torch.tensor([[3.0, -1.0, 2.0]])
    target = torch.tensor([0.5, 0.5, 0.0])
    w2c = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0]))[0]
    rotation = w2c[:3, :3]
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(3, dtype=torch.float64))
    assert torch.linalg.det(rotation) == pytest.approx(1.0)
    torch.testing.assert_close(rotation @ eye[0].double() + w2c[:3, 3], torch.zeros(3).double())
    in_camera = rotation @ target.double() + w2c[:3, 3]
    torch.testing.assert_close(in_camera[:2], torch.zeros(2).double(), atol=1e-12, rtol=0)
    assert in_camera[2] == pytest.approx(float((target - eye[0]).norm()))
    with pytest.raises(ValueError, match="parallel"):
        look_at(torch.tensor([[0.0, 0.0, 5.0]]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))


def test_focus_point_of_parallel_cameras_is_the_origin():
    eyes = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    w2c = look_at(eyes, eyes + torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(focus_point(w2c), torch.zeros(3, dtype=torch.float64))


def test_scale_intrinsics_keeps_the_horizontal_view():
    k = torch.tensor([[50.0, 0, 33], [0, 52.0, 21], [0, 0, 1]])
    scaled = scale_intrinsics(k, (40, 64), (30, 128))  # 2x wider, relatively less tall
    point = torch.tensor([0.3, -0.2, 1.7])
    u, v, w = k @ point
    u2, v2, w2 = scaled @ point
    assert u2 / w2 == pytest.approx(2 * u / w)
    assert v2 / w2 - 15 == pytest.approx(2 * (v / w - 20))
    assert parse_mode("shell:12") == ("shell", 12) and parse_mode("surface") == ("surface", None)


def test_large_frames_get_a_smaller_gif_preview(blender_run, tmp_path, monkeypatch):
    monkeypatch.setattr(camera_path, "PREVIEW_SIDE", 10)
    result = render(blender_run, "--frames", 2, "--size", "20x16", "-o", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "p" / "frame_0000.png").size == (20, 16)
    assert Image.open(tmp_path / "p" / "orbit_layered.gif").size == (10, 8)
