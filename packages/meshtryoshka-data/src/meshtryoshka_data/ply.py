"""Point clouds in PLY files: the vertex positions and colours, nothing else.

Reads the ASCII and binary (little- and big-endian) encodings as the PLY format defines them
(http://paulbourke.net/dataformats/ply/): the ``vertex`` element's ``x``, ``y``, ``z`` and, if
present, ``red``, ``green``, ``blue`` (integers 0-255, or floats in [0, 1]). Elements before
``vertex`` are skipped when their size is known (no list properties); faces and other elements
after it are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = ["read_ply_points", "write_ply_points"]

_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_ENCODINGS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


def read_ply_points(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The vertices of a PLY file: positions float64 ``[P, 3]`` and colours uint8 ``[P, 3]``
    (None when the file has no ``red``/``green``/``blue``).

    Raises:
        DatasetError: naming the file, when it is missing, not a PLY file, truncated, or has
            no ``vertex`` element with ``x``, ``y``, ``z``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "point cloud file not found")
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DatasetError(path, "not a PLY file (no 'ply' ... 'end_header' header)")
    body_start = data.find(b"\n", end) + 1
    encoding, elements = _parse_header(path, data[:end].decode("ascii", errors="replace"))
    names = [name for name, _, _ in elements]
    if "vertex" not in names:
        raise DatasetError(path, "no 'vertex' element")
    count, properties = elements[names.index("vertex")][1:]
    fields = dict(properties)
    missing = [axis for axis in "xyz" if axis not in fields]
    if missing:
        raise DatasetError(path, f"the vertices have no {', '.join(missing)} property")
    if any(kind == "list" for kind in fields.values()):
        raise DatasetError(path, "list properties on vertices are not supported")
    dtype = np.dtype([(name, (_ENCODINGS[encoding] or "<") + kind) for name, kind in properties])
    if encoding == "ascii":
        vertices = _read_ascii(path, data[body_start:], names.index("vertex"), elements, dtype)
    else:
        offset = body_start
        for name, other_count, other_properties in elements[: names.index("vertex")]:
            if any(kind == "list" for _, kind in other_properties):
                raise DatasetError(path, f"element {name!r} before 'vertex' has list properties")
            offset += other_count * sum(np.dtype(kind).itemsize for _, kind in other_properties)
        size = count * dtype.itemsize
        if offset + size > len(data):
            raise DatasetError(
                path, f"truncated: {count} vertices need {size} bytes at byte {offset}"
            )
        vertices = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    xyz = np.stack([vertices[axis].astype(np.float64) for axis in "xyz"], axis=-1)
    if not np.isfinite(xyz).all():
        raise DatasetError(path, "vertex positions are not all finite")
    colors = None
    if all(channel in fields for channel in ("red", "green", "blue")):
        rgb = np.stack([vertices[c].astype(np.float64) for c in ("red", "green", "blue")], -1)
        if fields["red"].startswith("f"):
            rgb = rgb * 255.0
        colors = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return xyz, colors


def _parse_header(path: Path, header: str):
    """(encoding, [(element name, count, [(property, numpy kind or "list")])])."""
    encoding, elements = None, []
    for line in header.splitlines()[1:]:
        tokens = line.split()
        if not tokens or tokens[0] in ("comment", "obj_info"):
            continue
        if tokens[0] == "format" and len(tokens) >= 2:
            encoding = tokens[1]
        elif tokens[0] == "element" and len(tokens) == 3 and tokens[2].isdigit():
            elements.append((tokens[1], int(tokens[2]), []))
        elif tokens[0] == "property" and elements and len(tokens) >= 3:
            if tokens[1] == "list":
                elements[-1][2].append((tokens[-1], "list"))
            elif tokens[1] in _TYPES:
                elements[-1][2].append((tokens[2], _TYPES[tokens[1]]))
            else:
                raise DatasetError(path, f"unknown property type {tokens[1]!r} in {line!r}")
        else:
            raise DatasetError(path, f"unreadable header line {line!r}")
    if encoding not in _ENCODINGS:
        raise DatasetError(path, f"format must be one of {', '.join(_ENCODINGS)}, got {encoding!r}")
    return encoding, elements


def _read_ascii(path: Path, body: bytes, index: int, elements, dtype) -> np.ndarray:
    lines = body.decode("ascii", errors="replace").splitlines()
    start = sum(count for _, count, _ in elements[:index])  # one line per earlier item
    count = elements[index][1]
    rows = lines[start : start + count]
    if len(rows) < count:
        raise DatasetError(path, f"truncated: {count} vertices, found {len(rows)} lines")
    try:
        table = np.array([row.split()[: len(dtype.names)] for row in rows], dtype=np.float64)
    except ValueError:
        raise DatasetError(path, "vertex lines are not all numbers") from None
    if table.shape != (count, len(dtype.names)):
        raise DatasetError(path, f"vertex lines must have {len(dtype.names)} values each")
    vertices = np.zeros(count, dtype=dtype.newbyteorder("="))
    for column, name in enumerate(dtype.names):
        vertices[name] = table[:, column]
    return vertices


def write_ply_points(
    path: str | Path, xyz: np.ndarray, rgb: np.ndarray | None = None, *, binary: bool = False
) -> None:
    """Write points float ``[P, 3]`` (and uint8 colours ``[P, 3]``) as a PLY vertex element."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    fields = [("x", "<f8"), ("y", "<f8"), ("z", "<f8")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.zeros(len(xyz), dtype=np.dtype(fields))
    for axis, column in zip("xyz", xyz.T, strict=True):
        vertices[axis] = column
    if rgb is not None:
        for channel, column in zip(("red", "green", "blue"), np.asarray(rgb).T, strict=True):
            vertices[channel] = column
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        f"element vertex {len(xyz)}",
        *(f"property {'double' if kind == '<f8' else 'uchar'} {name}" for name, kind in fields),
        "end_header",
    ]
    text = "\n".join(header) + "\n"
    if binary:
        Path(path).write_bytes(text.encode("ascii") + vertices.tobytes())
    else:
        rows = [" ".join(str(value) for value in row) for row in vertices.tolist()]
        Path(path).write_text(text + "\n".join(rows) + "\n")
