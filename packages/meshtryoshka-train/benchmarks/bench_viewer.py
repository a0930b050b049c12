"""How much the web viewer slows training: steps/s without it, with it idle, with a headless
browser watching, and with the browser's camera orbiting without pause (a frame always due).

    python benchmarks/bench_viewer.py [--steps 60] [--device cpu] [KEY=VALUE ...]

Trains the bundled demo scene (or any experiment with overrides) from the same seed for
--steps steps (no checkpoints, no evaluation) in each of the three ways, interleaved,
--repeats times, and prints the best run of each way. "render share" is
the viewer's render seconds over the training seconds: what `viewer.max_slowdown` caps.
"CPU s/step" is this process's CPU time per step. The browser runs on the same machine, so on
a small CPU-only machine its own (software WebGL) drawing competes with training for the cores:
steps/s then drops while this process's CPU time per step does not. Needs viser; the orbit row needs
selenium, Debian's chromium and chromium-driver (skipped without them).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from meshtryoshka_train.config import load_config
from meshtryoshka_train.trainer import Trainer, prepare_run_dir
from meshtryoshka_train.viewer import Viewer


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


def train(config, run_dir: Path, steps: int, mode: str) -> dict | None:
    """Train `steps` steps; mode "off", "idle" (viewer, no browser), "watch" (a browser, still
    camera: a live frame per `viewer.refresh_interval`) or "orbit" (a frame always due)."""
    prepare_run_dir(run_dir, config, resume=False, overwrite=True)
    trainer = Trainer(config, run_dir, echo=lambda _: None)
    viewer = driver = None
    if mode != "off":
        viewer = Viewer(trainer, training=True, echo=lambda _: None)
        if mode in ("watch", "orbit"):
            driver = open_browser(viewer.url, run_dir)
            if driver is None:
                viewer.close()
                return None
            deadline = time.monotonic() + 120
            while viewer.frames == 0 and time.monotonic() < deadline:
                viewer.poll()  # serve the first frame before timing starts
                time.sleep(0.05)
            viewer.orbit_widget.value = mode == "orbit"
        trainer.step_hooks.append(viewer.poll)
        viewer.rendered_seconds, viewer.frames = 0.0, 0
    trainer.apply_schedules(0)  # warm up outside the timing (first extraction, allocations)
    begin, cpu = time.perf_counter(), time.process_time()
    trainer.run(stop_at=steps)
    seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu
    result = {"mode": mode, "steps_per_second": steps / seconds, "cpu_per_step": cpu / steps}
    if viewer is not None:
        result["frames"] = viewer.frames
        result["render_share"] = viewer.rendered_seconds / max(
            seconds - viewer.rendered_seconds, 1e-9
        )
        viewer.close()
    if driver is not None:
        driver.quit()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
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
            for mode in ("off", "idle", "watch", "orbit"):
                row = train(config, Path(folder) / mode, args.steps, mode)
                if row is None:
                    print(f"{mode}: skipped (selenium, chromium or chromedriver missing)")
                elif mode not in best or row["steps_per_second"] > best[mode]["steps_per_second"]:
                    best[mode] = row
    rows = list(best.values())
    base = rows[0]["steps_per_second"]
    print(f"{args.experiment}, {args.steps} steps (best of {args.repeats}), {args.device}")
    print(config.viewer)
    print(
        f"{'viewer':8s} {'steps/s':>8s} {'slowdown':>9s} {'CPU s/step':>11s} {'frames':>7s} "
        f"{'render share':>13s}"
    )
    for row in rows:
        slowdown = base / row["steps_per_second"] - 1
        share = row.get("render_share")
        print(
            f"{row['mode']:8s} {row['steps_per_second']:8.2f} {slowdown * 100:8.1f}% "
            f"{row['cpu_per_step']:11.3f} {row.get('frames', '-'):>7} "
            f"{'-' if share is None else f'{share * 100:.1f}%':>13s}"
        )


if __name__ == "__main__":
    main()
