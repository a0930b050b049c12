"""The viewer's server half in-process (needs viser, no browser): idle polls, pause and stop,
a restored run's statistics, the export and screenshot actions, and the time budget with a
scripted viser client (benchmarks/bench_viewer.py) orbiting its camera."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("viser", reason="the viewer extra is not installed (pip install viser)")

from meshtryoshka_data import write_blender_scene  # noqa: E402
from meshtryoshka_train.config import load_config  # noqa: E402
from meshtryoshka_train.run import open_run, prepare_run_dir  # noqa: E402
from meshtryoshka_train.trainer import Trainer  # noqa: E402
from meshtryoshka_train.viewer import Viewer, ViewState  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained for 3 steps on a tiny synthetic scene, then restored as a trainer (the
    live viewer's source)."""
    root = tmp_path_factory.mktemp("viewer_server")
    write_blender_scene(root / "data" / "toy", n_train=8, n_val=1, n_test=2, size=24, seed=0)
    overrides = [f"dataset.root={root / 'data'}", "dataset.scene=toy", "model.resolution={0=12}"]
    overrides += ["model.backend=reference", "train.device=cpu", "optim.batch_size=2"]
    overrides += ["train.steps=3", "viewer.port=8765"]
    config = load_config("demo", overrides)
    prepare_run_dir(root / "run", config, resume=False, overwrite=False)
    Trainer(config, root / "run", echo=lambda _: None).run()
    return Trainer(config, root / "run", resume=True, echo=lambda _: None)


@pytest.fixture
def viewer(trained):
    viewer = Viewer(trained, training=True, echo=lambda _: None)
    yield viewer
    viewer.close()


def test_without_a_browser_a_poll_renders_nothing(viewer, trained):
    assert viewer.url.startswith("http://127.0.0.1:")
    for _ in range(3):
        assert viewer.poll(trained, {}) == 0.0
    assert viewer.frames == 0 and viewer.rendered_seconds == 0.0


def test_pause_holds_the_loop_until_a_signal_asks_to_stop(viewer, trained):
    viewer.pause_widget.value = True
    returned = []
    thread = threading.Thread(target=lambda: returned.append(viewer.poll(trained, {})))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "poll returned while paused"
    trained.stop_signal = 15  # what the trainer's SIGTERM handler sets
    try:
        thread.join(10)
        assert not thread.is_alive() and returned[0] >= 0.4  # the pause, in seconds
    finally:
        trained.stop_signal = None
        viewer.pause_widget.value = False


def test_a_restored_run_shows_its_logged_statistics(trained):
    snapshot = open_run(trained.run_dir, device="cpu")  # what `view RUN_DIR` serves
    viewer = Viewer(snapshot, training=False, echo=lambda _: None)
    try:
        text = viewer._stats_text()
    finally:
        viewer.close()
    assert "**step** 3 / 3" in text and "**loss**" in text and "**test PSNR**" in text


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("surface", ["mesh_surface_step_0000003.ply"]),
        ("layered", [f"mesh_layered_step_0000003_shell{i}.ply" for i in (0, 1, 2, 3)]),
        ("shell 0 (p=0.7)", ["mesh_shell_0_p_0_7_step_0000003.ply"]),  # the outermost
        ("voxels", ["mesh_voxels_step_0000003.ply"]),
    ],
)
def test_export_writes_the_mode_s_meshes(viewer, trained, mode, expected):
    viewer.view = ViewState(mode)
    viewer._run_action(trained, "export", None)
    folder = trained.run_dir / "viewer"
    for name in expected:
        assert (folder / name).read_bytes().startswith(b"ply"), name


def test_a_failing_button_is_reported_and_training_goes_on(trained, tmp_path):
    lines = []
    viewer = Viewer(trained, training=True, echo=lines.append)
    run_dir = trained.run_dir
    try:
        trained.run_dir = tmp_path / "not_a_folder"
        trained.run_dir.write_text("")  # run_dir/viewer cannot be made
        viewer.actions.append(("export", None))
        assert viewer.poll(trained, {}) == 0.0
    finally:
        trained.run_dir = run_dir
        viewer.close()
    assert any(line.startswith("viewer: export failed") for line in lines), lines


def load_bench_viewer():
    path = Path(__file__).parents[1] / "packages/meshtryoshka-train/benchmarks/bench_viewer.py"
    spec = importlib.util.spec_from_file_location("bench_viewer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_orbiting_client_gets_frames_within_the_time_budget(trained):
    """A client moving its camera without pause: frames keep coming, and the time the step
    hook takes stays within the budget's share (0.8 x max_slowdown) of the training time + its
    burst + the last poll. "Training" here is a 20 ms sleep per step."""
    bench = load_bench_viewer()
    viewer = Viewer(trained, training=True, echo=lambda _: None)
    client = bench.open_script_client(viewer.url, trained, orbit=True)
    try:
        deadline = time.monotonic() + 60
        while viewer.frames == 0 and time.monotonic() < deadline:
            viewer.poll(trained, {})  # connect and serve the first frame
            time.sleep(0.02)
        assert viewer.frames > 0, "the scripted client never got a frame"
        first_frames = viewer.frames
        training = hook = longest = 0.0
        while training < 4.0:
            began = time.perf_counter()
            time.sleep(0.02)
            polled = time.perf_counter()
            viewer.poll(trained, {})
            ended = time.perf_counter()
            training += polled - began
            hook += ended - polled
            longest = max(longest, ended - polled)
    finally:
        viewer.close()
        client.wait(timeout=30)
    assert viewer.frames - first_frames >= 2, "frames stopped while the camera moved"
    budget = viewer.budget
    assert budget.share == pytest.approx(0.08)
    assert hook <= budget.share * training + budget.burst + longest, (hook, training, longest)
