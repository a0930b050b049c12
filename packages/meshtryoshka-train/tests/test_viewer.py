"""The viewer's rendering half (no viser needed), its budget, its config and its absence.

The viser half, in a real headless browser, is tested in tests-integration/test_viewer.py.
"""

import math
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from meshtryoshka_train.cli import main
from meshtryoshka_train.config import ConfigError, load_config
from meshtryoshka_train.contraction import Contraction
from meshtryoshka_train.field import Field
from meshtryoshka_train.layout import Layout
from meshtryoshka_train.rendering import extract_for_mode, render_extraction
from meshtryoshka_train.run import prepare_run_dir, shells_at
from meshtryoshka_train.trainer import Trainer
from meshtryoshka_train.viewer import (
    INSTALL_HINT,
    RenderBudget,
    ViewerUnavailable,
    ViewRenderer,
    ViewState,
    camera_from_pose,
    clip_faces,
    initial_view,
    require_viser,
    view_modes,
    voxel_boxes,
)
from slang_marching_cubes import SparseGrid

WHITE = torch.ones(3)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, blender_root):
    """A tiny run trained for 3 steps (resolution 12, 24x24 images, CPU reference backend)."""
    overrides = [f"dataset.root={blender_root}", "dataset.scene=toy", "model.resolution={0=12}"]
    overrides += ["model.train_ssaa=1", "model.eval_ssaa=1", "model.backend=reference"]
    overrides += ["optim.batch_size=2", "train.steps=3", "train.device=cpu"]
    config = load_config("demo", overrides)
    run_dir = tmp_path_factory.mktemp("viewer") / "run"
    prepare_run_dir(run_dir, config, resume=False, overwrite=False)
    trainer = Trainer(config, run_dir, echo=lambda _: None)
    trainer.run()
    return trainer


def dataset_camera(trainer, split="test"):
    index = int(trainer.dataset.splits[split][0])
    size = (trainer.dataset.height, trainer.dataset.width)
    return trainer.dataset.world_to_camera[index], trainer.dataset.intrinsics[index], size


