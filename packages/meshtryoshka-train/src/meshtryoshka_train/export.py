"""Mesh export: a level set of a trained field as a coloured PLY, OBJ or GLB, in dataset frame.

The field lives in the contracted cube; `Field.extract` maps its vertices back to the normalized
scene (uncontraction), and `Dataset.to_world` undoes the dataset normalization, so the mesh lands
in the dataset's own frame (e.g. COLMAP's). Unbounded scenes: a vertex in a contracted arm is
mapped back through the uncontraction too, so it sits at its true distance, up to the far bound
``center_radius * e^(2 arm_ratio)`` (normalized units); the arms' voxels grow with distance, so
far geometry is coarse and its triangles large, and geometry on the outer faces of the grid
(the background) becomes a large box at the far bound. ``crop`` keeps only faces within a chosen
multiple of the centre cube.

Colours are view independent: the degree-0 spherical harmonic,
``clamp(max(SH0 * C0 + 0.5, 0), 0, 1)`` (the convention of `slang_rasterizer.eval_sh`), 8 bits.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from slang_marching_cubes import write_ply

from .run import Snapshot, write_atomic

__all__ = [
    "SH_C0",
    "EdgeReport",
    "ExportResult",
    "Mesh",
    "crop_mesh",
    "default_mesh_path",
    "edge_report",
    "export_mesh",
    "extract_mesh",
    "weld",
    "write_glb",
    "write_obj",
]

SH_C0 = 0.28209479177387814
"""The degree-0 real spherical harmonic, 1 / (2 sqrt(pi))."""

Format = Literal["ply", "obj", "glb"]
FORMATS = ("ply", "obj", "glb")


@dataclass
class Mesh:
    """A triangle mesh with per-vertex colours (NumPy, CPU).

    Attributes:
        vertices: float64 ``[N, 3]`` positions.
        faces: int64 ``[M, 3]`` vertex indices, counter-clockwise seen from outside (the side
            of increasing signed distance).
        colors: uint8 ``[N, 3]`` RGB.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def bounds(self) -> np.ndarray:
        """float64 ``[2, 3]`` (min, max) of the vertices; NaN for an empty mesh."""
        if self.num_vertices == 0:
            return np.full((2, 3), np.nan)
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)])


@dataclass(frozen=True)
class EdgeReport:
    """How the faces share their edges.

    Attributes:
        edges: distinct undirected edges.
        boundary: edges used by one face (holes, or where the surface leaves the grid).
        non_manifold: edges used by three or more faces.
        misoriented: edges used twice in the same direction (neighbouring faces that disagree
            on which side is outside).
    """

    edges: int
    boundary: int
    non_manifold: int
    misoriented: int

    @property
    def watertight(self) -> bool:
        """Closed and consistently oriented: every edge shared by exactly two faces, once in
        each direction (and at least one face)."""
        return self.edges > 0 and self.boundary == self.non_manifold == self.misoriented == 0


def edge_report(faces: np.ndarray) -> EdgeReport:
    """Count the boundary, non-manifold and misoriented edges of ``faces [M, 3]``."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if faces.shape[0] == 0:
        return EdgeReport(edges=0, boundary=0, non_manifold=0, misoriented=0)
    n = int(faces.max()) + 1
    start, end = faces.reshape(-1), faces[:, [1, 2, 0]].reshape(-1)
    # One int64 key per edge (n^2 < 2^63 for any mesh that fits in memory).
    directed = np.sort(start * n + end)
    undirected = np.sort(np.minimum(start, end) * n + np.maximum(start, end))
    counts = _run_lengths(undirected)
    return EdgeReport(
        edges=int(counts.shape[0]),
        boundary=int((counts == 1).sum()),
        non_manifold=int((counts > 2).sum()),
        misoriented=int((_run_lengths(directed) > 1).sum()),
    )


def _run_lengths(sorted_keys: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal values of a sorted 1-D array."""
    starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
    return np.diff(np.append(starts, sorted_keys.shape[0]))


