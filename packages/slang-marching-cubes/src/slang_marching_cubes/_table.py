"""The 256-case marching-cubes triangle table, generated at import (no copied table).

Conventions (shared by the reference, the Slang kernels and the tests):

- Corner ``c`` of a voxel is the grid vertex at offset ``(di, dj, dk)`` with
  ``c = 4*di + 2*dj + dk``; offsets are along the grid axes ``(i, j, k) ~ (x, y, z)``.
- Bit ``c`` of the cube code is set iff the corner's value is ``>= level`` ("outside").
- Edge slot ``e = 4*axis + 2*da + db`` is the edge along ``axis`` whose two other coordinates
  (in increasing axis order) are ``(da, db)``; its endpoints are ``EDGE_CORNERS[e] = (lo, hi)``
  with the ``axis`` offset 0 at ``lo`` and 1 at ``hi``.

Construction, for each code:

1. On each of the 6 cube faces the sign-changing edges are 0, 2 or 4. Two crossings make one
   segment. Four crossings (the ambiguous checkerboard face) are joined so that each *positive*
   corner is cut off on its own; the rule reads only that face's 4 corner signs, so the two
   voxels sharing the face draw the same segments and the mesh has no cracks.
2. Each segment ``P -> Q`` is oriented so that, seen along the face's outward normal ``n``, the
   positive side lies on ``n x (Q - P)``. Then every crossing edge is the end of exactly one
   segment and the start of one, and the segments chain into closed loops.
3. Each loop is triangulated as a fan. The apex is chosen so that no diagonal joins two crossings
   of the same cube face (the neighbour voxel could draw the same edge, making it non-manifold).
   Orientation follows the loop, which makes every triangle's right-hand normal
   ``(v1 - v0) x (v2 - v0)`` point toward increasing values (outward).
"""

from __future__ import annotations

import itertools

import numpy as np

CORNER_OFFSETS = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], dtype=np.int64)


def _edge_corners() -> np.ndarray:
    edges = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for da, db in itertools.product((0, 1), repeat=2):
            lo = np.zeros(3, dtype=np.int64)
            lo[others[0]], lo[others[1]] = da, db
            hi = lo.copy()
            hi[axis] = 1
            edges.append((int(4 * lo[0] + 2 * lo[1] + lo[2]), int(4 * hi[0] + 2 * hi[1] + hi[2])))
    return np.array(edges, dtype=np.int64)


EDGE_CORNERS = _edge_corners()  # [12, 2] (lo corner, hi corner)
EDGE_AXIS = np.repeat(np.arange(3), 4)  # [12]
EDGE_MIDPOINTS = (CORNER_OFFSETS[EDGE_CORNERS[:, 0]] + CORNER_OFFSETS[EDGE_CORNERS[:, 1]]) / 2.0


def _faces() -> list[tuple[np.ndarray, list[int], list[int]]]:
    """Per cube face: (outward normal, corners in cyclic order, the 4 edges lying in it)."""
    out = []
    for axis in range(3):
        for side in (0, 1):
            normal = np.zeros(3)
            normal[axis] = 2 * side - 1
            corners = [c for c in range(8) if CORNER_OFFSETS[c, axis] == side]
            # cyclic order: walk the square (0,0) (1,0) (1,1) (0,1) in the two other axes
            others = [a for a in range(3) if a != axis]
            key = {(CORNER_OFFSETS[c, others[0]], CORNER_OFFSETS[c, others[1]]): c for c in corners}
            cyc = [key[(0, 0)], key[(1, 0)], key[(1, 1)], key[(0, 1)]]
            edges = []
            for n in range(4):
                a, b = cyc[n], cyc[(n + 1) % 4]
                e = next(e for e in range(12) if set(EDGE_CORNERS[e]) == {a, b})
                edges.append(e)
            out.append((normal, cyc, edges))
    return out


FACES = _faces()
EDGE_FACES = [[f for f, (_, _, es) in enumerate(FACES) if e in es] for e in range(12)]


def crossing_edges(code: int) -> list[int]:
    """Edge slots whose endpoints lie on different sides for the cube ``code``."""
    return [
        e
        for e in range(12)
        if ((code >> EDGE_CORNERS[e, 0]) & 1) != ((code >> EDGE_CORNERS[e, 1]) & 1)
    ]


def face_segments(code: int) -> list[tuple[int, int]]:
    """Oriented boundary segments ``(from_edge, to_edge)`` of the surface on the cube faces."""
    segments = []
    for normal, cyc, edges in FACES:
        pos = [(code >> c) & 1 for c in cyc]
        crossing = [e for e, a, b in zip(edges, pos, pos[1:] + pos[:1], strict=True) if a != b]
        pairs: list[tuple[int, int, int]] = []  # (edge, edge, a positive corner on the cut side)
        if len(crossing) == 2:
            pairs.append((crossing[0], crossing[1], cyc[pos.index(1)]))
        elif len(crossing) == 4:  # checkerboard: isolate every positive corner
            for n in range(4):
                if pos[n]:
                    # the positive corner cyc[n] touches face edges n-1 and n
                    pairs.append((edges[(n - 1) % 4], edges[n], cyc[n]))
        for ea, eb, corner in pairs:
            p, q = EDGE_MIDPOINTS[ea], EDGE_MIDPOINTS[eb]
            side = np.dot(np.cross(normal, q - p), CORNER_OFFSETS[corner] - p)
            segments.append((ea, eb) if side > 0 else (eb, ea))
    return segments


def _loops(code: int) -> list[list[int]]:
    nxt: dict[int, int] = {}
    for a, b in face_segments(code):
        if a in nxt:
            raise AssertionError(f"code {code}: edge {a} starts two segments")
        nxt[a] = b
    if sorted(nxt) != sorted(nxt.values()) or sorted(nxt) != crossing_edges(code):
        raise AssertionError(f"code {code}: segments do not chain into loops")
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, e = [], start
        while e not in seen:
            seen.add(e)
            loop.append(e)
            e = nxt[e]
        loops.append(loop)
    return loops


def _share_face(a: int, b: int) -> bool:
    return bool(set(EDGE_FACES[a]) & set(EDGE_FACES[b]))


def _triangulate(loop: list[int]) -> list[tuple[int, int, int]]:
    n = len(loop)
    for r in range(n):
        ring = loop[r:] + loop[:r]
        if not any(_share_face(ring[0], ring[k]) for k in range(2, n - 1)):
            return [(ring[0], ring[k], ring[k + 1]) for k in range(1, n - 1)]
    raise AssertionError(f"loop {loop}: no fan without a diagonal on a cube face")


def build_table() -> tuple[np.ndarray, np.ndarray]:
    """Return ``(offsets int32 [257], triangles int32 [T, 3])`` in CSR layout by code.

    The triangles of code ``c`` are ``triangles[offsets[c]:offsets[c + 1]]``, each a triple of
    edge slots in counter-clockwise order seen from the positive (outside) side.
    """
    offsets, triangles = [0], []
    for code in range(256):
        for loop in _loops(code):
            triangles.extend(_triangulate(loop))
        offsets.append(len(triangles))
    return np.array(offsets, dtype=np.int32), np.array(triangles, dtype=np.int32).reshape(-1, 3)


TRI_OFFSETS, TRI_EDGES = build_table()
