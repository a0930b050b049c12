"""PLY export round trip and the README example."""

from __future__ import annotations

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
