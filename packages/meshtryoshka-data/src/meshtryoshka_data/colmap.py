"""COLMAP sparse models (``cameras``, ``images``, ``points3D``) in the binary and text formats.

Written from COLMAP's documented output format (https://colmap.github.io/format.html):
little-endian binary; ``*_id`` values are unordered identifiers. Camera poses are
world-to-camera, rotation as a unit quaternion ``(w, x, y, z)`` plus a translation, in the
OpenCV camera convention (+x right, +y down, +z forward). Pixel coordinates put the centre
of the top-left pixel at ``(0.5, 0.5)``, the same convention as the rest of Meshtryoshka, so
COLMAP's principal point is used as is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = [
    "CAMERA_MODELS",
    "ColmapCamera",
    "ColmapImage",
    "ColmapModel",
    "ColmapPoints",
    "read_colmap_model",
    "write_colmap_model",
]

# name -> (model id, number of parameters), from COLMAP's camera model list.
CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3),  # f, cx, cy
    "PINHOLE": (1, 4),  # fx, fy, cx, cy
    "SIMPLE_RADIAL": (2, 4),
    "RADIAL": (3, 5),
    "OPENCV": (4, 8),
    "OPENCV_FISHEYE": (5, 8),
    "FULL_OPENCV": (6, 12),
    "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4),
    "RADIAL_FISHEYE": (9, 5),
    "THIN_PRISM_FISHEYE": (10, 12),
    "RAD_TAN_THIN_PRISM_FISHEYE": (11, 16),
}
_MODEL_BY_ID = {model_id: name for name, (model_id, _) in CAMERA_MODELS.items()}


@dataclass(frozen=True)
class ColmapCamera:
    """One COLMAP camera: ``model`` name, image ``width``/``height`` in pixels, ``params``."""

    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass(frozen=True)
class ColmapImage:
    """One registered image: world-to-camera pose ``qvec`` (w, x, y, z) and ``tvec``.

    ``points2d`` (float64 ``[K, 2]``) and ``point3d_ids`` (int64 ``[K]``, -1 when not
    triangulated) are only filled when the model was read with ``keep_points2d=True``.
    """

    image_id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    points2d: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class ColmapPoints:
    """The sparse point cloud: ``ids`` int64 [P], ``xyz`` float64 [P, 3], ``rgb`` uint8 [P, 3],
    ``error`` float64 [P]; ``tracks`` holds one int64 ``[L, 2]`` array of
    ``(image_id, point2d_idx)`` per point (empty unless written or read with tracks)."""

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray
    tracks: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class ColmapModel:
    """A whole sparse model: cameras and images keyed by id, and the points."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints


# ----------------------------------------------------------------------------- reading


def read_colmap_model(
    folder: str | Path, *, file_format: str = "auto", keep_points2d: bool = False
) -> ColmapModel:
    """Read ``cameras``, ``images`` and ``points3D`` from a COLMAP model folder.

    Args:
        folder: e.g. ``scene/sparse/0``.
        file_format: ``"bin"``, ``"txt"``, or ``"auto"`` (binary when ``cameras.bin`` exists).
        keep_points2d: also keep every image's 2D keypoints and every point's track
            (off by default: real models hold millions of them and the loaders need none).

    Raises:
        DatasetError: a file is missing, truncated, malformed or names an unknown camera model.
    """
    folder = Path(folder)
    if file_format == "auto":
        file_format = "bin" if (folder / "cameras.bin").exists() else "txt"
    if file_format not in ("bin", "txt"):
        raise ValueError(f"file_format must be 'auto', 'bin' or 'txt', got {file_format!r}")
    paths = {name: folder / f"{name}.{file_format}" for name in ("cameras", "images", "points3D")}
    for path in paths.values():
        if not path.is_file():
            raise DatasetError(path, "missing: a COLMAP model needs cameras, images and points3D")
    if file_format == "bin":
        cameras = _read_cameras_bin(paths["cameras"])
        images = _read_images_bin(paths["images"], keep_points2d)
        points = _read_points_bin(paths["points3D"], keep_points2d)
    else:
        cameras = _read_cameras_txt(paths["cameras"])
        images = _read_images_txt(paths["images"], keep_points2d)
        points = _read_points_txt(paths["points3D"], keep_points2d)
    for image in images.values():
        if image.camera_id not in cameras:
            raise DatasetError(
                paths["images"],
                f"image {image.name!r} refers to camera {image.camera_id}, "
                f"which is not in {paths['cameras'].name}",
            )
    return ColmapModel(cameras, images, points)


