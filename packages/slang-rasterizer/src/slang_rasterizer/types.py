"""Input and output containers: cameras, the shell mesh, explicit-mode fragments.

Each container validates itself on construction and raises ``ValueError`` naming the field and
what was expected. Conventions (DESIGN §3): OpenCV world-to-camera matrices (+x right, +y down,
+z forward), pixel intrinsics, pixel centres at +0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Cameras", "ShellMesh", "Fragments"]


def describe(t: Tensor) -> str:
    """``float32 [4, 3] on cpu``-style summary of a tensor, for error messages."""
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)} on {t.device}"


def _check_tensor(value, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Cameras:
    """A batch of B pinhole cameras sharing one image size.

    Attributes:
        world_to_camera: float32 [B, 4, 4], OpenCV world-to-camera matrices (+x right, +y down,
            +z forward). The top-left 3x3 block may carry a scale; it must be invertible.
        intrinsics: float32 [B, 3, 3], pixel intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``
            with fx, fy > 0 (no skew). Pixel (i, j) (row i, column j) has its centre at
            ``(j + 0.5, i + 0.5)``.
        image_size: (H, W) in pixels, both >= 1.
    """

    world_to_camera: Tensor
    intrinsics: Tensor
    image_size: tuple[int, int]
    check_values: bool = field(default=True, repr=False, compare=False)
    """False skips the checks that read tensor values (finite, the intrinsics' form, the last
    row, invertibility): each is a GPU -> host sync. For cameras valid by construction (a
    training loop's, already checked once); types, shapes and devices are always checked."""

    def __post_init__(self):
        e = _check_tensor(self.world_to_camera, "cameras.world_to_camera")
        k = _check_tensor(self.intrinsics, "cameras.intrinsics")
        if e.dtype != torch.float32 or e.dim() != 3 or e.shape[1:] != (4, 4) or e.shape[0] < 1:
            raise ValueError(
                f"cameras.world_to_camera must be float32 [B, 4, 4] with B >= 1, got {describe(e)}"
            )
        if k.dtype != torch.float32 or k.shape != (e.shape[0], 3, 3):
            raise ValueError(
                f"cameras.intrinsics must be float32 [B, 3, 3] with B = {e.shape[0]} "
                f"(as world_to_camera), got {describe(k)}"
            )
        if k.device != e.device:
            raise ValueError(
                f"cameras.intrinsics is on {k.device} but cameras.world_to_camera on {e.device}"
            )
        if self.check_values:
            self._check_values(e, k)
        size = self.image_size
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        ):
            raise ValueError(f"cameras.image_size must be a pair of ints (H, W), got {size!r}")
        if size[0] < 1 or size[1] < 1:
            raise ValueError(f"cameras.image_size must be >= 1 in both (H, W), got {tuple(size)}")
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))

    @staticmethod
    def _check_values(e: Tensor, k: Tensor) -> None:
        if not bool(torch.isfinite(e).all()):
            raise ValueError("cameras.world_to_camera must be finite, got NaN or inf entries")
        if not bool(torch.isfinite(k).all()):
            raise ValueError("cameras.intrinsics must be finite, got NaN or inf entries")
        if not bool((k[:, 0, 0] > 0).all() and (k[:, 1, 1] > 0).all()):
            raise ValueError(
                "cameras.intrinsics must have fx > 0 and fy > 0 (K[:, 0, 0], K[:, 1, 1])"
            )
        zero = torch.stack([k[:, 0, 1], k[:, 1, 0], k[:, 2, 0], k[:, 2, 1]], dim=-1)
        if not bool((zero == 0).all() and (k[:, 2, 2] == 1).all()):
            raise ValueError(
                "cameras.intrinsics must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)"
            )
        if not bool((e[:, 3] == torch.tensor([0.0, 0.0, 0.0, 1.0], device=e.device)).all()):
            raise ValueError("cameras.world_to_camera must have last row [0, 0, 0, 1]")
        if bool((torch.linalg.det(e[:, :3, :3].double()).abs() < 1e-12).any()):
            raise ValueError("cameras.world_to_camera must have an invertible 3x3 block")

    @property
    def batch_size(self) -> int:
        """B, the number of cameras."""
        return self.world_to_camera.shape[0]

    @property
    def device(self) -> torch.device:
        return self.world_to_camera.device

    def centers(self) -> Tensor:
        """Camera centres in world space, float32 [B, 3]: ``-A^-1 t`` for ``E = [A | t]``."""
        e = self.world_to_camera.double()
        return (-torch.linalg.solve(e[:, :3, :3], e[:, :3, 3:]))[..., 0].float()

    def scaled(self, factor: int) -> Cameras:
        """The same cameras rendering at ``factor`` times the resolution (fx, fy, cx, cy scaled).

        A pixel of the scaled camera covers 1/factor^2 of an original pixel; its centre at
        ``(j + 0.5) / factor`` in original pixel units, so box-filtering factor x factor blocks
        gives the original pixel grid.
        """
        if factor == 1:
            return self
        k = self.intrinsics.clone()
        k[:, :2] *= factor
        h, w = self.image_size
        return Cameras(self.world_to_camera, k, (h * factor, w * factor), check_values=False)

    def slice(self, start: int, stop: int) -> Cameras:
        """Cameras ``start:stop`` of the batch (no new value checks)."""
        return Cameras(
            self.world_to_camera[start:stop],
            self.intrinsics[start:stop],
            self.image_size,
            check_values=False,
        )


