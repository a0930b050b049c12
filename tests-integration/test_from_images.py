"""From photos to a trained scene, as a user would go, on the CPU.

A textured still life is rendered with Mitsuba 3 (``mitsuba_photos.py``): 36 photos of
320x240 and nothing else; the true poses stay in this test. ``python -m meshtryoshka_data
from-images`` (pycolmap) recovers the poses, which must match the true ones up to a similarity
transform, and ``check`` must accept the result. Then the demo experiment, shortened, started
from the reconstruction's point cloud and the same for both, trains once on the recovered
dataset and once on the same photos with the true cameras (expressed in the recovered frame,
with the same point cloud, see ``_true_dataset``): the test PSNRs must agree within 1 dB.

The renders are cached in pytest's cache folder (``.pytest_cache``, git-ignored) under a key
that changes with the scene. Needs ``mitsuba`` and ``pycolmap`` (the ``colmap`` extra of
meshtryoshka-data); each missing one skips the module and says why. ``nox -s integration``
installs both.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from meshtryoshka_data import (
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    camera_pose_errors,
    load_colmap,
    read_colmap_model,
    write_colmap_model,
)
from meshtryoshka_data._geometry import quaternion_to_rotation, rotation_to_quaternion

sys.path.insert(0, str(Path(__file__).parent))  # for ``mitsuba_photos``

import mitsuba_photos  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("mitsuba") is None,
        reason="mitsuba is not installed (pip install mitsuba==3.9.1): it renders the photos",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("pycolmap") is None,
        reason="pycolmap is not installed (pip install 'meshtryoshka-data[colmap]'): "
        "from-images needs it",
    ),
]

#: the demo experiment, shortened (the same for both runs): 300 steps on images_2 (160x120),
#: resolution 32 then 48. The cameras of both datasets are fitted into the cube the demo's
#: grid covers as the demo scene's are: scale_factor 2.7 keeps the world's units (cameras at
#: distance 2.7), orient puts +z up. The backgrounds are black: no alpha, black renders.
#:
#: The field starts from the reconstruction's sparse points (balls of about one voxel of the
#: 32-grid around each, baked into the signed distance), not from the demo's sphere. The
#: sphere (radius 0.75 here) holds only part of this scene: the ball lies wholly outside it,
#: no shell passes there for the image loss to move, and whether the moving surface reaches
#: it within 300 steps is chance. With the sphere the test PSNR moved by 4.4 dB with the seed
#: alone (true cameras, seeds 0-3: 20.49, 17.42, 19.38, 21.81 dB; seed 1 has no ball), more
#: than the 1 dB the test allows. From the points: 23.9-24.3 dB (see the test).
TRAIN = [
    "--experiment",
    "demo",
    "dataset.format=colmap",
    "dataset.downscale=2",
    "dataset.scale_factor=2.7",
    "dataset.orient=true",
    "dataset.background=black",
    "model.initializer=point_cloud",
    "model.point_cloud_init=baked",
    "model.init_radius=0.03",
    "train.steps=300",
    "model.resolution={0=32, 200=48}",
    "model.sh_degree={0=0, 100=1}",
    "train.eval_interval=0",
    "train.checkpoint_interval=300",
    "train.log_interval=100",
    "train.export_mesh=false",
    "train.device=cpu",
]
PSNR_LINE = re.compile(r"test PSNR at step (\d+): layered ([\d.]+) dB, surface ([\d.]+) dB")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def command(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m <args>``; fails the test with the output unless it exits with 0."""
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=ENV,
    )
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def photos(request, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The photo folder and the true world-to-camera matrices [36, 4, 4] (photo i first)."""
    cache = getattr(request.config, "cache", None)
    key = f"mitsuba-still-life-v{mitsuba_photos.VERSION}"
    folder = cache.mkdir(key) if cache else tmp_path_factory.mktemp(key)
    truth = folder / "world_to_camera.npy"
    if not truth.is_file() or len(list((folder / "photos").glob("*.png"))) != 36:
        shutil.rmtree(folder / "photos", ignore_errors=True)
        np.save(truth, mitsuba_photos.render_photos(folder / "photos"))
    return folder / "photos", np.load(truth)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def recovered(photos, datasets) -> tuple[Path, str]:
    """from-images on the photos, with its default options, as a user runs it."""
    out = datasets / "recovered"
    result = command("meshtryoshka_data", "from-images", str(photos[0]), str(out), "--threads", "2")
    return out, result.stdout


def test_from_images_recovers_the_true_poses_up_to_a_similarity(photos, recovered):
    out, stdout = recovered
    assert "registered:   36 of 36 images (1 model)" in stdout, stdout
    dataset = load_colmap(out, normalize=False, llffhold=0)
    indices = [int(name.removeprefix("photo_").removesuffix(".png")) for name in dataset.names]
    _, rotation_error, center_error = camera_pose_errors(
        dataset.world_to_camera.double().numpy(), photos[1][indices]
    )
    # Measured: 0.33 degrees and 0.012 units at most (0.11 and 0.005 on average).
    assert rotation_error.max() < 1.0, f"rotation errors (degrees): {rotation_error.round(3)}"
    assert center_error.max() < 0.05, f"centre errors (units; cameras at 2.7): {center_error}"
    focal = mitsuba_photos.intrinsics()[0, 0]
    assert abs(dataset.intrinsics[0, 0, 0].item() / focal - 1) < 0.01


def test_check_accepts_the_result(recovered):
    result = command("meshtryoshka_data", "check", str(recovered[0]), "--downscale", "2")
    assert "camera model: PINHOLE" in result.stdout and "result:       VALID" in result.stdout


def _true_dataset(photos: Path, world_to_camera: np.ndarray, recovered: Path, out: Path) -> None:
    """The same photos with the true cameras, in the layout from-images writes: images/ as
    rendered, images_2/ made as from-images makes it (box filter to half size).

    The true cameras are expressed in the recovered reconstruction's frame (the similarity
    fitted between the two) and get its point cloud, which both trainings start from (see
    ``TRAIN``): the scene then sits at the same place in the axis-aligned grid and starts from
    the same shape, and the two trainings differ in the cameras (and in the images: these are
    the photos, the recovered dataset holds the copies from-images wrote).
    """
    for folder in ("images", "images_2"):
        (out / folder).mkdir(parents=True)
    model = read_colmap_model(recovered / "sparse" / "0")
    order = sorted(model.images.values(), key=lambda image: image.name)
    estimated = np.stack([np.eye(4)] * len(order))
    for w2c, image in zip(estimated, order, strict=True):
        w2c[:3, :3], w2c[:3, 3] = quaternion_to_rotation(image.qvec), image.tvec
    indices = [int(image.name.removeprefix("photo_").removesuffix(".png")) for image in order]
    transform, _, _ = camera_pose_errors(estimated, world_to_camera[indices])
    aligned = transform.transform_world_to_camera(world_to_camera)
    images = {}
    for index in indices:  # the photos that got a pose, as in the recovered dataset
        w2c, name = aligned[index], f"photo_{index:03d}.png"
        shutil.copyfile(photos / name, out / "images" / name)
        image = Image.open(photos / name).convert("RGB")
        half = (round(image.width / 2), round(image.height / 2))
        image.resize(half, Image.Resampling.BOX).save(out / "images_2" / name)
        quaternion = rotation_to_quaternion(w2c[:3, :3])
        images[index + 1] = ColmapImage(index + 1, quaternion, w2c[:3, 3].copy(), 1, name)
    k = mitsuba_photos.intrinsics()
    params = tuple(k[[0, 1, 0, 1], [0, 1, 2, 2]])
    camera = ColmapCamera(1, "PINHOLE", mitsuba_photos.WIDTH, mitsuba_photos.HEIGHT, params)
    write_colmap_model(out / "sparse" / "0", ColmapModel({1: camera}, images, model.points))


def train(datasets: Path, scene: str, run_dir: Path) -> tuple[float, float]:
    result = command(
        "meshtryoshka_train",
        *TRAIN,
        f"dataset.root={datasets}",
        f"dataset.scene={scene}",
        "--run-dir",
        str(run_dir),
    )
    match = PSNR_LINE.search(result.stdout)
    assert match and int(match[1]) == 300, result.stdout
    return float(match[2]), float(match[3])


def test_training_on_recovered_poses_is_within_1_db_of_the_true_poses(
    photos, recovered, datasets, tmp_path
):
    _true_dataset(*photos, recovered[0], datasets / "true_poses")
    true_layered, true_surface = train(datasets, "true_poses", tmp_path / "true_poses")
    layered, surface = train(datasets, recovered[0].name, tmp_path / "recovered")
    # Measured on 2 CPU cores, layered / surface dB, train.seed 0-3 (the test runs seed 0):
    # true cameras 24.13 / 23.91, 24.17 / 23.83, 24.14 / 23.84, 24.21 / 23.93; recovered ones
    # 24.20 / 23.92, 23.97 / 23.69, 23.93 / 23.68, 24.25 / 23.98: they differ by 0.21 dB at
    # most, and all eight runs lie within 0.32 dB. The recovered cameras each turned by a
    # random 0.5 degree: 20.58 dB, by 1 degree: 18.05 dB (seed 0), so the test fails on
    # errors of that size. (The spots SIFT needs are finer than the grid, which caps the PSNR.)
    print(
        f"test PSNR (layered / surface): true cameras {true_layered} / {true_surface} dB, "
        f"recovered cameras {layered} / {surface} dB"
    )
    assert min(true_layered, layered) > 22.0, (true_layered, layered)
    assert abs(layered - true_layered) < 1.0, (true_layered, layered)
    assert abs(surface - true_surface) < 1.0, (true_surface, surface)