class _BinaryReader:
    """Bounds-checked little-endian reads from one file's bytes."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0

    def read(self, fmt: str, what: str):
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise DatasetError(
                self.path,
                f"truncated: needs {size} more bytes for {what} at byte {self.offset}, "
                f"but the file has {len(self.data)} bytes",
            )
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def skip(self, size: int, what: str):
        if self.offset + size > len(self.data):
            raise DatasetError(
                self.path,
                f"truncated: needs {size} more bytes for {what} at byte {self.offset}, "
                f"but the file has {len(self.data)} bytes",
            )
        start = self.offset
        self.offset += size
        return self.data[start : self.offset]

    def read_name(self, what: str) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise DatasetError(self.path, f"truncated: {what} has no terminating NUL byte")
        raw = self.data[self.offset : end]
        self.offset = end + 1
        return raw.decode("utf-8", errors="replace")

    def finish(self):
        if self.offset != len(self.data):
            raise DatasetError(
                self.path,
                f"{len(self.data) - self.offset} unexpected bytes after the last record "
                "(the record count and the file size disagree)",
            )


def _checked_camera(path: Path, camera_id: int, model: str, width, height, params) -> ColmapCamera:
    if width <= 0 or height <= 0:
        raise DatasetError(path, f"camera {camera_id} has invalid size {width}x{height}")
    return ColmapCamera(camera_id, model, int(width), int(height), tuple(float(p) for p in params))


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    reader = _BinaryReader(path)
    (count,) = reader.read("Q", "the camera count")
    cameras = {}
    for index in range(count):
        what = f"camera {index + 1} of {count}"
        camera_id, model_id, width, height = reader.read("iiQQ", what)
        if model_id not in _MODEL_BY_ID:
            raise DatasetError(
                path,
                f"camera {camera_id} has unknown camera model id {model_id} "
                f"(known ids: 0-{len(CAMERA_MODELS) - 1})",
            )
        model = _MODEL_BY_ID[model_id]
        params = reader.read(f"{CAMERA_MODELS[model][1]}d", f"the parameters of {what}")
        cameras[camera_id] = _checked_camera(path, camera_id, model, width, height, params)
    reader.finish()
    return cameras


def _read_images_bin(path: Path, keep_points2d: bool) -> dict[int, ColmapImage]:
    reader = _BinaryReader(path)
    (count,) = reader.read("Q", "the image count")
    images = {}
    for index in range(count):
        what = f"image {index + 1} of {count}"
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.read("i7di", what)
        name = reader.read_name(f"the name of {what}")
        (n_points,) = reader.read("Q", f"the keypoint count of {what}")
        raw = reader.skip(24 * n_points, f"the keypoints of {what}")
        extra = {}
        if keep_points2d:
            records = np.frombuffer(raw, dtype=np.dtype([("xy", "<f8", 2), ("id", "<i8")]))
            extra = {"points2d": records["xy"].copy(), "point3d_ids": records["id"].copy()}
        qvec, tvec = np.array([qw, qx, qy, qz]), np.array([tx, ty, tz])
        images[image_id] = ColmapImage(image_id, qvec, tvec, camera_id, name, **extra)
    reader.finish()
    return images


def _read_points_bin(path: Path, keep_tracks: bool) -> ColmapPoints:
    reader = _BinaryReader(path)
    (count,) = reader.read("Q", "the point count")
    ids = np.zeros(count, dtype=np.int64)
    xyz = np.zeros((count, 3))
    rgb = np.zeros((count, 3), dtype=np.uint8)
    error = np.zeros(count)
    tracks = []
    for index in range(count):
        what = f"point {index + 1} of {count}"
        point_id, x, y, z, r, g, b, err, track_length = reader.read("Q3d3BdQ", what)
        raw = reader.skip(8 * track_length, f"the track of {what}")
        ids[index], xyz[index], rgb[index], error[index] = point_id, (x, y, z), (r, g, b), err
        if keep_tracks:
            tracks.append(np.frombuffer(raw, dtype="<i4").reshape(-1, 2).astype(np.int64))
    reader.finish()
    return ColmapPoints(ids, xyz, rgb, error, tracks)


def _text_records(path: Path) -> list[tuple[int, str]]:
    """(line number, line) for every line that is not a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(path, f"not a text file ({error})") from None
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if not line.lstrip().startswith("#")
    ]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, line in _text_records(path):
        if not line:
            continue
        tokens = line.split()
        if len(tokens) < 4:
            raise DatasetError(path, f"line {number}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS")
        model = tokens[1]
        if model not in CAMERA_MODELS:
            raise DatasetError(path, f"line {number}: unknown camera model {model!r}")
        n_params = CAMERA_MODELS[model][1]
        if len(tokens) != 4 + n_params:
            raise DatasetError(
                path,
                f"line {number}: model {model} needs {n_params} parameters, got {len(tokens) - 4}",
            )
        try:
            camera_id, width, height = int(tokens[0]), int(tokens[2]), int(tokens[3])
            params = [float(token) for token in tokens[4:]]
        except ValueError:
            raise DatasetError(path, f"line {number}: not a valid camera line: {line!r}") from None
        cameras[camera_id] = _checked_camera(path, camera_id, model, width, height, params)
    return cameras