def quaternion_of(rotation: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix (its trace is > -1 for the cameras used here)."""
    w = math.sqrt(max(0.0, 1.0 + np.trace(rotation))) / 2
    return np.array(
        [
            w,
            (rotation[2, 1] - rotation[1, 2]) / (4 * w),
            (rotation[0, 2] - rotation[2, 0]) / (4 * w),
            (rotation[1, 0] - rotation[0, 1]) / (4 * w),
        ]
    )


# --- cameras ---------------------------------------------------------------------------------


def test_camera_from_pose_inverts_a_dataset_camera(trainer):
    w2c, _, _ = dataset_camera(trainer, "train")
    c2w = torch.linalg.inv(w2c.double()).numpy()
    got, intrinsics = camera_from_pose(quaternion_of(c2w[:3, :3]), c2w[:3, 3], 0.7, 64, 48)
    assert torch.allclose(got, w2c.float(), atol=1e-5), (got - w2c).abs().max()
    focal = 24 / math.tan(0.35)
    expected = torch.tensor([[focal, 0, 32], [0, focal, 24], [0, 0, 1]])
    assert torch.allclose(intrinsics, expected, atol=1e-4)


def test_camera_from_pose_looks_along_plus_z_and_rejects_bad_input():
    # identity rotation at (0, 0, -2): the origin is 2 in front, on the image centre
    w2c, k = camera_from_pose((1, 0, 0, 0), (0, 0, -2), math.radians(60), 40, 30)
    point = w2c @ torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert point[2] == pytest.approx(2.0)
    pixel = k @ point[:3] / point[2]
    assert pixel[:2].tolist() == pytest.approx([20.0, 15.0])
    with pytest.raises(ValueError, match="wxyz"):
        camera_from_pose((0, 0, 0, 0), (0, 0, 0), 1.0, 8, 8)
    with pytest.raises(ValueError, match="fov_y"):
        camera_from_pose((1, 0, 0, 0), (0, 0, 0), 4.0, 8, 8)


def test_initial_view_aims_a_test_camera_at_the_scene(trainer):
    view = initial_view(trainer.dataset)
    # the synthetic scene's cameras all look at the origin, from the upper hemisphere (+z up)
    assert np.abs(view.look_at).max() < 1e-3
    w2c, k, (height, _) = dataset_camera(trainer)
    centre = -w2c[:3, :3].T.double() @ w2c[:3, 3].double()
    assert np.allclose(view.position, centre.numpy(), atol=1e-5)
    assert view.up[2] > 0.8
    assert view.fov_y == pytest.approx(2 * math.atan(height / 2 / float(k[1, 1])))


# --- geometry --------------------------------------------------------------------------------


def test_view_modes_list_every_shell_numbered_from_0():
    model = load_config("demo", ["model.shells=[0.9, 0.5]"]).model
    assert view_modes(shells_at(model, 0)) == [
        "layered",
        "surface",
        "shell 0 (p=0.9)",
        "shell 1 (p=0.5)",
        "voxels",
    ]


def test_clip_faces_keeps_exactly_the_faces_before_the_section(trainer):
    model = trainer.config.model
    full = extract_for_mode(trainer.field, model, trainer.step, "layered")
    assert clip_faces(full, trainer.field.contraction, 0, 1.0) is full
    for axis, limit in ((0, 0.5), (2, 0.3)):
        cut = clip_faces(full, trainer.field.contraction, axis, limit)
        contracted = trainer.field.contraction.contract(full.positions)[:, axis]
        keep = (contracted[full.faces.long()] <= limit).all(1)
        assert 0 < cut.num_faces < full.num_faces
        assert torch.equal(cut.faces, full.faces[keep])
        # per-shell ranges follow the kept faces
        for shell in range(len(full.face_offsets) - 1):
            a, b = int(full.face_offsets[shell]), int(full.face_offsets[shell + 1])
            c, d = int(cut.face_offsets[shell]), int(cut.face_offsets[shell + 1])
            assert d - c == int(keep[a:b].sum())
        assert int(cut.face_offsets[-1]) == cut.num_faces


def one_block_field(coords, resolution=4):
    layout = Layout(1.0, False)
    contraction = Contraction(1.0, 1.0, 0.0)
    grid = SparseGrid.from_coords((resolution,) * 3, torch.tensor(coords))
    n = grid.num_vertices
    return Field(layout, contraction, resolution, 0, [grid], torch.zeros(n), torch.zeros(n, 1, 3))


def test_voxel_boxes_draw_the_outer_faces_outward():
    field = one_block_field([[1, 1, 1], [2, 1, 1]])
    boxes, count = voxel_boxes(field)
    assert count == 2
    assert boxes.num_faces == 2 * 10  # 10 open quads: the shared face is not drawn
    assert boxes.face_offsets.tolist() == [0, 20]
    p = boxes.positions[boxes.faces.long()]  # [F, 3, 3] world
    normal = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=1)
    # world = (unit * 2 - 1) * 1.0; the pair's centre is at unit (0.5, 0.375, 0.375)
    centre = torch.tensor([0.5, 0.375, 0.375]) * 2 - 1
    assert ((normal * (p.mean(1) - centre)).sum(1) > 0).all()
    assert (boxes.sdf < -1e3).all() and boxes.sh.shape == (boxes.positions.shape[0], 1, 3)
    # the section drops the voxel beyond it: the remaining one is a closed box again
    cut, count = voxel_boxes(field, (0, 0.5))
    assert count == 1 and cut.num_faces == 12


def test_voxel_boxes_of_an_empty_section_is_empty():
    boxes, count = voxel_boxes(one_block_field([[3, 3, 3]]), (0, 0.1))
    assert count == 0 and boxes.num_faces == 0


# --- rendering -------------------------------------------------------------------------------


def test_every_mode_renders_the_scene_and_modes_differ(trainer):
    renderer = ViewRenderer(trainer.config, WHITE)
    w2c, k, size = dataset_camera(trainer)
    frames = {}
    for mode in renderer.modes(trainer.step):
        frame = renderer.render(trainer.field, trainer.step, ViewState(mode), w2c, k, size)
        assert frame.shape == (*size, 3) and frame.dtype == np.uint8
        assert (frame < 250).any(axis=2).mean() > 0.05, f"{mode}: (almost) blank frame"
        frames[mode] = frame.astype(float)
    assert np.abs(frames["voxels"] - frames["layered"]).mean() > 5
    assert not np.array_equal(frames["surface"], frames["layered"])


def test_surface_mode_is_the_evaluation_render(trainer):
    renderer = ViewRenderer(trainer.config, WHITE)
    w2c, k, size = dataset_camera(trainer)
    frame = renderer.render(trainer.field, trainer.step, ViewState("surface"), w2c, k, size)
    model = trainer.config.model
    extraction = extract_for_mode(trainer.field, model, trainer.step, "surface")
    image, _ = render_extraction(
        extraction, w2c[None], k[None], size, WHITE[None], model, ssaa=1,
        near=model.train_near, alpha_max=1.0,
    )  # fmt: skip
    expected = (image[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(frame, expected)


def test_a_section_before_everything_shows_the_background(trainer):
    renderer = ViewRenderer(trainer.config, torch.tensor([0.0, 0.0, 1.0]))
    w2c, k, size = dataset_camera(trainer)
    for mode in ("layered", "voxels"):
        frame = renderer.render(trainer.field, trainer.step, ViewState(mode, 1, 0.0), w2c, k, size)
        assert (frame == np.array([0, 0, 255], dtype=np.uint8)).all()


def test_geometry_is_reused_for_the_same_step_and_view(trainer):
    renderer = ViewRenderer(trainer.config, WHITE)
    first = renderer.geometry(trainer.field, trainer.step, ViewState("surface"))
    assert renderer.geometry(trainer.field, trainer.step, ViewState("surface")) is first
    assert renderer.geometry(trainer.field, trainer.step, ViewState("surface", 0, 0.5)) is not first
    with pytest.raises(ValueError, match="unknown view mode 'shell 9'"):
        renderer.geometry(trainer.field, trainer.step, ViewState("shell 9"))


# --- the render budget -----------------------------------------------------------------------


def test_render_budget_bounds_the_render_time_share():
    budget = RenderBudget(0.1, burst=0.25)
    rendered, trained = 0.0, 0.0
    for _ in range(1000):  # a 20 ms step, then a 30 ms frame whenever the budget allows one
        budget.earn(0.02)
        trained += 0.02
        if budget.available():
            budget.spend(0.03)
            rendered += 0.03
    assert rendered <= 0.1 * trained + 0.25 + 0.03
    assert rendered >= 0.08 * trained  # and it does use its share
    with pytest.raises(ValueError, match="share"):
        RenderBudget(0.0)


def test_render_budget_waits_after_a_long_frame():
    budget = RenderBudget(0.1, burst=0.25)
    budget.spend(1.0)  # a 1 s frame: 10 s of training pays it back
    budget.earn(7.0)
    assert not budget.available()
    budget.earn(1.0)
    assert budget.available()


# --- the hook, the configuration, and running without viser ------------------------------------


def test_step_hooks_run_after_every_step(tmp_path, blender_root, reduced):
    config = load_config("demo", reduced(blender_root, steps=3))
    prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=False)
    trainer = Trainer(config, tmp_path / "run", echo=lambda _: None)
    seen = []
    trainer.step_hooks.append(lambda t, stats: seen.append((t.step, sorted(stats))))
    trainer.run()
    assert [step for step, _ in seen] == [1, 2, 3]
    assert {"total", "psnr", "faces"} <= set(seen[0][1])


@pytest.mark.parametrize(
    "override, message",
    [
        ("viewer.port=0", "viewer.port"),
        ("viewer.port=70000", "viewer.port"),
        ("viewer.height=8", "viewer.height"),
        ("viewer.max_slowdown=0", "viewer.max_slowdown"),
        ("viewer.max_slowdown=1.5", "viewer.max_slowdown"),
        ("viewer.refresh_interval=-1", "viewer.refresh_interval"),
    ],
)
def test_bad_viewer_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])


def test_viewer_defaults_are_local_and_off():
    viewer = load_config("demo").viewer
    assert (viewer.enabled, viewer.host, viewer.port) == (False, "127.0.0.1", 8080)


def test_without_viser_the_viewer_says_how_to_install_it(monkeypatch, tmp_path, blender_root):
    monkeypatch.setitem(sys.modules, "viser", None)  # `import viser` raises ImportError
    with pytest.raises(ViewerUnavailable, match=r"pip install 'meshtryoshka-train\[viewer\]'"):
        require_viser()
    run_dir = tmp_path / "run"
    args = ["--experiment", "demo", "--run-dir", str(run_dir), "viewer.enabled=true"]
    args += [f"dataset.root={blender_root}", "dataset.scene=toy", "train.device=cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert INSTALL_HINT in result.output
    assert not run_dir.exists()  # refused before the run directory was made
    result = CliRunner().invoke(main, ["view", str(tmp_path)])
    assert result.exit_code == 2 and "no config.toml" in result.output


def test_view_command_without_viser(monkeypatch, trainer):
    monkeypatch.setitem(sys.modules, "viser", None)
    result = CliRunner().invoke(main, ["view", str(trainer.run_dir)])
    assert result.exit_code == 2, result.output
    assert INSTALL_HINT in result.output
