"""Camera poses for a folder of photos: structure from motion with pycolmap, written as a dataset.

:func:`images_to_dataset` runs COLMAP's pipeline through pycolmap (the optional extra
``meshtryoshka-data[colmap]``): SIFT features, matching (exhaustive, or sequential for video
frames), incremental mapping; then it undistorts every registered photo into a pinhole camera
of the same size with :class:`~meshtryoshka_data.Undistorter` (the policy the loaders use)
and writes the Mip-NeRF 360 layout::

    OUT_DIR/images/            the undistorted photos (copied unchanged for pinhole cameras)
    OUT_DIR/images_2/ images_4/  box-filtered to 1/2 and 1/4 of the size
    OUT_DIR/sparse/0/          cameras (PINHOLE), images (poses, keypoints), points3D (binary)
    OUT_DIR/from_images.json   what was done and how well: registered images, reprojection
                               error, points, the estimated lens, timings, versions

which :func:`~meshtryoshka_data.load_colmap` and ``meshtryoshka-train --experiment mip360``
read as they are. OUT_DIR is built in a temporary folder beside it and renamed into place at
the end, so a failure or Ctrl-C leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .colmap import ColmapCamera, ColmapImage, ColmapModel, read_colmap_model, write_colmap_model
from .distortion import Undistorter, colmap_camera_model
from .errors import DatasetError
from .images import read_image, read_image_info

__all__ = [
    "CAMERA_MODELS",
    "IMAGE_SUFFIXES",
    "MATCHING",
    "FromImagesReport",
    "ReconstructionError",
    "images_to_dataset",
]

MATCHING = ("auto", "exhaustive", "sequential")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: COLMAP's parameter names per model, for the report
_PARAMETERS = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
    "OPENCV_FISHEYE": ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"),
}
#: the lens models the mapper can estimate (the output is always PINHOLE)
CAMERA_MODELS = tuple(_PARAMETERS)
_VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mts")
#: the pycolmap versions this module is written for (the extra pins the same range)
PYCOLMAP_REQUIREMENT = "pycolmap>=4.0,<5"
_INSTALL_HINT = f"pip install 'meshtryoshka-data[colmap]' (or pip install '{PYCOLMAP_REQUIREMENT}')"


class ReconstructionError(RuntimeError):
    """Structure from motion did not register enough photos; the message says what to try.

    Attributes:
        report: what was reached (:class:`FromImagesReport`), or None when nothing was.
    """

    def __init__(self, message: str, report: FromImagesReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass
class FromImagesReport:
    """What :func:`images_to_dataset` did, as printed and written to ``from_images.json``.

    Attributes:
        out_dir: the dataset folder.
        n_images: photos given; n_registered: photos with a recovered pose.
        unregistered: names of the photos left out.
        n_models: separate reconstructions COLMAP found (1 when every photo connects).
        mean_reprojection_error: pixels, over every observation of the chosen model.
        n_points: sparse 3D points; mean_track_length: observations per point.
        cameras: the estimated camera(s): ``{"model", "width", "height", "params"}`` with
            COLMAP's parameters of that model (e.g. SIMPLE_RADIAL: f, cx, cy, k).
        undistorted: the PINHOLE camera(s) of the images written, in the same order:
            ``{"width", "height", "params": [fx, fy, cx, cy], "field_of_view": [x, y],
            "copied": bool}`` (the fraction of the field of view kept; ``copied``: the
            camera had no distortion and its photos were copied unchanged).
        matching: ``"exhaustive"`` or ``"sequential"``.
        seconds: wall time per stage.
        versions: pycolmap and COLMAP.
    """

    out_dir: Path
    n_images: int = 0
    n_registered: int = 0
    unregistered: list[str] = field(default_factory=list)
    n_models: int = 0
    mean_reprojection_error: float = math.nan
    n_points: int = 0
    mean_track_length: float = math.nan
    cameras: list[dict] = field(default_factory=list)
    undistorted: list[dict] = field(default_factory=list)
    matching: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        models = "1 model" if self.n_models == 1 else f"{self.n_models} models, the largest kept"
        lines = [
            f"registered:   {self.n_registered} of {self.n_images} images ({models})",
            f"reprojection: {self.mean_reprojection_error:.3f} px mean error",
            f"points:       {self.n_points} (mean track length {self.mean_track_length:.1f})",
        ]
        for camera, pinhole in zip(self.cameras, self.undistorted, strict=False):
            lines.append(f"camera:       {_describe(camera)}")
            kept = pinhole["field_of_view"]
            lines.append(
                f"undistorted:  {_describe({'model': 'PINHOLE', **pinhole})}"
                + (
                    " (no distortion: photos copied unchanged)"
                    if pinhole["copied"]
                    else f" (keeps {kept[0]:.0%} x {kept[1]:.0%} of the field of view)"
                )
            )
        if self.unregistered:
            shown = ", ".join(self.unregistered[:8])
            more = f" and {len(self.unregistered) - 8} more" if len(self.unregistered) > 8 else ""
            lines.append(f"left out:     {shown}{more} (no pose found)")
        total = sum(self.seconds.values())
        lines.append(f"time:         {total:.1f} s")
        return "\n".join(lines)

    def to_json(self) -> dict:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data


def images_to_dataset(
    photos_dir: str | Path,
    out_dir: str | Path,
    *,
    matching: str = "auto",
    camera_model: str = "SIMPLE_RADIAL",
    single_camera: bool = True,
    max_image_size: int = 3200,
    downscales: tuple[int, ...] = (2, 4),
    min_registered: float = 0.5,
    exhaustive_limit: int = 300,
    overwrite: bool = False,
    num_threads: int = -1,
    seed: int = 0,
    verbose: bool = False,
    echo: Callable[[str], None] = print,
) -> FromImagesReport:
    """Recover camera poses for the photos in ``photos_dir`` and write a COLMAP dataset.

    Args:
        photos_dir: a folder of photos (``.jpg``, ``.png``, ...; its top level only), all of
            one size. Video frames must be extracted first (see the package README).
        out_dir: the dataset folder to create (it must not exist, unless ``overwrite``).
        matching: ``"exhaustive"`` (every pair; unordered photos), ``"sequential"`` (each
            photo with the next ones by file name; video frames), or ``"auto"``:
            exhaustive up to ``exhaustive_limit`` photos, sequential above.
        camera_model: the lens model COLMAP estimates, one of :data:`CAMERA_MODELS`; the
            default ``SIMPLE_RADIAL`` suits most photos, ``OPENCV`` wide-angle lenses,
            ``OPENCV_FISHEYE`` fisheyes, ``SIMPLE_PINHOLE`` rendered images.
        single_camera: one camera (lens and zoom) for every photo; False estimates one per
            photo.
        max_image_size: photos are shrunk to this longest side for feature extraction only.
        downscales: which ``images_<d>`` folders to write.
        min_registered: the fraction of the photos that must get a pose (and at least 3).
        exhaustive_limit: see ``matching``.
        overwrite: replace an existing ``out_dir`` (only once the new one is complete).
        num_threads: CPU threads for COLMAP (-1: all).
        seed: COLMAP's random seed (results still vary a little with threading).
        verbose: also show COLMAP's own log.
        echo: where progress lines go.

    Returns:
        The :class:`FromImagesReport` (also written to ``out_dir/from_images.json``).

    Raises:
        ImportError: pycolmap is missing or too old (the message says what to install).
        DatasetError: a bad photo folder (missing, empty, videos only, unreadable photos,
            mixed sizes) or an ``out_dir`` that exists.
        ValueError: a bad option (named).
        ReconstructionError: too few photos registered; nothing is written.
    """
    photos = Path(photos_dir)
    out = Path(out_dir)
    _check_options(matching, camera_model, max_image_size, downscales, min_registered, num_threads)
    names = _list_photos(photos)
    _check_out_dir(photos, out, overwrite)
    pycolmap = _import_pycolmap()
    report = FromImagesReport(out_dir=out, n_images=len(names))
    report.versions = {"pycolmap": pycolmap.__version__, "colmap": str(pycolmap.COLMAP_version)}
    if matching == "auto":
        matching = "exhaustive" if len(names) <= exhaustive_limit else "sequential"
        if matching == "sequential":
            echo(
                f"{len(names)} photos > {exhaustive_limit}: sequential matching (file-name order "
                "must follow the camera path, as video frames do; --matching exhaustive for "
                "unordered photos)"
            )
    report.matching = matching

    new_parent = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    saved_log_level = pycolmap.logging.minloglevel
    done = False
    try:
        pycolmap.logging.minloglevel = 0 if verbose else 2  # 2: COLMAP's errors only
        model = _reconstruct(
            pycolmap,
            photos,
            names,
            work,
            report,
            echo,
            matching=matching,
            camera_model=camera_model,
            single_camera=single_camera,
            max_image_size=max_image_size,
            min_registered=min_registered,
            num_threads=num_threads,
            seed=seed,
        )
        dataset = work / "dataset"
        _write_dataset(photos, model, dataset, downscales, report, echo)
        (dataset / "from_images.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        if out.exists():  # overwrite: swap only now that the new dataset is complete
            out.rename(work / "replaced")
        dataset.rename(out)
        done = True
    finally:
        pycolmap.logging.minloglevel = saved_log_level
        shutil.rmtree(work, ignore_errors=True)
        if new_parent and not done and not any(out.parent.iterdir()):
            out.parent.rmdir()  # the folder this call made for OUT_DIR
    return report


# --- checks ---------------------------------------------------------------------------------


def _check_options(matching, camera_model, max_image_size, downscales, min_registered, threads):
    if matching not in MATCHING:
        raise ValueError(f"matching must be one of {', '.join(MATCHING)}, got {matching!r}")
    if camera_model not in CAMERA_MODELS:
        raise ValueError(
            f"camera_model must be one of {', '.join(CAMERA_MODELS)}, got {camera_model!r}"
        )
    if not isinstance(max_image_size, int) or max_image_size < 100:
        raise ValueError(f"max_image_size must be an integer >= 100, got {max_image_size!r}")
    if any(not isinstance(d, int) or d < 2 for d in downscales):
        raise ValueError(f"downscales must be integers >= 2, got {list(downscales)}")
    if not 0 < min_registered <= 1:
        raise ValueError(f"min_registered must be a fraction in (0, 1], got {min_registered!r}")
    if not isinstance(threads, int) or threads == 0 or threads < -1:
        raise ValueError(f"num_threads must be -1 (all) or >= 1, got {threads!r}")


def _list_photos(photos: Path) -> list[str]:
    """Sorted photo file names at the top of ``photos``, checked to be readable and one size."""
    if not photos.is_dir():
        raise DatasetError(photos, "photo folder not found")
    files = sorted(p for p in photos.iterdir() if p.is_file())
    names = [p.name for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p.name for p in files if p.suffix.lower() in _VIDEO_SUFFIXES]
    if not names and videos:
        raise DatasetError(
            photos,
            f"holds video files ({', '.join(videos[:3])}) but no photos: extract frames first, "
            f"e.g. ffmpeg -i {videos[0]} -vf fps=2 -q:v 2 frames/frame_%05d.jpg, then run "
            "from-images on frames/ with --matching sequential",
        )
    if len(names) < 3:
        raise DatasetError(
            photos,
            f"needs at least 3 photos, found {len(names)} (files ending in "
            f"{', '.join(IMAGE_SUFFIXES)}, upper or lower case)",
        )
    first = None
    for name in names:
        width, height, _ = read_image_info(photos / name)  # DatasetError if unreadable
        if first is None:
            first = (name, width, height)
        elif (width, height) != first[1:]:
            raise DatasetError(
                photos / name,
                f"is {width}x{height} but {first[0]} is {first[1]}x{first[2]}: all photos "
                "must have one size (rotate or crop them alike, or leave the odd ones out)",
            )
    return names


def _check_out_dir(photos: Path, out: Path, overwrite: bool) -> None:
    if out.resolve() == photos.resolve():
        raise DatasetError(out, "OUT_DIR must differ from PHOTOS_DIR")
    if out.exists() and not overwrite:
        raise DatasetError(out, "already exists: choose a new OUT_DIR or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise DatasetError(out, "exists and is not a folder")


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise ImportError(f"from-images needs pycolmap: {_INSTALL_HINT}") from None
    needed = ("FeatureExtractionOptions", "FeatureMatchingOptions", "IncrementalPipelineOptions")
    if not all(hasattr(pycolmap, name) for name in needed):
        version = getattr(pycolmap, "__version__", "unknown")
        raise ImportError(f"pycolmap {version} is too old for from-images: {_INSTALL_HINT}")
    return pycolmap


# --- structure from motion ------------------------------------------------------------------


class _Stage:
    """Times one stage into ``report.seconds`` and prints its start and end."""

    def __init__(self, report: FromImagesReport, echo, name: str, text: str):
        self.report, self.echo, self.name, self.text = report, echo, name, text

    def __enter__(self):
        self.start = time.perf_counter()
        self.echo(self.text)
        return self

    def __exit__(self, *exc):
        self.report.seconds[self.name] = round(time.perf_counter() - self.start, 2)
        if exc[0] is None:
            self.echo(f"      done in {self.report.seconds[self.name]:.1f} s")


def _reconstruct(pycolmap, photos, names, work, report, echo, **options) -> ColmapModel:
    """Features, matches and the incremental mapper; returns the largest model (distorted)."""
    database = work / "database.db"
    threads = options["num_threads"]
    pycolmap.set_random_seed(options["seed"])
    n = len(names)
    with _Stage(report, echo, "features", f"[1/4] features: SIFT in {n} photos"):
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = options["camera_model"]
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = threads
        extraction.max_image_size = options["max_image_size"]
        mode = (
            pycolmap.CameraMode.SINGLE
            if options["single_camera"]
            else pycolmap.CameraMode.PER_IMAGE
        )
        pycolmap.extract_features(
            database,
            photos,
            image_names=names,
            camera_mode=mode,
            reader_options=reader,
            extraction_options=extraction,
        )
    pairs = n * (n - 1) // 2 if options["matching"] == "exhaustive" else None
    text = f"{pairs} pairs" if pairs else "each photo with the next 10 by name and 2^k ahead"
    with _Stage(report, echo, "matching", f"[2/4] matching: {options['matching']}, {text}"):
        matcher = pycolmap.FeatureMatchingOptions()
        matcher.num_threads = threads
        if options["matching"] == "exhaustive":
            pycolmap.match_exhaustive(database, matching_options=matcher)
        else:
            pycolmap.match_sequential(database, matching_options=matcher)
    with _Stage(report, echo, "mapping", f"[3/4] mapping: incremental, {n} photos"):
        mapper = pycolmap.IncrementalPipelineOptions()
        mapper.num_threads = threads
        mapper.random_seed = options["seed"]
        progress = _MapperProgress(n, echo)
        models = pycolmap.incremental_mapping(
            database,
            photos,
            work / "sparse",
            options=mapper,
            initial_image_pair_callback=progress.initial_pair,
            next_image_callback=progress.next_image,
        )
    report.n_models = len(models)
    if not models:
        raise ReconstructionError(
            f"no reconstruction: COLMAP found no pair of the {n} photos to start from. "
            + _advice(options["matching"]),
            report,
        )
    best = max(models.values(), key=lambda model: model.num_reg_images())
    report.n_registered = best.num_reg_images()
    report.mean_reprojection_error = float(best.compute_mean_reprojection_error())
    report.n_points = int(best.num_points3D())
    report.mean_track_length = float(best.compute_mean_track_length())
    registered = {best.image(image_id).name for image_id in best.reg_image_ids()}
    report.unregistered = [name for name in names if name not in registered]
    needed = max(3, math.ceil(options["min_registered"] * n))
    if report.n_registered < needed:
        others = sorted((m.num_reg_images() for m in models.values()), reverse=True)[1:]
        split = (
            f" (they split into {len(models)} separate models; the others hold "
            f"{', '.join(map(str, others))})"
            if others
            else ""
        )
        raise ReconstructionError(
            f"only {report.n_registered} of {n} photos got a pose{split}; at least {needed} "
            f"are needed (--min-registered {options['min_registered']}). "
            + _advice(options["matching"]),
            report,
        )
    (work / "chosen").mkdir()
    best.write(work / "chosen")
    model = read_colmap_model(work / "chosen", keep_points2d=True)
    images = {i: image for i, image in model.images.items() if image.name in registered}
    return ColmapModel(model.cameras, images, model.points)


def _advice(matching: str) -> str:
    """What to try when too few photos register."""
    exhaustive = (
        "--matching exhaustive if the file names do not follow the camera path, "
        if matching == "sequential"
        else ""
    )
    return (
        "Try: photos that overlap more (each scene point in 3 or more photos, 60-80% overlap "
        "between neighbours), a static, textured scene under even light (no blur, no plain "
        f"white walls, no reflections), {exhaustive}--camera-model OPENCV for wide-angle lenses "
        "(OPENCV_FISHEYE for fisheyes), a larger --max-image-size for small details, or more "
        "photos."
    )


class _MapperProgress:
    """Prints the mapper's progress: the start, then about ten lines of registrations.

    COLMAP calls back once when it has chosen the two photos it starts from (again for each
    new model it starts) and once per photo it registers after those.
    """

    def __init__(self, total: int, echo):
        self.total, self.echo, self.models, self.count = total, echo, 0, 0
        self.step = max(1, total // 10)

    def initial_pair(self):
        self.models += 1
        self.count = 2
        model = "" if self.models == 1 else f" (model {self.models})"
        self.echo(f"      started from an initial pair of photos{model}")

    def next_image(self):
        self.count += 1
        if self.count % self.step == 0 or self.count == self.total:
            self.echo(f"      registered {min(self.count, self.total)} of {self.total}")


# --- output ---------------------------------------------------------------------------------


def _write_dataset(photos, model: ColmapModel, dataset: Path, downscales, report, echo) -> None:
    """Undistort the registered photos, write images/, images_<d>/ and sparse/0."""
    used = sorted({image.camera_id for image in model.images.values()})
    undistorters, cameras = {}, {}
    for camera_id in used:
        camera = model.cameras[camera_id]
        intrinsics, lens = colmap_camera_model(camera.model, camera.params)
        estimated = {
            "model": camera.model,
            "width": camera.width,
            "height": camera.height,
            "params": list(camera.params),
        }
        report.cameras.append(estimated)
        text = _describe(estimated)
        if lens is not None and not lens.is_identity:
            try:
                undistorter = Undistorter(lens, intrinsics, (camera.width, camera.height))
            except ValueError as error:
                raise ReconstructionError(
                    f"the lens estimated for camera {camera_id} is implausible ({text}): "
                    f"{error}. Try a model with fewer coefficients (--camera-model "
                    "SIMPLE_RADIAL or RADIAL) or more photos.",
                    report,
                ) from None
            undistorters[camera_id] = undistorter
            intrinsics = undistorter.intrinsics
        fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
        cameras[camera_id] = ColmapCamera(
            camera_id, "PINHOLE", camera.width, camera.height, (fx, fy, cx, cy)
        )
        kept = undistorters[camera_id].field_of_view if camera_id in undistorters else (1, 1)
        report.undistorted.append(
            {
                "width": camera.width,
                "height": camera.height,
                "params": [float(v) for v in (fx, fy, cx, cy)],
                "field_of_view": [float(kept[0]), float(kept[1])],
                "copied": camera_id not in undistorters,
            }
        )
    images = {
        image_id: _undistorted_keypoints(image, model.cameras[image.camera_id], cameras)
        for image_id, image in model.images.items()
    }
    text = f"[4/4] writing {len(images)} images (undistorted into PINHOLE cameras), "
    text += ", ".join(f"images_{d}/" for d in downscales) + " and sparse/0"
    with _Stage(report, echo, "writing", text):
        folders = {1: dataset / "images", **{d: dataset / f"images_{d}" for d in downscales}}
        for folder in folders.values():
            folder.mkdir(parents=True)
        for image in sorted(model.images.values(), key=lambda image: image.name):
            source = photos / image.name
            target = folders[1] / image.name
            undistorter = undistorters.get(image.camera_id)
            if undistorter is None:
                shutil.copyfile(source, target)
                pixels = read_image(source)
            else:
                pixels = undistorter(read_image(source))
                _save(pixels, target)
            height, width = pixels.shape[:2]
            full = Image.fromarray(pixels)
            for d in downscales:
                size = (max(1, round(width / d)), max(1, round(height / d)))
                _save(np.asarray(full.resize(size, Image.Resampling.BOX)), folders[d] / image.name)
        write_colmap_model(
            dataset / "sparse" / "0", ColmapModel(cameras, images, model.points), file_format="bin"
        )


def _describe(camera: dict) -> str:
    """``"SIMPLE_RADIAL 320x240: f 439.8, cx 160, cy 120, k -0.0241"``."""
    names = _PARAMETERS[camera["model"]]
    values = ", ".join(
        f"{name} {value:.4g}" for name, value in zip(names, camera["params"], strict=True)
    )
    return f"{camera['model']} {camera['width']}x{camera['height']}: {values}"


def _undistorted_keypoints(image: ColmapImage, camera: ColmapCamera, cameras) -> ColmapImage:
    """``image`` with its keypoints moved into the pinhole camera of ``cameras``."""
    intrinsics, lens = colmap_camera_model(camera.model, camera.params)
    points = image.points2d
    if lens is not None and len(points):
        ideal = lens.undistort((points - intrinsics[:2, 2]) / np.diag(intrinsics)[:2])
        fx, fy, cx, cy = cameras[image.camera_id].params
        points = ideal * [fx, fy] + [cx, cy]  # NaN for the rare keypoint the inverse misses
    return ColmapImage(
        image.image_id,
        image.qvec,
        image.tvec,
        image.camera_id,
        image.name,
        np.asarray(points, dtype=np.float64),
        image.point3d_ids,
    )


def _save(pixels: np.ndarray, path: Path) -> None:
    """Write uint8 [H, W, 3|4] in the format of ``path``'s suffix (JPEG at quality 95)."""
    image = Image.fromarray(pixels)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, quality=95, subsampling=0)
    else:
        image.save(path)
