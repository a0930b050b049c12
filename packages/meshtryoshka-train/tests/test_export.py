"""export-mesh: coloured PLY/OBJ of a trained run's level sets, in the dataset's own frame."""

import json
import shutil
import struct
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from meshtryoshka_train.cli import main
from meshtryoshka_train.config import load_config
from meshtryoshka_train.export import SH_C0, edge_report, weld
from meshtryoshka_train.run import open_run, prepare_run_dir
from meshtryoshka_train.trainer import Trainer

_RUNS = {}


def trained_run(name, experiment, overrides, tmp_path_factory):
    """Train a tiny run once per test session (cached by name)."""
    if name not in _RUNS:
        config = load_config(experiment, overrides)
        run_dir = tmp_path_factory.mktemp("runs") / name
        prepare_run_dir(run_dir, config, resume=False, overwrite=False)
        Trainer(config, run_dir, echo=lambda _: None).run()
        _RUNS[name] = run_dir
    return _RUNS[name]


@pytest.fixture
def blender_run(reduced, blender_root, tmp_path_factory):
    """2 steps on the toy Blender sphere (radius 1 at the origin), scaled by 0.75 on load, so
    the normalized frame differs from the dataset's; the initial sphere (0.25 contracted units
    = 0.75 normalized) is the true one."""
    overrides = [*reduced(blender_root, 2), "model.resolution={0=16}", "dataset.scale_factor=0.75"]
    return trained_run("blender", "nerf_synthetic", overrides, tmp_path_factory)


@pytest.fixture
def colmap_run(reduced, colmap_root, tmp_path_factory):
    """2 steps on the toy COLMAP scene (sphere of radius 0.8 at (2, -1, 0.5)), unbounded."""
    return trained_run("colmap", "mip360", reduced(colmap_root, 2, True), tmp_path_factory)


