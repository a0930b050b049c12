"""Every bad input raises ValueError naming the argument."""

import math

import pytest
import torch

import slang_rasterizer as sr
from slang_rasterizer import _slang
from slang_rasterizer.shapes import icosphere, orbit_cameras, shell_mesh


@pytest.fixture
def good():
    p, f = icosphere(0)
    mesh = shell_mesh([(p, f), (0.5 * p, f)])
    cams = orbit_cameras(2, 3.0, (8, 9))
    n = p.shape[0] * 2
    return cams, mesh, torch.zeros(n), torch.zeros(n, 4, 3), torch.zeros(3)


E = torch.eye(4)[None]
K = torch.tensor([[[10.0, 0.0, 4.0], [0.0, 10.0, 4.0], [0.0, 0.0, 1.0]]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(world_to_camera=torch.eye(4)), r"world_to_camera must be float32 \[B, 4, 4\]"),
        (dict(world_to_camera=E.double()), "world_to_camera must be float32"),
        (dict(world_to_camera=E * float("nan")), "world_to_camera must be finite"),
        (dict(world_to_camera=torch.zeros(1, 4, 4)), "world_to_camera must have last row"),
        (dict(intrinsics=K * float("inf")), "intrinsics must be finite"),
        (dict(intrinsics=K.expand(2, 3, 3)), r"intrinsics must be float32 \[B, 3, 3\] with B = 1"),
        (dict(intrinsics=-K), "fx > 0"),
        (dict(image_size=(0, 5)), "image_size must be >= 1"),
        (dict(image_size=(4.0, 5)), "image_size must be a pair of ints"),
        (dict(image_size=(4,)), "image_size must be a pair of ints"),
    ],
)
def test_bad_cameras(kwargs, match):
    args = dict(world_to_camera=E, intrinsics=K, image_size=(8, 8)) | kwargs
    with pytest.raises(ValueError, match=match):
        sr.Cameras(**args)


def test_singular_camera_and_skew():
    e = E.clone()
    e[0, 2, 2] = 0
    with pytest.raises(ValueError, match="invertible"):
        sr.Cameras(e, K, (4, 4))
    k = K.clone()
    k[0, 0, 1] = 1.0
    with pytest.raises(ValueError, match="no skew"):
        sr.Cameras(E, k, (4, 4))


P = torch.zeros(3, 3)
F = torch.tensor([[0, 1, 2]], dtype=torch.int32)
OFFSETS = torch.tensor([0, 1])


@pytest.mark.parametrize(
    "args, match",
    [
        ((P.double(), F, OFFSETS), r"mesh.positions must be float32 \[N, 3\], got float64"),
        ((P[:, :2], F, OFFSETS), r"mesh.positions must be float32 \[N, 3\]"),
        ((P * math.inf, F, OFFSETS), "mesh.positions must be finite"),
        ((P, F.long(), OFFSETS), r"mesh.faces must be int32 \[M, 3\], got int64 \[1, 3\]"),
        ((P, F[:, :2], OFFSETS), r"mesh.faces must be int32 \[M, 3\]"),
        (
            (P, F + 1, OFFSETS),
            r"mesh.faces must index positions in \[0, 2\], got indices in \[1, 3\]",
        ),
        ((P, F - 1, OFFSETS), "mesh.faces must index positions"),
        ((P, F, OFFSETS.int()), r"mesh.face_offsets must be int64 \[S \+ 1\]"),
        ((P, F, torch.tensor([0, 2])), "mesh.face_offsets must be non-decreasing from 0 to M = 1"),
        ((P, F, torch.tensor([0, 1, 0, 1])), "mesh.face_offsets must be non-decreasing"),
        ((P, F, torch.tensor([1, 1])), "mesh.face_offsets must be non-decreasing"),
        (([[0.0] * 3] * 3, F, OFFSETS), "mesh.positions must be a torch.Tensor"),
    ],
)
def test_bad_mesh(args, match):
    with pytest.raises(ValueError, match=match):
        sr.ShellMesh(*args)