@dataclass(frozen=True)
class ShellMesh:
    """S triangle meshes ("shells") stored as one triangle list, outermost shell first.

    Attributes:
        positions: float32 [N, 3], vertex positions in world space (no gradient).
        faces: int32 [M, 3], vertex indices into positions. The right-hand normal
            ``(v1 - v0) x (v2 - v0)`` points outward (toward increasing sdf); back-face culling
            keeps a face when that normal points toward the camera centre.
        face_offsets: int64 [S + 1], CSR ranges: shell s is ``faces[face_offsets[s]:
            face_offsets[s + 1]]``. ``face_offsets[0] == 0``, ``face_offsets[-1] == M``,
            non-decreasing. Shell 0 is the outermost; compositing goes by increasing index.
    """

    positions: Tensor
    faces: Tensor
    face_offsets: Tensor
    check_values: bool = field(default=True, repr=False, compare=False)
    """False skips the checks that read tensor values (finite positions, face indices in
    range, the offsets' order): each is a GPU -> host sync. For meshes valid by construction
    (marching cubes output); types, shapes and devices are always checked."""

    def __post_init__(self):
        p = _check_tensor(self.positions, "mesh.positions")
        f = _check_tensor(self.faces, "mesh.faces")
        o = _check_tensor(self.face_offsets, "mesh.face_offsets")
        if p.dtype != torch.float32 or p.dim() != 2 or p.shape[1] != 3:
            raise ValueError(f"mesh.positions must be float32 [N, 3], got {describe(p)}")
        if f.dtype != torch.int32 or f.dim() != 2 or f.shape[1] != 3:
            raise ValueError(f"mesh.faces must be int32 [M, 3], got {describe(f)}")
        if o.dtype != torch.int64 or o.dim() != 1 or o.shape[0] < 1:
            raise ValueError(f"mesh.face_offsets must be int64 [S + 1], got {describe(o)}")
        if f.device != p.device or o.device != p.device:
            raise ValueError(
                f"mesh tensors must share one device, got positions on {p.device}, "
                f"faces on {f.device}, face_offsets on {o.device}"
            )
        if self.check_values:
            self._check_values(p, f, o)

    @staticmethod
    def _check_values(p: Tensor, f: Tensor, o: Tensor) -> None:
        if not bool(torch.isfinite(p).all()):
            raise ValueError("mesh.positions must be finite, got NaN or inf entries")
        if f.numel() > 0:
            lo, hi = int(f.min()), int(f.max())
            if lo < 0 or hi >= p.shape[0]:
                raise ValueError(
                    f"mesh.faces must index positions in [0, {p.shape[0] - 1}], "
                    f"got indices in [{lo}, {hi}]"
                )
        if int(o[0]) != 0 or int(o[-1]) != f.shape[0] or bool((o[1:] < o[:-1]).any()):
            raise ValueError(
                f"mesh.face_offsets must be non-decreasing from 0 to M = {f.shape[0]}, "
                f"got {o.tolist() if o.numel() <= 20 else describe(o)}"
            )

    @property
    def num_shells(self) -> int:
        """S, the number of shells."""
        return self.face_offsets.shape[0] - 1

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def face_shells(self) -> Tensor:
        """Shell index of every face, int64 [M]."""
        counts = self.face_offsets[1:] - self.face_offsets[:-1]
        return torch.repeat_interleave(torch.arange(self.num_shells, device=self.device), counts)


@dataclass(frozen=True)
class Fragments:
    """Explicit-mode hits: per camera, shell and pixel, the nearest front-facing triangle.

    Attributes:
        face_index: int32 [B, S, H, W], index into mesh.faces, -1 where the shell is missed.
        bary: float32 [B, S, H, W, 2], perspective-correct barycentrics (l1, l2) of vertices 1
            and 2 of the hit face; vertex 0 has ``l0 = 1 - l1 - l2``. Zero on a miss.
    """

    face_index: Tensor
    bary: Tensor

    def __post_init__(self):
        fi = _check_tensor(self.face_index, "fragments.face_index")
        b = _check_tensor(self.bary, "fragments.bary")
        if fi.dtype != torch.int32 or fi.dim() != 4:
            raise ValueError(f"fragments.face_index must be int32 [B, S, H, W], got {describe(fi)}")
        if b.dtype not in (torch.float32, torch.float64) or b.shape != (*fi.shape, 2):
            raise ValueError(
                f"fragments.bary must be float [B, S, H, W, 2] with [B, S, H, W] = "
                f"{list(fi.shape)}, got {describe(b)}"
            )
        if b.device != fi.device:
            raise ValueError(
                f"fragments.bary is on {b.device} but fragments.face_index on {fi.device}"
            )

    @property
    def hit(self) -> Tensor:
        """bool [B, S, H, W], True where the shell is hit."""
        return self.face_index >= 0
