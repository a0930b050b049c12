"""Lens distortion: the models against hand-worked values, the inverse against the forward map,
and undistorted images against pinhole renders of the same analytic scene."""

import numpy as np
import pytest
from data_helpers import assert_close

from meshtryoshka_data import check_dataset, load_colmap, write_colmap_scene
from meshtryoshka_data._geometry import pixel_rays
from meshtryoshka_data.distortion import LensDistortion, Undistorter, colmap_camera_model
from meshtryoshka_data.synthetic import SYNTHETIC_DISTORTION, render_sphere

LENSES = {
    "simple_radial": LensDistortion("radial_tangential", (-0.12,)),
    "opencv": LensDistortion("radial_tangential", (-0.2, 0.05), (0.001, -0.002)),
    "four_radial": LensDistortion("radial_tangential", (-0.1, 0.02, 0.001, -0.0005), (5e-4, 3e-4)),
    "pincushion": LensDistortion("radial_tangential", (0.1,)),
    "fisheye": LensDistortion("fisheye", (0.05, -0.01, 0.002, 0.0)),
}


def test_forward_models_match_hand_worked_values():
    x, y = 0.3, -0.2
    r2 = x * x + y * y  # 0.13
    opencv = LensDistortion("radial_tangential", (-0.2, 0.05), (0.001, -0.002))
    radial = 1 - 0.2 * r2 + 0.05 * r2 * r2  # 0.974845
    expected = [
        x * radial + 2 * 0.001 * x * y - 0.002 * (r2 + 2 * x * x),
        y * radial + 0.001 * (r2 + 2 * y * y) + 2 * -0.002 * x * y,
    ]
    assert_close(opencv.distort(np.array([x, y])), expected, 1e-15, "OPENCV")
    fisheye = LensDistortion("fisheye", (0.05, -0.01, 0.002, 0.0))
    r = np.hypot(x, y)
    theta = np.arctan(r)
    theta_d = theta * (1 + 0.05 * theta**2 - 0.01 * theta**4 + 0.002 * theta**6)
    assert_close(fisheye.distort(np.array([x, y])), [x * theta_d / r, y * theta_d / r], 1e-15)
    assert_close(fisheye.distort(np.zeros(2)), [0, 0], 0, "fisheye at the centre")


@pytest.mark.parametrize("name", sorted(LENSES))
def test_inverse_round_trips(name):
    lens = LENSES[name]
    grid = np.stack(np.meshgrid(np.linspace(-0.7, 0.7, 57), np.linspace(-0.55, 0.55, 45)), -1)
    back = lens.undistort(lens.distort(grid))
    assert not np.isnan(back).any()
    assert_close(back, grid, 1e-12, f"{name}: undistort(distort(x))")
    again = lens.distort(lens.undistort(grid))
    assert_close(again, grid, 1e-12, f"{name}: distort(undistort(x))")


def test_inverse_is_nan_past_the_fold():
    lens = LensDistortion("radial_tangential", (-1.5,))  # r (1 - 1.5 r^2) peaks at r = 0.471
    peak = 0.471 * (1 - 1.5 * 0.471**2)  # 0.314: the largest distorted radius
    inside, outside = lens.undistort(np.array([[0.3, 0.0], [0.33, 0.0]]))
    assert abs(inside[0] * (1 - 1.5 * inside[0] ** 2) - 0.3) < 1e-12 and inside[0] < 0.471
    assert np.isnan(outside).all(), (outside, peak)
    fisheye = LensDistortion("fisheye", ())
    assert np.isnan(fisheye.undistort(np.array([2.0, 0.0]))).all()  # theta_d = 2 > pi / 2


def test_colmap_parameters():
    k, lens = colmap_camera_model("OPENCV", (100, 110, 50, 40, -0.1, 0.02, 0.003, -0.002))
    assert_close(k, [[100, 0, 50], [0, 110, 40], [0, 0, 1]], 0)
    assert lens == LensDistortion("radial_tangential", (-0.1, 0.02), (0.003, -0.002))
    k, lens = colmap_camera_model("RADIAL", (100, 50, 40, -0.1, 0.02))
    assert k[1, 1] == 100 and lens.radial == (-0.1, 0.02) and lens.tangential == (0, 0)
    assert colmap_camera_model("SIMPLE_RADIAL", (100, 50, 40, 0.0))[1].is_identity
    assert colmap_camera_model("OPENCV_FISHEYE", (1, 1, 0, 0, 1, 2, 3, 4))[1].kind == "fisheye"
    assert colmap_camera_model("PINHOLE", (1, 2, 3, 4))[1] is None
    with pytest.raises(ValueError, match="FOV"):
        colmap_camera_model("FOV", (1, 1, 0, 0, 0.5))
    with pytest.raises(ValueError, match="OPENCV takes 8 parameters, got 4"):
        colmap_camera_model("OPENCV", (1, 1, 0, 0))


SOURCE = np.array([[70.0, 0.0, 41.0], [0.0, 72.0, 29.5], [0.0, 0.0, 1.0]])
SIZE = (80, 60)