def test_check_values_false_skips_only_the_checks_that_read_values(monkeypatch):
    """check_values=False (the training loop's cameras and marching-cubes meshes: each value
    check is a GPU -> host sync) skips the value checks; types, shapes and devices stay."""
    sr.Cameras(E * float("nan"), -K, (8, 8), check_values=False)
    sr.ShellMesh(P * math.inf, F + 5, torch.tensor([1, 0]), check_values=False)
    with pytest.raises(ValueError, match="world_to_camera must be float32"):
        sr.Cameras(E.double(), K, (8, 8), check_values=False)
    with pytest.raises(ValueError, match="image_size must be >= 1"):
        sr.Cameras(E, K, (0, 8), check_values=False)
    with pytest.raises(ValueError, match=r"mesh.faces must be int32 \[M, 3\]"):
        sr.ShellMesh(P, F.long(), OFFSETS, check_values=False)
    # cameras derived from checked ones are not checked again
    checks = []
    check = sr.Cameras._check_values
    monkeypatch.setattr(
        sr.Cameras, "_check_values", staticmethod(lambda e, k: checks.append(1) or check(e, k))
    )
    cams = sr.Cameras(E.expand(3, 4, 4).contiguous(), K.expand(3, 3, 3).contiguous(), (8, 8))
    assert checks == [1]
    part = cams.scaled(3).slice(1, 3)
    assert checks == [1] and part.batch_size == 2 and part.image_size == (24, 24)
    assert torch.equal(part.intrinsics[:, 0, 0], torch.full((2,), 30.0))