def _read_images_txt(path: Path, keep_points2d: bool) -> dict[int, ColmapImage]:
    records = _text_records(path)
    images = {}
    index = 0
    while index < len(records):
        number, line = records[index]
        index += 1
        if not line:
            continue
        tokens = line.split()
        # The next line lists the keypoints (it may be empty, or missing at the end of file).
        points_line = records[index][1] if index < len(records) else ""
        index += 1
        if len(tokens) < 10:
            raise DatasetError(
                path, f"line {number}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"
            )
        try:
            image_id, camera_id = int(tokens[0]), int(tokens[8])
            values = [float(token) for token in tokens[1:8]]
            extra = {}
            if keep_points2d:
                flat = np.array(points_line.split(), dtype=np.float64).reshape(-1, 3)
                extra = {"points2d": flat[:, :2], "point3d_ids": flat[:, 2].astype(np.int64)}
        except ValueError:
            raise DatasetError(path, f"line {number}: not a valid image record: {line!r}") from None
        qvec, tvec = np.array(values[:4]), np.array(values[4:])
        name = " ".join(tokens[9:])
        images[image_id] = ColmapImage(image_id, qvec, tvec, camera_id, name, **extra)
    return images


def _read_points_txt(path: Path, keep_tracks: bool) -> ColmapPoints:
    ids, xyz, rgb, error, tracks = [], [], [], [], []
    for number, line in _text_records(path):
        if not line:
            continue
        tokens = line.split()
        if len(tokens) < 8 or (len(tokens) - 8) % 2:
            raise DatasetError(
                path, f"line {number}: expected POINT3D_ID X Y Z R G B ERROR TRACK[] pairs"
            )
        try:
            ids.append(int(tokens[0]))
            xyz.append([float(t) for t in tokens[1:4]])
            rgb.append([int(t) for t in tokens[4:7]])
            error.append(float(tokens[7]))
            if keep_tracks:
                tracks.append(np.array(tokens[8:], dtype=np.int64).reshape(-1, 2))
        except ValueError:
            raise DatasetError(path, f"line {number}: not a valid point record: {line!r}") from None
    return ColmapPoints(
        np.array(ids, dtype=np.int64),
        np.array(xyz, dtype=np.float64).reshape(-1, 3),
        np.clip(np.array(rgb, dtype=np.int64), 0, 255).astype(np.uint8).reshape(-1, 3),
        np.array(error, dtype=np.float64),
        tracks,
    )