def read_ply(path):
    """(vertices float32 [N, 3], colors uint8 [N, 3], faces int [M, 3]) of our PLY files."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    properties = [line.split()[-1] for line in header if line.startswith("property ")]
    assert properties == ["x", "y", "z", "red", "green", "blue", "vertex_indices"]
    assert "property list uchar int vertex_indices" in header
    n = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    m = int(next(h for h in header if h.startswith("element face")).split()[-1])
    vertex = np.frombuffer(data, dtype=[("p", "<f4", (3,)), ("c", "u1", (3,))], count=n, offset=end)
    face = np.frombuffer(
        data, dtype=[("n", "u1"), ("v", "<i4", (3,))], count=m, offset=end + 15 * n
    )
    assert end + 15 * n + 13 * m == len(data)
    assert (face["n"] == 3).all()
    return vertex["p"].copy(), vertex["c"].copy(), face["v"].astype(np.int64)


def read_obj(path):
    vertices, faces = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            vertices.append([float(x) for x in line.split()[1:]])
        elif line.startswith("f "):
            faces.append([int(x) - 1 for x in line.split()[1:]])
    return np.array(vertices), np.array(faces)


def directed_edges(faces):
    return [edge for a, b, c in faces.tolist() for edge in ((a, b), (b, c), (c, a))]


def edge_uses(faces):
    return Counter(tuple(sorted(e)) for e in directed_edges(faces))


def export(*args):
    result = CliRunner().invoke(main, ["export-mesh", *map(str, args), "--device", "cpu"])
    return result


def test_export_writes_the_sphere_in_dataset_coordinates(blender_run):
    result = export(blender_run)
    assert result.exit_code == 0, result.output
    path = blender_run / "mesh" / "mesh_step_0000002.ply"
    assert f"written to {path}" in result.output
    assert "watertight: yes" in result.output
    vertices, colors, faces = read_ply(path)
    assert f"{len(vertices)} vertices, {len(faces)} faces" in result.output
    assert len(vertices) > 100 and faces.min() == 0 and faces.max() == len(vertices) - 1
    # The true sphere has radius 1 in the dataset's frame (0.75 in the normalized one).
    radius = np.linalg.norm(vertices, axis=1)
    # Two Adam steps move the surface a little (seeds 0-2: mean 1.015-1.041, 5th-95th
    # percentiles 0.80-1.22); in the normalized frame the mean would be about 0.76.
    assert abs(radius.mean() - 1.0) < 0.1
    low, high = np.percentile(radius, [5, 95])
    assert 0.7 < low and high < 1.3
    assert 0.5 < radius.min() and radius.max() < 1.5
    # Every edge shared by exactly two faces, once in each direction.
    assert set(edge_uses(faces).values()) == {2}
    directed = Counter(directed_edges(faces))
    assert set(directed.values()) == {1}
    # Faces wind counter-clockwise seen from outside: the enclosed (signed) volume is positive,
    # about the unit ball's 4.19 (seeds 0-2: 4.03-4.32; 1.77 in the normalized frame).
    a, b, c = (vertices[faces[:, i]].astype(np.float64) for i in range(3))
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6
    assert 3.5 < volume < 5.0
    # Colours: SH degree 0 around 0.5 after two steps, within [0, 255], not constant.
    assert 60 < colors.mean() < 200 and colors.std() > 1
    assert not list((blender_run / "mesh").glob(".*"))  # no temporary file left behind


def test_normalized_flag_keeps_the_training_frame(blender_run, tmp_path):
    original = tmp_path / "original.ply"
    normalized = tmp_path / "normalized.ply"
    assert export(blender_run, "-o", original).exit_code == 0
    result = export(blender_run, "-o", normalized, "--normalized")
    assert result.exit_code == 0, result.output
    assert "normalized coordinates" in result.output
    v_original, c_original, f_original = read_ply(original)
    v_normalized, c_normalized, f_normalized = read_ply(normalized)
    np.testing.assert_allclose(v_normalized, 0.75 * v_original, rtol=1e-6, atol=1e-6)
    assert np.array_equal(f_original, f_normalized) and np.array_equal(c_original, c_normalized)


def test_colors_are_the_degree_0_sh_at_each_vertex(blender_run, tmp_path):
    """Give the field SH0 = (u - 0.5) / C0 (u: contracted position, linear, so interpolation
    along edges is exact): every exported colour must equal the vertex's contracted position."""
    run_dir = tmp_path / "painted"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(blender_run / "config.toml", run_dir / "config.toml")
    source = blender_run / "checkpoints" / "step_0000002.pt"
    state = torch.load(source, weights_only=False)
    run = open_run(blender_run, device="cpu")
    contracted = run.field.contracted_vertices()
    state["field"]["sh_dc"] = ((contracted - 0.5) / SH_C0)[:, None, :]
    torch.save(state, run_dir / "checkpoints" / "step_0000002.pt")
    result = export(run_dir, "--format", "ply")
    assert result.exit_code == 0, result.output
    vertices, colors, _ = read_ply(run_dir / "mesh" / "mesh_step_0000002.ply")
    # dataset x -> normalized 0.75 x -> contracted 0.75 x / (2 * 1.5) + 0.5
    expected = (0.25 * vertices.astype(np.float64) + 0.5) * 255
    assert np.abs(colors - expected).max() <= 0.5 + 1e-3


def test_obj_holds_the_same_mesh(blender_run, tmp_path):
    ply, obj = tmp_path / "m.ply", tmp_path / "m.obj"
    assert export(blender_run, "-o", ply).exit_code == 0
    result = export(blender_run, "-o", obj)  # format from the suffix
    assert result.exit_code == 0, result.output
    v_ply, c_ply, f_ply = read_ply(ply)
    v_obj, f_obj = read_obj(obj)
    assert v_obj.shape == (len(v_ply), 6)
    np.testing.assert_allclose(v_obj[:, :3], v_ply, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v_obj[:, 3:] * 255, c_ply, atol=0.05)
    assert np.array_equal(f_obj, f_ply)