def test_bad_render_arguments(good):
    cams, mesh, sdf, sh, bg = good
    n = sdf.shape[0]

    def call(**kw):
        args = dict(cameras=cams, mesh=mesh, sdf=sdf, sh=sh, sharpness=100.0, background=bg) | kw
        return sr.render(**args)

    cases = [
        (dict(cameras="cams"), "cameras must be a Cameras"),
        (dict(mesh=(1, 2)), "mesh must be a ShellMesh"),
        (dict(sdf=torch.zeros(n + 1)), rf"sdf must be float32 \[N\] with N = {n}"),
        (dict(sdf=torch.zeros(n, dtype=torch.int32)), "sdf must be float32"),
        (dict(sh=torch.zeros(n, 5, 3)), r"sh must be float32 \[N, n_sh, 3\]"),
        (dict(sh=torch.zeros(n, 4, 3).double()), "sh must be float32"),
        (dict(sh=torch.zeros(n - 1, 4, 3)), r"sh must be float32 \[N, n_sh, 3\] with N"),
        (dict(sharpness=0.0), r"sharpness must be a finite number in \(0.0, inf\]"),
        (dict(sharpness=float("nan")), "sharpness must be a finite number"),
        (dict(background=torch.zeros(4)), r"background must be float \[3\] or \[B, 3, H, W\]"),
        (dict(background=torch.zeros(2, 3, 8, 8)), r"\[2, 3, 8, 9\]"),
        (dict(mode="fast"), "mode must be 'fused' or 'explicit'"),
        (dict(ssaa=0), r"ssaa must be an int in \[1, 16\]"),
        (dict(ssaa=2.0), "ssaa must be an int"),
        (dict(near=0.0), "near must be a finite number > 0"),
        (dict(near=-1.0), "near must be a finite number > 0"),
        (dict(near=float("inf")), "near must be a finite number > 0"),
        (dict(alpha_max=1.5), r"alpha_max must be a finite number in \(0.0, 1.0\]"),
        (dict(alpha_max=0.0), "alpha_max must be"),
        (dict(backend="cuda"), "backend must be 'auto', 'reference' or 'slang'"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            call(**kw)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend='slang' needs CUDA tensors"):
            call(backend="slang")


def test_too_many_shells_for_fused_mode():
    p, f = icosphere(0)
    mesh = shell_mesh([(p, f)] * (sr.MAX_FUSED_SHELLS + 1))
    cams = orbit_cameras(1, 3.0, (4, 4))
    n = mesh.positions.shape[0]
    args = (cams, mesh, torch.zeros(n), torch.zeros(n, 1, 3), 10.0, torch.zeros(3))
    with pytest.raises(
        ValueError, match=f"at most {sr.MAX_FUSED_SHELLS} shells, got mesh.num_shells = 17"
    ):
        sr.render(*args)
    image, _ = sr.render(*args, mode="explicit")  # explicit mode has no such limit
    assert image.shape == (1, 3, 4, 4)


def test_bad_piece_arguments(good):
    cams, mesh, sdf, sh, bg = good
    frags = sr.rasterize(cams, mesh)
    with pytest.raises(ValueError, match="near must be"):
        sr.rasterize(cams, mesh, near=0)
    with pytest.raises(ValueError, match=r"faces must be int32 \[M, 3\]"):
        sr.interpolate(sdf, mesh.faces.long(), frags)
    with pytest.raises(ValueError, match="attributes must be a float32 or float64 tensor"):
        sr.interpolate(sdf.int(), mesh.faces, frags)
    with pytest.raises(
        ValueError, match=r"attributes must be \[N\], \[N, C\] or \[B, N, C\] with B = 2"
    ):
        sr.interpolate(torch.zeros(3, sdf.shape[0], 2), mesh.faces, frags)
    with pytest.raises(ValueError, match="faces must index attributes"):
        sr.interpolate(sdf[:5], mesh.faces, frags)
    with pytest.raises(ValueError, match="fragments must be a Fragments"):
        sr.interpolate(sdf, mesh.faces, frags.face_index)
    with pytest.raises(ValueError, match=r"fragments.bary must be float \[B, S, H, W, 2\]"):
        sr.Fragments(frags.face_index, frags.bary[..., :1])
    with pytest.raises(ValueError, match=r"fragments.face_index must be int32"):
        sr.Fragments(frags.face_index.long(), frags.bary)
    with pytest.raises(ValueError, match=r"sh must be float \[N, n_sh, 3\] with n_sh in"):
        sr.eval_sh(torch.zeros(5, 3, 3), torch.zeros(5, 3), cams.centers())
    with pytest.raises(ValueError, match=r"positions must be float \[N, 3\] with N = 5"):
        sr.eval_sh(torch.zeros(5, 4, 3), torch.zeros(4, 3), cams.centers())
    with pytest.raises(ValueError, match=r"camera_centers must be float \[B, 3\]"):
        sr.eval_sh(torch.zeros(5, 4, 3), torch.zeros(5, 3), torch.zeros(3))
    s = torch.zeros(2, 2, 3, 3)
    c = torch.zeros(2, 2, 3, 3, 3)
    hit = torch.ones(2, 2, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"sdf must be float \[B, S, H, W\]"):
        sr.composite(s[0], c, hit, 1.0)
    with pytest.raises(ValueError, match=r"colors must be float32 \[B, S, H, W, 3\]"):
        sr.composite(s, c[..., :2], hit, 1.0)
    with pytest.raises(ValueError, match=r"hit must be bool \[B, S, H, W\]"):
        sr.composite(s, c, hit.float(), 1.0)
    with pytest.raises(ValueError, match="background must be float"):
        sr.composite(s, c, hit, 1.0, torch.zeros(2, 3, 4, 4))


def test_key_layout_raises_before_wrapping():
    assert _slang.key_layout(4, (800, 800), 10**6) == (50, 50)
    with pytest.raises(ValueError, match="cameras x tiles"):
        _slang.key_layout(2**12, (2**14, 2**14), 10)
    with pytest.raises(ValueError, match="cameras x faces"):
        _slang.key_layout(4, (8, 8), 2**29)


def test_backend_rule_is_the_runtimes_under_this_packages_name():
    from slang_rasterizer import compilation, resolve_backend, slang_available

    assert resolve_backend == compilation.KERNELS.resolve_backend  # tested in slang-kernel-runtime
    assert slang_available == compilation.KERNELS.slang_available
    # the name that its fallback notice and its errors carry
    assert compilation.KERNELS.PACKAGE == "slang_rasterizer"


def test_explicit_slang_never_runs_the_reference_quietly(good):
    cams, mesh, sdf, sh, bg = good
    with pytest.raises(ValueError, match=r"backend='slang' needs CUDA tensors, got sdf and sh on"):
        sr.render(cams, mesh, sdf.double(), sh.double(), 10.0, bg.double(), backend="slang")
    frags = sr.rasterize(cams, mesh)
    with pytest.raises(ValueError, match=r"backend='slang' needs CUDA tensors, got attributes"):
        sr.interpolate(sdf.double(), mesh.faces, frags, backend="slang")