@pytest.mark.parametrize("name", sorted(LENSES))
def test_undistorter_window_has_no_blank_pixels_and_keeps_the_aspect(name):
    undistorter = Undistorter(LENSES[name], SOURCE, SIZE)
    k = undistorter.intrinsics
    assert k[0, 0] / k[1, 1] == pytest.approx(SOURCE[0, 0] / SOURCE[1, 1], rel=1e-12)
    # Every corner and edge point of the output window comes from inside the source image.
    width, height = SIZE
    edge = np.linspace(0, 1, 201)
    outline = np.concatenate(
        [np.stack([edge * width, np.full_like(edge, y)], -1) for y in (0, height)]
        + [np.stack([np.full_like(edge, x), edge * height], -1) for x in (0, width)]
    )
    ideal = (outline - k[:2, 2]) / [k[0, 0], k[1, 1]]
    source = LENSES[name].distort(ideal) * [SOURCE[0, 0], SOURCE[1, 1]] + SOURCE[:2, 2]
    assert (source >= -1e-6).all() and (source <= [width + 1e-6, height + 1e-6]).all()
    # ... and the window is as large as that allows: it touches the source's border (up to
    # the spacing of the border points the window is fitted to).
    slack = np.minimum(source, [width, height] - source).min()
    assert slack < 0.01, slack
    assert 0.8 < min(undistorter.field_of_view) <= max(undistorter.field_of_view) <= 1.0


def _pattern(xy: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern of ideal image coordinates [..., 2]: float64 [..., 3] in [0.1, 0.9],
    with periods of 15-25 pixels at the test's focal length."""
    x, y = xy[..., 0] * 70, xy[..., 1] * 70  # about pixels
    return 0.5 + 0.4 * np.stack(
        [np.sin(x / 3.2) * np.cos(y / 3.8), np.cos(x / 2.6 + y / 4.0), np.sin((x - y) / 3.0)], -1
    )


def _image_of(lens, intrinsics, function):
    """uint8 image [H, W, C] of ``function(ideal coordinates)`` seen through ``lens``."""
    xy = pixel_rays(intrinsics, *SIZE, lens)[..., :2]
    return np.clip(np.rint(function(xy) * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(LENSES))
def test_undistorted_image_equals_the_pinhole_image(name):
    lens = LENSES[name]
    undistorter = Undistorter(lens, SOURCE, SIZE)
    distorted = _image_of(lens, SOURCE, _pattern)
    expected = _image_of(None, undistorter.intrinsics, _pattern)
    error = np.abs(undistorter(distorted).astype(float) - expected)
    # Bilinear interpolation of a pattern with 15-pixel periods: a few grey levels at most.
    assert error.mean() < 1.5 and error.max() <= 6, (error.mean(), error.max())
    # Not undistorting is far worse: the lens moves the pattern by pixels.
    assert np.abs(distorted.astype(float) - expected).mean() > 4 * error.mean()


def test_undistorting_rgba_does_not_bleed_transparent_colour():
    lens = LENSES["opencv"]

    def coverage(xy):  # a red disk, straight alpha; black where transparent
        inside = (np.hypot(xy[..., 0] - 0.05, xy[..., 1]) < 0.3)[..., None]
        return np.where(inside, [0.8, 0.2, 0.1, 1.0], [0.0, 0.0, 0.0, 0.0])

    undistorted = Undistorter(lens, SOURCE, SIZE)(_image_of(lens, SOURCE, coverage))
    seen = undistorted[..., 3] > 0
    partial = seen & (undistorted[..., 3] < 255)
    assert partial.sum() > 20  # the disk's edge is resampled
    colour = undistorted[seen][:, :3].astype(float)
    assert np.abs(colour - [204, 51, 26]).max() <= 1  # straight colour kept where seen


@pytest.mark.parametrize("model", sorted(SYNTHETIC_DISTORTION))
def test_colmap_scene_with_distortion_loads_undistorted(tmp_path, model):
    truth = write_colmap_scene(tmp_path / model, n_images=4, size=(64, 48), camera_model=model)
    dataset = load_colmap(truth.path, normalize=False)
    assert dataset.camera_model == model
    assert_close(dataset.world_to_camera, truth.world_to_camera, 1e-6, "poses")
    k = dataset.intrinsics[0].double().numpy()
    undistorter = Undistorter(truth.distortion, truth.intrinsics[0], (64, 48))
    assert_close(k, undistorter.intrinsics, 1e-4, "pinhole intrinsics")
    for index in range(len(dataset)):
        expected = render_sphere(
            truth.world_to_camera[index], k, 64, 48, truth.sphere_center, truth.sphere_radius, "sky"
        )[..., :3]
        error = np.abs(dataset.images[index].numpy().astype(float) - expected)
        assert np.median(error) <= 2.0 and error.mean() < 3.0, (model, index, error.mean())
    # images_2/ (a downscaled folder) is undistorted with the intrinsics of that size.
    half = load_colmap(truth.path, downscale=2, normalize=False)
    assert_close(half.intrinsics[0], undistorter.intrinsics * [[0.5], [0.5], [1]], 1e-3)
    report = check_dataset(truth.path)
    assert report.ok, report.problems
    assert any(f"camera 1 ({model}) has lens distortion" in note for note in report.notes)
    assert any("undistorted on load into a 64x48 pinhole camera" in n for n in report.notes)
