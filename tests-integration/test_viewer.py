"""The web viewer in a real headless browser: a live training run, seen through Chromium.

Starts `meshtryoshka-train ... viewer.enabled=true` on a tiny synthetic scene (CPU, reference
backend) in a subprocess, opens the page in Debian's headless Chromium through chromedriver
(selenium), and checks what a person would: a frame of the scene appears (not a blank
canvas), the statistics advance while it trains, changing the mode in the dropdown changes
the frame, and the screenshot and export buttons write their files.

Needs the `viewer` extra (viser), selenium, and the Debian packages chromium and
chromium-driver; skips, saying which is missing, without them. `.ci/run` installs them
(best effort) and `nox -s integration` installs the Python half.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("viser", reason="the viewer extra is not installed (pip install viser)")
pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "no headless browser: apt-get install chromium chromium-driver", allow_module_level=True
    )

from PIL import Image  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from meshtryoshka_data import write_blender_scene  # noqa: E402

WINDOW = (1000, 700)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.5, log: Path | None = None):
    """Poll `condition()` until it returns something truthy; fail naming `what` (and showing
    the end of the training log `log`, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    tail = "\n".join(log.read_text().splitlines()[-15:]) if log is not None else ""
    pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{tail}" if tail else "")
    )


@pytest.fixture
def live_run(tmp_path):
    """A training run with the viewer on: yields (url, run_dir); terminated afterwards."""
    write_blender_scene(tmp_path / "data" / "toy", n_train=8, n_val=1, n_test=2, size=32, seed=0)
    run_dir = tmp_path / "run"
    log = tmp_path / "train.log"
    args = [sys.executable, "-m", "meshtryoshka_train", "--experiment", "demo"]
    args += ["--run-dir", str(run_dir), f"dataset.root={tmp_path / 'data'}", "dataset.scene=toy"]
    args += ["model.resolution={0=16}", "model.backend=reference", "train.device=cpu"]
    args += ["optim.batch_size=2", "train.steps=100000", "train.log_interval=10"]
    args += ["train.eval_interval=0", "train.checkpoint_interval=0"]
    args += ["viewer.enabled=true", f"viewer.port={free_port()}", "viewer.height=160"]
    args += ["viewer.moving_height=64", "viewer.max_slowdown=0.3", "viewer.refresh_interval=0.5"]
    with open(log, "w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:

        def url():
            if process.poll() is not None:
                pytest.fail(f"training exited ({process.returncode}):\n{log.read_text()}")
            found = re.search(r"viewer: (http://\S+)", log.read_text())
            return found and found.group(1)

        yield wait_for(url, 180, "the viewer's URL on stdout"), run_dir
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--enable-unsafe-swiftshader",  # software WebGL for viser's canvas
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(tmp_path / "downloads")}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def scene_region(driver) -> np.ndarray:
    """The middle of the canvas, clear of the control panel (right), the notifications
    (top left) and the axes gizmo (bottom left): float [h, w, 3] in 0..255."""
    image = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    height, width = image.shape[:2]
    return image[int(0.25 * height) : int(0.8 * height), int(0.3 * width) : int(0.6 * width)]


def covered(region: np.ndarray) -> float:
    """Share of pixels that are not the white background."""
    return float((np.abs(region.astype(float) - 255).sum(axis=2) > 40).mean())


def choose(driver, label: str, option: str, attempts: int = 3) -> None:
    """Pick `option` in the viser dropdown labelled `label`, with clicks, as a person would,
    until the dropdown shows it (a click on a list that is still opening can be lost)."""
    field = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
    box_id = field.get_attribute("for")
    for _ in range(attempts):
        driver.find_element(By.ID, box_id).click()
        item = wait_for(
            lambda: [
                e
                for e in driver.find_elements(
                    By.XPATH, f"//*[@role='option'][normalize-space()='{option}']"
                )
                if e.is_displayed()
            ],
            20,
            f"option {option!r} of {label!r}",
        )
        item[0].click()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if driver.find_element(By.ID, box_id).get_attribute("value") == option:
                return
            time.sleep(0.2)
    pytest.fail(f"the dropdown {label!r} does not show {option!r} after {attempts} attempts")


def panel_step(driver) -> int | None:
    found = re.search(r"step\s+(\d+)\s*/", driver.find_element(By.TAG_NAME, "body").text)
    return int(found.group(1)) if found else None


def test_live_viewer_in_a_headless_browser(live_run, browser):
    url, run_dir = live_run
    log = run_dir.parent / "train.log"
    browser.get(url)

    # a frame of the scene replaces the blank canvas
    wait_for(
        lambda: covered(scene_region(browser)) > 0.05, 120, "a frame showing the scene", log=log
    )
    layered = scene_region(browser).astype(float)
    assert layered.std() > 10, "the frame is flat"

    # the statistics follow the training
    first = wait_for(lambda: panel_step(browser), 60, "the step in the statistics", log=log)
    wait_for(lambda: (panel_step(browser) or 0) > first, 120, "the step to advance", log=log)
    assert re.search(r"loss\s+\d", browser.find_element(By.TAG_NAME, "body").text)

    # another mode, another frame: the occupied voxels fill the view with coloured boxes
    choose(browser, "Mode", "voxels")

    def voxels_shown():
        region = scene_region(browser).astype(float)
        return np.abs(region - layered).mean() > 20 and covered(region) > 0.5

    wait_for(voxels_shown, 120, "the voxel frame", log=log)
    voxels = scene_region(browser).astype(float)
    choose(browser, "Mode", "surface")
    wait_for(
        lambda: np.abs(scene_region(browser).astype(float) - voxels).mean() > 20,
        120,
        "the surface frame",
        log=log,
    )

    # the buttons write a screenshot and the surface mesh into the run directory
    browser.find_element(By.XPATH, "//button[normalize-space()='Save screenshot']").click()
    shots = wait_for(
        lambda: sorted((run_dir / "viewer").glob("screenshot_surface_*.png")),
        120,
        "a screenshot",
        log=log,
    )
    assert covered(np.asarray(Image.open(shots[0]).convert("RGB"))) > 0.05
    browser.find_element(By.XPATH, "//button[normalize-space()='Export mesh']").click()
    meshes = wait_for(
        lambda: sorted((run_dir / "viewer").glob("mesh_surface_*.ply")), 120, "a mesh", log=log
    )
    wait_for(lambda: os.path.getsize(meshes[0]) > 0, 30, "the mesh to be written")
    assert Path(meshes[0]).read_bytes().startswith(b"ply")
