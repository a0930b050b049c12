"""Every one of the 256 generated marching-cubes cases, checked on its own."""

from __future__ import annotations

import numpy as np
import pytest

from slang_marching_cubes import _table as T

CODES = list(range(256))


def _case(code):
    return T.TRI_EDGES[T.TRI_OFFSETS[code] : T.TRI_OFFSETS[code + 1]]


def _trilinear_grad(values: np.ndarray, p: np.ndarray) -> np.ndarray:
    g = np.zeros(3)
    for c in range(8):
        off = T.CORNER_OFFSETS[c]
        for a in range(3):
            w = 1.0
            for b in range(3):
                if b == a:
                    w *= 1.0 if off[b] else -1.0
                else:
                    w *= p[b] if off[b] else 1 - p[b]
            g[a] += values[c] * w
    return g


def test_table_shape_and_totals():
    assert T.TRI_OFFSETS.shape == (257,) and T.TRI_OFFSETS[0] == 0
    assert T.TRI_EDGES.shape == (T.TRI_OFFSETS[-1], 3)
    assert np.diff(T.TRI_OFFSETS).max() <= 5  # at most 5 triangles per cube
    assert len(_case(0)) == 0 and len(_case(255)) == 0


def test_regenerating_gives_the_same_table():
    offsets, tris = T.build_table()
    np.testing.assert_array_equal(offsets, T.TRI_OFFSETS)
    np.testing.assert_array_equal(tris, T.TRI_EDGES)


def test_edge_conventions():
    for e in range(12):
        lo, hi = (T.CORNER_OFFSETS[c] for c in T.EDGE_CORNERS[e])
        axis = e // 4
        assert hi[axis] == 1 and lo[axis] == 0
        assert (np.delete(lo, axis) == np.delete(hi, axis)).all()
        assert tuple(np.delete(lo, axis)) == ((e >> 1) & 1, e & 1)


@pytest.mark.parametrize("code", CODES)
def test_case_uses_exactly_the_crossing_edges(code):
    used = sorted(set(_case(code).reshape(-1).tolist()))
    assert used == T.crossing_edges(code)
    for tri in _case(code):
        assert len(set(tri.tolist())) == 3, "degenerate triangle"


@pytest.mark.parametrize("code", CODES)
def test_case_boundary_is_the_face_segments(code):
    """Edges used by one triangle of the case are exactly the oriented face segments; interior
    (diagonal) edges are used twice in opposite directions; no diagonal lies on a cube face."""
    directed = {}
    for a, b, c in _case(code).tolist():
        for u, v in ((a, b), (b, c), (c, a)):
            assert (u, v) not in directed, "directed edge used twice"
            directed[(u, v)] = True
    boundary = {(u, v) for (u, v) in directed if (v, u) not in directed}
    assert boundary == set(T.face_segments(code))
    for u, v in directed:
        if (u, v) not in boundary:
            assert not set(T.EDGE_FACES[u]) & set(T.EDGE_FACES[v]), "diagonal on a cube face"


@pytest.mark.parametrize("code", CODES)
def test_case_orientation(code):
    """With corner values +-1, each triangle's normal has a positive component along the
    gradient of the trilinear interpolant (toward increasing values)."""
    values = np.array([1.0 if (code >> c) & 1 else -1.0 for c in range(8)])
    for tri in _case(code):
        p = T.EDGE_MIDPOINTS[tri]
        normal = np.cross(p[1] - p[0], p[2] - p[0])
        assert normal @ _trilinear_grad(values, p.mean(0)) > 0


def test_ambiguous_face_rule_depends_on_the_face_only():
    """Two cubes sharing a face draw the same segments on it (no cracks): the segments on a face
    are a function of that face's 4 corner signs."""
    for f, (_, cyc, edges) in enumerate(T.FACES):
        seen = {}
        for code in CODES:
            face_bits = tuple((code >> c) & 1 for c in cyc)
            segs = frozenset(frozenset(s) for s in T.face_segments(code) if set(s) <= set(edges))
            assert seen.setdefault(face_bits, segs) == segs, f"face {f} bits {face_bits}"