def read_glb(path):
    """(document, positions [N, 3], colors [N, 3] linear float, faces [M, 3]) of a GLB file."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", data)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and 28 + json_length + bin_length == len(data)
    binary = data[28 + json_length :]
    assert document["buffers"] == [{"byteLength": bin_length}]
    types = {5126: "<f4", 5125: "<u4"}
    widths = {"VEC3": 3, "SCALAR": 1}

    def accessor(index):
        spec = document["accessors"][index]
        view = document["bufferViews"][spec["bufferView"]]
        width = widths[spec["type"]]
        values = np.frombuffer(
            binary, types[spec["componentType"]], spec["count"] * width, view["byteOffset"]
        )
        return values.reshape(spec["count"], width)

    primitive = document["meshes"][0]["primitives"][0]
    assert primitive["mode"] == 4
    positions = accessor(primitive["attributes"]["POSITION"])
    spec = document["accessors"][primitive["attributes"]["POSITION"]]
    np.testing.assert_array_equal(spec["min"], positions.min(0))
    np.testing.assert_array_equal(spec["max"], positions.max(0))
    colors = accessor(primitive["attributes"]["COLOR_0"])
    faces = accessor(primitive["indices"]).reshape(-1, 3)
    return document, positions, colors, faces


def test_glb_holds_the_same_mesh(blender_run, tmp_path):
    ply, glb = tmp_path / "m.ply", tmp_path / "m.glb"
    assert export(blender_run, "-o", ply).exit_code == 0
    result = export(blender_run, "-o", glb)
    assert result.exit_code == 0, result.output
    v_ply, c_ply, f_ply = read_ply(ply)
    _, positions, linear, faces = read_glb(glb)
    np.testing.assert_array_equal(positions, v_ply)
    np.testing.assert_array_equal(faces, f_ply)
    # glTF colours are linear: back to sRGB they are the PLY's 8-bit colours.
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(srgb * 255, c_ply, atol=1e-3)
    assert (linear < c_ply / 255 + 1e-6).all()  # darker than the sRGB values, as it must


def test_shells_and_levels(blender_run, tmp_path):
    run = open_run(blender_run, device="cpu")
    levels = run.shell_levels()  # nerf_synthetic: CDF 0.7, 0.5, 0.1, 0.001
    assert levels[1] == 0.0
    result = export(blender_run, "--shell", 0)
    assert result.exit_code == 0, result.output
    outer, _, _ = read_ply(blender_run / "mesh" / "mesh_step_0000002_shell0.ply")
    inner_path = tmp_path / "inner.ply"
    assert export(blender_run, "--level", levels[3], "-o", inner_path).exit_code == 0
    inner, _, _ = read_ply(inner_path)
    assert export(blender_run, "--shell", 1, "-o", tmp_path / "s.ply").exit_code == 0
    surface, _, _ = read_ply(tmp_path / "s.ply")
    # The shells are nested: outer shell (sdf > 0) outside the surface, inner inside.
    mean = [np.linalg.norm(v, axis=1).mean() for v in (outer, surface, inner)]
    assert mean[0] > mean[1] > mean[2]
    # level logit(p)/k in contracted units -> dataset units: / 0.75 * 3 ... = 4 * level, divided
    # by the slope |grad s|, which two Adam steps of +-lr move by up to ~30% (measured 0.0071
    # with the "gradient" curvature, 0.0111 with the "laplacian" one, for 4 * level = 0.0085);
    # a wrong unit conversion would be off by a factor 3 or more.
    assert 0.5 * 4 * levels[0] < mean[0] - mean[1] < 2 * 4 * levels[0]


def test_unbounded_run_exports_around_the_true_sphere(colmap_run):
    result = export(colmap_run)
    assert result.exit_code == 0, result.output
    vertices, colors, faces = read_ply(colmap_run / "mesh" / "mesh_step_0000002.ply")
    assert len(faces) > 0 and set(edge_uses(faces).values()) == {2}
    assert "watertight: yes" in result.output
    centre = np.array([2.0, -1.0, 0.5])  # write_colmap_scene's sphere, dataset frame
    assert np.linalg.norm(vertices.mean(0) - centre) < 0.35  # seeds 0-2: 0.18-0.21
    distance = np.linalg.norm(vertices - centre, axis=1)
    assert abs(distance.mean() - 0.8) < 0.2  # seeds 0-2: 0.84-0.87
    assert distance.max() < 1.5


def test_arm_geometry_is_uncontracted(colmap_run, tmp_path):
    """A level set on the cube of contracted radius 0.8 (in [-1, 1] units) lies in the arms;
    exported (normalized), it must sit at world radius R e^(2 a (0.8 - E) / (1 - E))."""
    run_dir = tmp_path / "arms"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(colmap_run / "config.toml", run_dir / "config.toml")
    state = torch.load(colmap_run / "checkpoints" / "step_0000002.pt", weights_only=False)
    run = open_run(colmap_run, device="cpu")
    contracted = run.field.contracted_vertices() * 2 - 1
    state["field"]["sdf"] = contracted.abs().amax(1) - 0.8
    state["field"]["prior"] = None  # exactly this sdf (not blended with the point-cloud prior)
    torch.save(state, run_dir / "checkpoints" / "step_0000002.pt")
    result = export(run_dir, "--normalized", "-o", tmp_path / "arms.ply")
    assert result.exit_code == 0, result.output
    vertices, _, faces = read_ply(tmp_path / "arms.ply")
    assert len(faces) > 0
    model = run.config.model
    expected = model.center_radius * np.exp(
        2 * model.arm_ratio * (0.8 - model.center_extent) / (1 - model.center_extent)
    )
    radius = np.abs(vertices).max(axis=1)
    assert expected > 3 * model.center_radius  # far outside the linear centre
    np.testing.assert_allclose(radius, expected, rtol=1e-3)
    # --crop 1 keeps only the centre cube: nothing of this shell is left.
    result = export(run_dir, "--normalized", "--crop", 1, "-o", tmp_path / "crop.ply")
    assert result.exit_code == 0, result.output
    assert read_ply(tmp_path / "crop.ply")[2].shape[0] == 0


def test_bad_run_dirs_and_options_are_refused(blender_run, tmp_path):
    result = export(tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "empty").mkdir()
    result = export(tmp_path / "empty")
    assert result.exit_code == 2 and "not a run directory (no config.toml)" in result.output
    (tmp_path / "fresh").mkdir()
    shutil.copy(blender_run / "config.toml", tmp_path / "fresh" / "config.toml")
    result = export(tmp_path / "fresh")
    assert result.exit_code == 2 and "has no checkpoint" in result.output
    result = export(blender_run, "--step", 7)
    assert result.exit_code == 2 and "it has steps 2" in result.output
    result = export(blender_run, "--shell", 4)
    assert result.exit_code == 2 and "--shell must be in 0..3" in result.output
    result = export(blender_run, "--shell", 0, "--level", 0.1)
    assert result.exit_code == 2 and "not both" in result.output
    result = export(blender_run, "--format", "stl")
    assert result.exit_code == 2 and "'stl' is not one of 'ply', 'obj', 'glb'" in result.output


def test_weld_merges_coincident_vertices_and_drops_collapsed_faces():
    # Two triangles sharing an edge, the shared vertices duplicated; a third that collapses.
    vertices = np.array(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]],
        dtype=np.float32,
    )
    colors = np.arange(21, dtype=np.uint8).reshape(7, 3)
    faces = np.array([[0, 1, 2], [3, 4, 5], [0, 6, 1]])
    mesh, merged = weld(vertices, faces, colors)
    assert merged == 3
    assert mesh.num_vertices == 4 and mesh.num_faces == 2
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [1, 3, 2]])
    np.testing.assert_array_equal(mesh.colors, colors[[0, 1, 2, 4]])


def test_edge_report():
    tetra = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert edge_report(tetra).watertight
    open_mesh = edge_report(tetra[:3])
    assert not open_mesh.watertight and open_mesh.boundary == 3
    flipped = edge_report(np.concatenate([tetra[:3], tetra[3:, ::-1]]))
    assert not flipped.watertight and flipped.misoriented == 3 and flipped.boundary == 0
    fin = edge_report(np.concatenate([tetra, [[0, 1, 4]]]))
    assert fin.non_manifold == 1
