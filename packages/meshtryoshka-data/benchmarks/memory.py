"""Host memory of a loaded COLMAP scene, measured on a synthetic stand-in of a real one.

Writes a synthetic COLMAP scene with the image count and size of a Mip-NeRF 360 scene at the
chosen resolution (default: bicycle at images_4, 194 images of 1237x822), loads it on the
CPU, and prints the uint8 image tensor size, the formula, and the process's resident-memory
growth (read from /proc/self/status, so Linux only).

    python benchmarks/memory.py                       # bicycle, images_4
    python benchmarks/memory.py --images 311 --width 1557 --height 1038   # room, images_2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from meshtryoshka_data import load_colmap, write_colmap_scene


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=194)
    parser.add_argument("--width", type=int, default=1237)
    parser.add_argument("--height", type=int, default=822)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_colmap_scene(
            Path(folder) / "scene",
            n_images=args.images,
            size=(args.width, args.height),
            downscales=(),
            sparse_formats=("bin",),
            n_points=1000,
        )
        written = time.perf_counter() - start
        before = resident_bytes()
        start = time.perf_counter()
        dataset = load_colmap(Path(folder) / "scene")
        loaded = time.perf_counter() - start
        after = resident_bytes()
    n, h, w, c = dataset.images.shape
    tensor = dataset.images.numel() * dataset.images.element_size()
    print(
        f"scene: {n} images of {w}x{h}x{c} (written in {written:.1f} s, loaded in {loaded:.1f} s)"
    )
    print(
        f"images uint8 tensor: N*H*W*C = {n}*{h}*{w}*{c} = {tensor:,} bytes "
        f"= {tensor / 2**20:.1f} MiB"
    )
    print(f"as float32 it would be {4 * tensor / 2**30:.2f} GiB")
    print(f"resident memory growth while loading: {(after - before) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