# ----------------------------------------------------------------------------- writing


def write_colmap_model(folder: str | Path, model: ColmapModel, *, file_format: str = "bin") -> None:
    """Write ``cameras``, ``images`` and ``points3D`` in COLMAP's binary or text format.

    Keypoints and tracks are written as stored in ``model`` (they may be empty).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if file_format == "bin":
        _write_bin(folder, model)
    elif file_format == "txt":
        _write_txt(folder, model)
    else:
        raise ValueError(f"file_format must be 'bin' or 'txt', got {file_format!r}")


def _write_bin(folder: Path, model: ColmapModel) -> None:
    chunks = [struct.pack("<Q", len(model.cameras))]
    for camera in model.cameras.values():
        model_id = CAMERA_MODELS[camera.model][0]
        chunks.append(struct.pack("<iiQQ", camera.camera_id, model_id, camera.width, camera.height))
        chunks.append(struct.pack(f"<{len(camera.params)}d", *camera.params))
    (folder / "cameras.bin").write_bytes(b"".join(chunks))

    chunks = [struct.pack("<Q", len(model.images))]
    for image in model.images.values():
        chunks.append(
            struct.pack("<i7di", image.image_id, *image.qvec, *image.tvec, image.camera_id)
        )
        chunks.append(image.name.encode("utf-8") + b"\0")
        chunks.append(struct.pack("<Q", len(image.point3d_ids)))
        for (x, y), point_id in zip(image.points2d, image.point3d_ids, strict=True):
            chunks.append(struct.pack("<ddq", x, y, point_id))
    (folder / "images.bin").write_bytes(b"".join(chunks))

    points = model.points
    chunks = [struct.pack("<Q", len(points.ids))]
    for index in range(len(points.ids)):
        track = points.tracks[index] if points.tracks else np.zeros((0, 2), dtype=np.int64)
        chunks.append(
            struct.pack(
                "<Q3d3BdQ",
                int(points.ids[index]),
                *points.xyz[index],
                *(int(c) for c in points.rgb[index]),
                float(points.error[index]),
                len(track),
            )
        )
        chunks.append(np.asarray(track, dtype="<i4").tobytes())
    (folder / "points3D.bin").write_bytes(b"".join(chunks))


def _write_txt(folder: Path, model: ColmapModel) -> None:
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
    ]
    for camera in model.cameras.values():
        params = " ".join(repr(float(p)) for p in camera.params)
        lines.append(f"{camera.camera_id} {camera.model} {camera.width} {camera.height} {params}")
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")

    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
    ]
    for image in model.images.values():
        pose = " ".join(repr(float(v)) for v in (*image.qvec, *image.tvec))
        lines.append(f"{image.image_id} {pose} {image.camera_id} {image.name}")
        lines.append(
            " ".join(
                f"{x!r} {y!r} {int(i)}"
                for (x, y), i in zip(image.points2d.tolist(), image.point3d_ids, strict=True)
            )
        )
    (folder / "images.txt").write_text("\n".join(lines) + "\n")

    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
    ]
    points = model.points
    for index in range(len(points.ids)):
        x, y, z = (repr(float(v)) for v in points.xyz[index])
        r, g, b = (int(c) for c in points.rgb[index])
        track = points.tracks[index] if points.tracks else np.zeros((0, 2), dtype=np.int64)
        track_text = " ".join(f"{int(a)} {int(b_)}" for a, b_ in track)
        lines.append(
            f"{int(points.ids[index])} {x} {y} {z} {r} {g} {b} "
            f"{float(points.error[index])!r} {track_text}".rstrip()
        )
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")
