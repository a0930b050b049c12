"""Similarity transforms: round trips, camera cube, rigid cameras, invariant projections."""

import numpy as np
import pytest
import torch
from data_helpers import assert_close

from meshtryoshka_data import (
    Similarity,
    camera_pose_errors,
    fit_normalization,
    fit_similarity,
    load_colmap,
)
from meshtryoshka_data._geometry import project, rigid_inverse
from meshtryoshka_data.normalization import _rotation_onto_z


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_round_trip_numpy_and_torch():
    rng = np.random.default_rng(0)
    transform = Similarity(center=[1.0, -2.0, 3.0], scale=0.37, rotation=_random_rotation(rng))
    points = rng.normal(size=(50, 3)) * 10
    assert_close(transform.to_world(transform.from_world(points)), points, 1e-12)
    assert_close(transform.from_world(transform.to_world(points)), points, 1e-12)
    tensor = torch.from_numpy(points).float()
    back = transform.to_world(transform.from_world(tensor))
    assert back.dtype == torch.float32 and back.shape == tensor.shape
    assert_close(back, points, 1e-4)
    homogeneous = np.c_[points, np.ones(50)] @ transform.matrix().T
    assert_close(homogeneous[:, :3], transform.from_world(points), 1e-12)


@pytest.mark.parametrize("scale_factor", [1.0, 0.6])
def test_fit_puts_cameras_in_the_cube(scale_factor):
    centers = np.random.default_rng(1).normal(size=(20, 3)) * [5, 1, 2] + [10, -3, 7]
    transform = fit_normalization(centers, scale_factor=scale_factor)
    normalized = transform.from_world(centers)
    assert np.abs(normalized).max() == pytest.approx(scale_factor)
    low, high = normalized.min(axis=0), normalized.max(axis=0)
    assert_close(low + high, np.zeros(3), 1e-12, "box centred on the origin")


def test_fit_refuses_a_single_position():
    with pytest.raises(ValueError, match="non-zero extent"):
        fit_normalization(np.ones((3, 3)))


def test_world_to_camera_stays_rigid_and_projections_stay_put():
    rng = np.random.default_rng(2)
    w2c = np.eye(4)
    w2c[:3, :3] = _random_rotation(rng)
    w2c[:3, 3] = [0.3, -0.1, 4.0]
    k = np.array([[50.0, 0, 16], [0, 51.0, 12], [0, 0, 1]])
    transform = Similarity(center=[2.0, 1.0, -1.0], scale=0.25, rotation=_random_rotation(rng))
    moved = transform.transform_world_to_camera(w2c)
    r = moved[:3, :3]
    assert_close(r @ r.T, np.eye(3), 1e-12, "orthonormal")
    assert np.linalg.det(r) == pytest.approx(1.0)
    points = rng.normal(size=(30, 3))
    pixels, depth = project(points, w2c, k)
    pixels2, depth2 = project(transform.from_world(points), moved, k)
    assert_close(pixels2, pixels, 1e-9, "pixels")
    assert_close(depth2, 0.25 * depth, 1e-12, "depth scales with the world")
    # The camera centre moves like any other point.
    center = rigid_inverse(w2c)[:3, 3]
    assert_close(rigid_inverse(moved)[:3, 3], transform.from_world(center), 1e-12)


def test_rotation_onto_z():
    for direction in ([0.2, -1.0, 0.1], [0, 0, 1.0], [0, 0, -2.0]):
        rotation = _rotation_onto_z(np.array(direction))
        unit = np.array(direction) / np.linalg.norm(direction)
        assert_close(rotation @ unit, [0, 0, 1.0], 1e-12, str(direction))
        assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_dataset_round_trip_and_cube(colmap_truth):
    dataset = load_colmap(colmap_truth.path, scale_factor=0.6)
    centers = dataset.camera_centers.double()
    assert centers.abs().max().item() == pytest.approx(0.6, abs=1e-6)
    assert_close(dataset.bounds, torch.stack([centers.min(0).values, centers.max(0).values]), 1e-6)
    # Points: dataset.points are the COLMAP points normalized; to_world gives them back.
    assert_close(dataset.to_world(dataset.points.double()), colmap_truth.points, 1e-5)
    assert_close(dataset.from_world(colmap_truth.points), dataset.points, 1e-6)
    raw_centers = rigid_inverse(colmap_truth.world_to_camera)[:, :3, 3]
    assert_close(dataset.to_world(centers.numpy()), raw_centers, 1e-5)


def test_orient_maps_the_up_direction_to_z(colmap_truth):
    dataset = load_colmap(colmap_truth.path, orient=True)
    up_world = -dataset.world_to_camera[:, 1, :3].double().mean(0)  # cameras' mean up
    up_world /= up_world.norm()
    assert up_world[2].item() == pytest.approx(1.0, abs=1e-6)
    assert dataset.camera_centers.abs().max().item() == pytest.approx(1.0, abs=1e-6)


def test_fit_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(20, 3))
    truth = Similarity(center=[0.5, -1.0, 2.0], scale=2.5, rotation=_random_rotation(rng))
    fitted = fit_similarity(source, truth.from_world(source))
    assert_close(fitted.rotation, truth.rotation, 1e-10, "rotation")
    assert abs(fitted.scale - 2.5) < 1e-10
    assert_close(fitted.center, truth.center, 1e-10, "center")
    # With noise it is the least-squares fit: no better fit nearby.
    noisy = truth.from_world(source) + rng.normal(scale=0.01, size=source.shape)
    fitted = fit_similarity(source, noisy)
    residual = ((fitted.from_world(source) - noisy) ** 2).sum()
    worse = Similarity(center=fitted.center + 1e-3, scale=fitted.scale, rotation=fitted.rotation)
    assert residual < ((worse.from_world(source) - noisy) ** 2).sum()


def test_fit_similarity_refuses_degenerate_input():
    with pytest.raises(ValueError, match="must both be"):
        fit_similarity(np.zeros((2, 3)), np.zeros((2, 3)))
    line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="degenerate"):
        fit_similarity(line, line)


def test_camera_pose_errors_measure_what_was_added():
    rng = np.random.default_rng(4)
    truth = np.stack([np.eye(4)] * 6)
    for w2c in truth:
        w2c[:3, :3] = _random_rotation(rng)
        w2c[:3, 3] = rng.normal(size=3)
    # The same cameras in another frame (a similarity away) ...
    frame = Similarity(center=[1.0, 2.0, -1.0], scale=0.3, rotation=_random_rotation(rng))
    moved = frame.transform_world_to_camera(truth)
    transform, rotation_error, center_error = camera_pose_errors(moved, truth)
    assert abs(transform.scale - 0.3) < 1e-9
    assert_close(rotation_error, np.zeros(6), 1e-5, "rotation errors (degrees)")
    assert_close(center_error, np.zeros(6), 1e-9, "centre errors")
    # ... then one of them turned by 0.6 degrees about its centre: the fitted rotation takes
    # a sixth of it, so that camera is off by 0.5 degrees and the others by 0.1.
    turn = np.radians(0.6)
    center = -moved[2, :3, :3].T @ moved[2, :3, 3]
    spin = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]])
    moved[2, :3, :3] = spin @ moved[2, :3, :3]
    moved[2, :3, 3] = -moved[2, :3, :3] @ center
    _, rotation_error, center_error = camera_pose_errors(moved, truth)
    assert_close(rotation_error, [0.1, 0.1, 0.5, 0.1, 0.1, 0.1], 1e-4, "rotation errors")
    assert center_error.max() < 0.01  # the 0.1-degree tilt of the fit moves them a little
