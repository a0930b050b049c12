"""PLY export round trip and the README example."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mc_helpers import sphere_sdf

from slang_marching_cubes import SparseGrid, extract_shells, read_ply, write_ply


def test_round_trip(tmp_path):
    grid = SparseGrid.full((12, 12, 12))
    sdf = sphere_sdf(grid.vertex_positions(), 0.3)
    shells = extract_shells(grid, sdf, None, [0.02, 0.0])
    positions, faces = shells.shell(1)
    path = tmp_path / "zero.ply"
    write_ply(path, positions, faces)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    pos2, faces2 = read_ply(path)
    assert torch.equal(pos2, positions) and torch.equal(faces2, faces)


def test_colors_numpy_inputs_and_an_atomic_write(tmp_path):
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.5]])  # float64
    faces = np.array([[0, 1, 2]], dtype=np.int64)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    path = tmp_path / "triangle.ply"
    write_ply(path, positions, faces, colors=colors)
    data = path.read_bytes()
    assert b"property uchar red\nproperty uchar green\nproperty uchar blue\n" in data
    end = data.index(b"end_header\n") + len(b"end_header\n")
    assert len(data) == end + 3 * 15 + 13  # packed: xyz float32 + rgb per vertex; 1 + 12 per face
    assert data[end + 12 : end + 15] == bytes([255, 0, 0])
    pos, tri = read_ply(path)
    assert torch.equal(pos, torch.tensor(positions, dtype=torch.float32))
    assert tri.tolist() == [[0, 1, 2]]
    assert [p.name for p in tmp_path.iterdir()] == ["triangle.ply"]  # no temporary file left
    with pytest.raises(ValueError, match=r"colors must be a uint8 \[3, 3\]"):
        write_ply(path, positions, faces, colors=colors.astype(np.float32))
    assert read_ply(path)[1].tolist() == [[0, 1, 2]]  # a failed write leaves the file alone
