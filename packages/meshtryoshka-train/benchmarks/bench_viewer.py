"""How much the web viewer slows training: steps/s without it, with it idle, with a client
watching (still camera: a live frame per `viewer.refresh_interval`), and with the client's
camera orbiting without pause (a frame always due).

    python benchmarks/bench_viewer.py [--steps 60] [--device cpu] [--client script|chromium]
                                      [KEY=VALUE ...]

Trains the bundled demo scene (or any experiment with overrides) from the same seed for
--steps steps (no checkpoints, no evaluation) in each of the four ways, interleaved,
--repeats times, and prints the best run of each way. "render share" is the viewer's render
seconds over the training seconds: what `viewer.max_slowdown` caps; "hook share" is all the
time spent in the viewer's step hook (render, encoding, widgets) over the training seconds.
"CPU s/step" is this process's CPU time per step. "step ms" is the mean time of a training step
outside the hook, "after frame" of the steps right after a frame, "other steps" of the rest:
equal to the "off" row when the viewer costs nothing beyond its hook. Every run is also printed
as a JSON line.

The client is either a scripted viser client in a separate process (`--client script`, the
default: it speaks viser's websocket protocol, sends camera poses at 30 Hz like a dragging
user and receives every frame, but draws nothing - a browser on another machine, as when
training on a remote GPU) or a headless Chromium on this machine (`--client chromium`: on a
small CPU-only machine its software WebGL competes with training for the cores, so steps/s
drops while this process's CPU time per step does not; needs selenium, Debian's chromium and
chromium-driver, skipped without them). Needs viser.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from meshtryoshka_train.config import load_config
from meshtryoshka_train.run import prepare_run_dir
from meshtryoshka_train.trainer import Trainer
from meshtryoshka_train.viewer import Viewer, initial_view

CLIENT_HZ = 30.0  # camera messages per second of the scripted client while orbiting


def open_browser(url: str, workdir: Path):
    """A headless Chromium showing `url`, or None when selenium/chromium are missing."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if chromium is None or driver_path is None:
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1000,700")
    options.add_argument("--enable-unsafe-swiftshader")
    options.add_argument(f"--user-data-dir={workdir / 'chromium'}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.get(url)
    return driver


def camera_message(position, look_at, up, fov_y: float, width: int, height: int) -> dict:
    """A viser ``ViewerCameraMessage`` (as the browser sends it) for a camera at `position`
    looking at `look_at`: OpenCV axes (+x right, +y down, +z forward), wxyz = camera-to-world."""
    from viser.transforms import SO3

    position, look_at, up = (np.asarray(v, dtype=np.float64) for v in (position, look_at, up))
    forward = look_at - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    wxyz = SO3.from_matrix(np.stack([right, down, forward], axis=1)).wxyz
    return {
        "type": "ViewerCameraMessage",
        "wxyz": [float(v) for v in wxyz],
        "position": [float(v) for v in position],
        "fov": float(fov_y),
        "near": 0.01,
        "far": 1000.0,
        "image_height": height,
        "image_width": width,
        "look_at": [float(v) for v in look_at],
        "up_direction": [float(v) for v in up],
    }


def scripted_client(url: str, view: dict, orbit: bool) -> None:
    """Run a viser client until the server closes: send camera poses (orbiting at 20 degrees
    per second, `CLIENT_HZ` messages per second, or a still camera sent twice) and receive and
    count every message. Prints the received megabytes at the end."""
    import msgspec
    import viser
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    position, look_at, up = (np.asarray(view[k]) for k in ("position", "look_at", "up"))
    up = up / np.linalg.norm(up)
    offset = position - look_at
    received, began, sent = 0, time.monotonic(), 0
    ws_url = url.replace("http://", "ws://")
    with connect(ws_url, subprotocols=[f"viser-v{viser.__version__}"], max_size=None) as socket:
        try:
            while True:
                now = time.monotonic()
                if sent < 2 or (orbit and now - began >= sent / CLIENT_HZ):
                    angle = math.radians(20.0) * (now - began) if orbit else 0.0
                    cos, sin = math.cos(angle), math.sin(angle)
                    rotated = (
                        offset * cos
                        + np.cross(up, offset) * sin
                        + up * np.dot(up, offset) * (1 - cos)
                    )
                    message = camera_message(look_at + rotated, look_at, up, view["fov"], 960, 540)
                    socket.send(msgspec.msgpack.encode(message))
                    sent += 1
                try:
                    received += len(socket.recv(timeout=0.5 / CLIENT_HZ))
                except TimeoutError:
                    pass
        except ConnectionClosed:
            pass
    print(f"scripted client: {sent} camera messages, {received / 2**10:.0f} KiB received")


def open_script_client(url: str, trainer, orbit: bool) -> subprocess.Popen:
    """`scripted_client` in a child process (its own interpreter, as a browser would be)."""
    start = initial_view(trainer.dataset)
    view = {
        "position": start.position.tolist(),
        "look_at": start.look_at.tolist(),
        "up": start.up.tolist(),
        "fov": start.fov_y,
    }
    command = [sys.executable, __file__, "--scripted-client", url, json.dumps(view)]
    return subprocess.Popen(command + (["--orbit"] if orbit else []))


def train(config, run_dir: Path, steps: int, mode: str, client: str) -> dict | None:
    """Train `steps` steps; mode "off", "idle" (viewer, no client), "watch" (a client, still
    camera: a live frame per `viewer.refresh_interval`) or "orbit" (a frame always due).
    client: "script" (`scripted_client`) or "chromium"."""
    prepare_run_dir(run_dir, config, resume=False, overwrite=True)
    trainer = Trainer(config, run_dir, echo=lambda _: None)
    viewer = driver = process = None
    polled = [0.0]  # seconds in the viewer's step hook
    if mode != "off":
        viewer = Viewer(trainer, training=True, echo=lambda _: None)
        if mode in ("watch", "orbit"):
            if client == "script":
                process = open_script_client(viewer.url, trainer, orbit=mode == "orbit")
            else:
                driver = open_browser(viewer.url, run_dir)
                if driver is None:
                    viewer.close()
                    return None
            deadline = time.monotonic() + 120
            while viewer.frames == 0 and time.monotonic() < deadline:
                viewer.poll()  # serve the first frame before timing starts
                time.sleep(0.05)
            if viewer.frames == 0:
                raise RuntimeError(f"no frame reached the {client} client in 120 s")
            # the browser is orbited by the viewer; the scripted client moves its own camera
            viewer.orbit_widget.value = mode == "orbit" and client == "chromium"

        viewer.rendered_seconds, viewer.frames = 0.0, 0
    # per step: (seconds from the end of the previous hook to this one, a frame in the previous)
    steps_seen: list[tuple[float, bool]] = []
    last = {"end": None, "frame": False}

    def hook(trainer, stats):
        began = time.perf_counter()
        if last["end"] is not None:
            steps_seen.append((began - last["end"], last["frame"]))
        frames = viewer.frames if viewer is not None else 0
        paused = viewer.poll(trainer, stats) if viewer is not None else 0.0
        last["end"] = time.perf_counter()
        last["frame"] = viewer is not None and viewer.frames > frames
        polled[0] += last["end"] - began
        return paused

    trainer.step_hooks.append(hook)
    trainer.apply_schedules(0)  # warm up outside the timing (first extraction, allocations)
    begin, cpu = time.perf_counter(), time.process_time()
    trainer.run(stop_at=steps)
    seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu
    result = {"mode": mode, "steps_per_second": steps / seconds, "cpu_per_step": cpu / steps}
    after = [t for t, frame in steps_seen if frame]
    other = sorted(t for t, frame in steps_seen if not frame)
    result["step_ms"] = 1e3 * statistics.mean(t for t, _ in steps_seen)
    result["after_frame_ms"] = 1e3 * statistics.mean(after) if after else float("nan")
    result["other_ms"] = 1e3 * statistics.mean(other)
    result["other_median_ms"] = 1e3 * statistics.median(other)
    if viewer is not None:
        result["frames"] = viewer.frames
        result["render_share"] = viewer.rendered_seconds / max(seconds - polled[0], 1e-9)
        result["hook_share"] = polled[0] / max(seconds - polled[0], 1e-9)
        viewer.close()
    if driver is not None:
        driver.quit()
    if process is not None:
        process.wait(timeout=30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("off", "idle", "watch", "orbit"),
        default=["off", "idle", "watch", "orbit"],
        help="the first one is the baseline",
    )
    parser.add_argument("--client", choices=("script", "chromium"), default="script")
    parser.add_argument(
        "--scripted-client", nargs=2, metavar=("URL", "VIEW"), help=argparse.SUPPRESS
    )
    parser.add_argument("--orbit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.scripted_client:  # the child process of open_script_client
        scripted_client(args.scripted_client[0], json.loads(args.scripted_client[1]), args.orbit)
        return
    overrides = [
        f"train.steps={args.steps + 1000}",  # stop_at ends the run before any evaluation
        "train.eval_interval=0",
        "train.checkpoint_interval=0",
        "train.log_interval=1000000",
        f"train.device={args.device}",
        *args.overrides,
    ]
    config = load_config(args.experiment, overrides)
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):  # interleaved, best of N: other load on the machine
            for mode in args.modes:
                row = train(config, Path(folder) / mode, args.steps, mode, args.client)
                if row is None:
                    print(f"{mode}: skipped (selenium, chromium or chromedriver missing)")
                    continue
                print(json.dumps(row), flush=True)
                if mode not in best or row["steps_per_second"] > best[mode]["steps_per_second"]:
                    best[mode] = row
    rows = list(best.values())
    base = rows[0]["steps_per_second"]
    print(
        f"{args.experiment}, {args.steps} steps (best of {args.repeats}), {args.device}, "
        f"{args.client} client"
    )
    print(config.viewer)
    print(
        f"{'viewer':8s} {'steps/s':>8s} {'slowdown':>9s} {'CPU s/step':>11s} {'frames':>7s} "
        f"{'render share':>13s} {'hook share':>11s} {'step ms':>8s} {'after frame':>12s} "
        f"{'other steps':>12s}"
    )
    for row in rows:
        slowdown = base / row["steps_per_second"] - 1
        share, hook = row.get("render_share"), row.get("hook_share")
        print(
            f"{row['mode']:8s} {row['steps_per_second']:8.2f} {slowdown * 100:8.1f}% "
            f"{row['cpu_per_step']:11.3f} {row.get('frames', '-'):>7} "
            f"{'-' if share is None else f'{share * 100:.1f}%':>13s} "
            f"{'-' if hook is None else f'{hook * 100:.1f}%':>11s} {row['step_ms']:8.2f} "
            f"{row['after_frame_ms']:12.2f} {row['other_ms']:12.2f}"
        )


if __name__ == "__main__":
    main()