def weld(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> tuple[Mesh, int]:
    """Merge bit-identical vertex positions, drop the faces that collapse, drop unused vertices.

    Marching cubes already gives one vertex per crossed grid edge (and `Field.extract` merges
    the vertices of edges shared by two blocks); coincident positions remain only where a level
    passes exactly through a grid vertex (``t`` clamped to 0 or 1 on several edges). A merged
    vertex keeps the colour of its first copy (copies of one grid vertex share its colour).

    Args:
        vertices: float32 ``[N, 3]``; faces: integer ``[M, 3]``; colors: uint8 ``[N, 3]``.
    Returns:
        (the welded mesh, the number of vertices merged away). Vertices keep their order.
    """
    vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    count = vertices.shape[0]
    if count == 0:
        return Mesh(vertices.astype(np.float64), faces, colors), 0
    bits = (vertices + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into 0.0
    order = np.lexsort((bits[:, 2], bits[:, 1], bits[:, 0]))
    ordered = bits[order]
    new = np.concatenate([[True], (ordered[1:] != ordered[:-1]).any(axis=1)])
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    first = np.minimum.reduceat(order, starts)  # the first copy of each distinct position
    inverse = np.empty(count, dtype=np.int64)
    inverse[order] = group
    representative = first[inverse]  # each vertex -> its first copy
    faces = representative[faces]
    faces = faces[(faces != np.roll(faces, 1, axis=1)).all(axis=1)]
    return _drop_unused(vertices.astype(np.float64), faces, colors), count - starts.shape[0]


@torch.no_grad()
def extract_mesh(run: Snapshot, level: float = 0.0) -> tuple[Mesh, int]:
    """The level set `level` (contracted signed-distance units) of `run`, welded, with colours,
    in normalized scene coordinates. Returns (mesh, vertices merged by `weld`)."""
    extraction = run.field.extract([level], backend=run.config.model.backend)
    sh0 = extraction.sh[:, 0, :].float()
    rgb = (sh0 * SH_C0 + 0.5).clamp(0.0, 1.0)
    colors = (rgb * 255).round().to(torch.uint8).cpu().numpy()
    return weld(
        extraction.positions.cpu().numpy(),
        extraction.faces.long().cpu().numpy(),
        colors,
    )


def crop_mesh(mesh: Mesh, radius: float) -> Mesh:
    """Faces whose three vertices have infinity norm <= `radius`, unused vertices dropped."""
    inside = np.abs(mesh.vertices).max(axis=1) <= radius
    return _drop_unused(mesh.vertices, mesh.faces[inside[mesh.faces].all(axis=1)], mesh.colors)


def _drop_unused(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> Mesh:
    """The mesh of `faces` with the vertices no face uses removed (order kept, faces renumbered)."""
    used = np.zeros(vertices.shape[0], dtype=bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return Mesh(vertices[used], remap[faces], colors[used])


# --- writers ------------------------------------------------------------------------------------


def _write_ply(path: Path, mesh: Mesh) -> None:
    """Binary little-endian PLY (float x, y, z; uchar red, green, blue; int triangles),
    written atomically by `slang_marching_cubes.write_ply`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ply(path, mesh.vertices, mesh.faces, colors=mesh.colors)


def write_obj(path: str | Path, mesh: Mesh, chunk: int = 1 << 18) -> None:
    """Wavefront OBJ with vertex colours as ``v x y z r g b`` (r, g, b in [0, 1]; read by
    MeshLab and Blender) and 1-based ``f a b c``. Written atomically."""

    def write(file) -> None:
        file.write(b"# written by meshtryoshka-train\n")
        rgb = mesh.colors.astype(np.float64) / 255.0
        for start in range(0, mesh.num_vertices, chunk):
            rows = np.hstack([mesh.vertices[start : start + chunk], rgb[start : start + chunk]])
            np.savetxt(file, rows, fmt="v %.7g %.7g %.7g %.4g %.4g %.4g")
        for start in range(0, mesh.num_faces, chunk):
            np.savetxt(file, mesh.faces[start : start + chunk] + 1, fmt="f %d %d %d")

    write_atomic(Path(path), write)


def write_glb(path: str | Path, mesh: Mesh) -> None:
    """Binary glTF 2.0: one triangle primitive with POSITION (float32), COLOR_0 (float32 RGB,
    converted from sRGB to the linear values glTF asks for) and uint32 indices.

    Coordinates are written as they are (glTF viewers assume +y up; no axis is swapped). An
    empty mesh gives a scene with no node. Written atomically.
    """
    n, m = mesh.num_vertices, mesh.num_faces
    document: dict = {
        "asset": {"version": "2.0", "generator": "meshtryoshka-train"},
        "scene": 0,
        "scenes": [{"nodes": [0] if m else []}],
    }
    binary = b""
    if m:
        positions = mesh.vertices.astype("<f4")
        srgb = mesh.colors.astype(np.float64) / 255.0
        linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
        parts = [positions.tobytes(), linear.astype("<f4").tobytes()]
        parts.append(mesh.faces.astype("<u4").tobytes())
        offsets = np.cumsum([0] + [len(p) for p in parts])  # every part is a multiple of 4
        binary = b"".join(parts)
        document.update(
            nodes=[{"mesh": 0}],
            meshes=[
                {
                    "primitives": [
                        {"attributes": {"POSITION": 0, "COLOR_0": 1}, "indices": 2, "mode": 4}
                    ]
                }
            ],
            buffers=[{"byteLength": len(binary)}],
            bufferViews=[
                {"buffer": 0, "byteOffset": int(offsets[i]), "byteLength": len(part), "target": t}
                for i, (part, t) in enumerate(zip(parts, (34962, 34962, 34963), strict=True))
            ],
            accessors=[
                {
                    "bufferView": 0,
                    "componentType": 5126,
                    "count": n,
                    "type": "VEC3",
                    "min": positions.min(axis=0).tolist(),
                    "max": positions.max(axis=0).tolist(),
                },
                {"bufferView": 1, "componentType": 5126, "count": n, "type": "VEC3"},
                {"bufferView": 2, "componentType": 5125, "count": 3 * m, "type": "SCALAR"},
            ],
        )
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    header = struct.pack("<III", 0x46546C67, 2, 12 + len(chunks))
    write_atomic(Path(path), lambda file: file.write(header + chunks))


# --- the operation and its command ---------------------------------------------------------------


@dataclass
class ExportResult:
    path: Path
    mesh: Mesh
    edges: EdgeReport
    level: float
    merged: int
    frame: str


def default_mesh_path(run: Snapshot, fmt: Format, suffix: str = "") -> Path:
    """``RUN_DIR/mesh/mesh_step_XXXXXXX[suffix].<fmt>`` (`RunDir.mesh_file`)."""
    return run.files.mesh_file(run.step, fmt, suffix)


def export_mesh(
    run: Snapshot,
    *,
    level: float = 0.0,
    output: str | Path | None = None,
    fmt: Format | None = None,
    normalized: bool = False,
    crop: float | None = None,
    suffix: str = "",
) -> ExportResult:
    """Write the level set `level` of `run` as a coloured mesh.

    Args:
        run: a snapshot of a run (`open_run`, `Trainer.snapshot`).
        level: signed-distance level in contracted units (0 = the surface; the shells of the
            schedule are `Snapshot.shells`).
        output: the file; default ``RUN_DIR/mesh/mesh_step_XXXXXXX<suffix>.<fmt>`` (RunError
            when `run` belongs to no run directory).
        fmt: ``"ply"``, ``"obj"`` or ``"glb"``; None takes the suffix of `output` (default
            ply).
        normalized: keep the normalized training coordinates (no dataset needed) instead of
            the dataset's original ones.
        crop: keep only faces within ``crop * center_radius`` (infinity norm, normalized
            coordinates) of the scene centre; None keeps everything.
    """
    if fmt is None:
        fmt = Path(output).suffix.lstrip(".").lower() if output is not None else "ply"
        fmt = fmt if fmt in FORMATS else "ply"
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if not math.isfinite(level):
        raise ValueError(f"level must be a finite number, got {level}")
    if crop is not None and not crop > 0:
        raise ValueError(f"crop must be > 0, got {crop}")
    mesh, merged = extract_mesh(run, level)
    if crop is not None:
        mesh = crop_mesh(mesh, crop * run.config.model.center_radius)
    if not normalized:
        mesh.vertices = np.asarray(run.dataset.to_world(mesh.vertices), dtype=np.float64)
    path = Path(output) if output is not None else default_mesh_path(run, fmt, suffix)
    {"ply": _write_ply, "obj": write_obj, "glb": write_glb}[fmt](path, mesh)
    return ExportResult(
        path=path,
        mesh=mesh,
        edges=edge_report(mesh.faces),
        level=level,
        merged=merged,
        frame="normalized" if normalized else "dataset",
    )
