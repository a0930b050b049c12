"""The interactive web viewer: live renders while training, and of finished runs.

``meshtryoshka-train --experiment NAME viewer.enabled=true`` serves it while training and
``meshtryoshka-train view RUN_DIR`` serves a run's newest checkpoint. The page itself (the
camera controls, the widgets, the websocket) is viser's, an optional dependency
(``pip install 'meshtryoshka-train[viewer]'``); every frame is rendered here, by the training
renderer, and shown as the page's background image.

The two halves:

- `ViewRenderer` (no viser needed): the geometry of a view mode ("layered", "surface",
  "shell K (p=...)", K = 0 for the outermost, or "voxels"), cut by the cross-section, rendered
  from an OpenCV camera.
- `Viewer`: the viser server, its widgets, and `poll`, which the trainer calls after every
  step (`Trainer.step_hooks`). Widgets only record requests; `poll` renders them in the
  training thread, so a frame never sees a half-updated field.

Training speed: while training, `poll` renders only what a client needs (a moved camera, a
changed mode, or a live refresh every ``viewer.refresh_interval`` seconds), at
``viewer.moving_height`` while the camera moves and ``viewer.height`` once it rests, and only
while the time `poll` spends (frames, their encoding, widgets, buttons) stays under
``HOOK_SHARE * viewer.max_slowdown`` times the training time (`RenderBudget`). With no browser
connected, `poll` costs a few microseconds.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import Config, ConfigError, ViewerConfig
from .contraction import Contraction
from .evaluate import to_pixels
from .export import SH_C0, export_mesh
from .field import Extraction, Field
from .rendering import OPAQUE_SDF, extract_for_mode, extract_opaque, render_extraction
from .run import RunDir, Shell, Snapshot, read_metrics, shells_at, write_atomic
from .trainer import format_count

__all__ = [
    "INSTALL_HINT",
    "RenderBudget",
    "ViewRenderer",
    "Viewer",
    "ViewerUnavailable",
    "camera_from_pose",
    "clip_faces",
    "initial_view",
    "require_viser",
    "run_with_viewer",
    "view_modes",
    "voxel_boxes",
]

INSTALL_HINT = "pip install 'meshtryoshka-train[viewer]'"

SETTLE_SECONDS = 0.3
"""A camera that has not moved for this long is at rest: its frame is redone at full size."""

SECTION_AXES = ("x", "y", "z")


class ViewerUnavailable(ConfigError):
    """The viewer's optional dependency (viser) is not installed."""


def require_viser():
    """Import viser, or raise `ViewerUnavailable` saying how to install it."""
    try:
        import viser
    except ImportError as error:
        raise ViewerUnavailable(
            f"the viewer needs the optional dependency viser ({error}); install it with "
            f"{INSTALL_HINT}, or leave viewer.enabled=false"
        ) from None
    return viser


# --- geometry of the view modes ----------------------------------------------------------------


def view_modes(shells: Sequence[Shell]) -> list[str]:
    """The mode names for a step's `shells`: layered, surface, one per shell, voxels."""
    return ["layered", "surface", *[shell.label for shell in shells], "voxels"]


def shell_number(mode: str) -> int | None:
    """K of a "shell K (p=...)" mode name (`Shell.label`; 0 = outermost), else None."""
    match = re.fullmatch(r"shell (\d+).*", mode)
    return int(match.group(1)) if match else None


def clip_faces(
    extraction: Extraction, contraction: Contraction, axis: int, limit: float
) -> Extraction:
    """Keep the faces whose vertices all have contracted coordinate ``axis`` <= `limit`.

    The cross-section of the viewer: `limit` in [0, 1] (contracted units, so one slider covers
    bounded and unbounded scenes alike); ``limit >= 1`` keeps everything. Vertices are kept (the
    renderer ignores unused ones); ``face_offsets`` is recomputed per shell.
    """
    if limit >= 1.0 or extraction.num_faces == 0:
        return extraction
    inside = contraction.contract(extraction.positions)[:, axis] <= limit
    keep = inside[extraction.faces.long()].all(dim=1)
    shell_of_face = torch.repeat_interleave(
        torch.arange(len(extraction.face_offsets) - 1, device=keep.device),
        (extraction.face_offsets[1:] - extraction.face_offsets[:-1]).to(keep.device),
    )
    counts = torch.bincount(shell_of_face[keep], minlength=len(extraction.face_offsets) - 1)
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(extraction.face_offsets)
    return replace(extraction, faces=extraction.faces[keep].contiguous(), face_offsets=offsets)


# The six faces of a unit voxel: (axis, side) and the four corners in winding order.
_QUADS = []
for _axis in range(3):
    for _side in (0, 1):
        _u, _v = (_axis + 1) % 3, (_axis + 2) % 3
        _corners = []
        for _a, _b in ((0, 0), (1, 0), (1, 1), (0, 1)):
            _c = [0, 0, 0]
            _c[_axis], _c[_u], _c[_v] = _side, _a, _b
            _corners.append(_c)
        _QUADS.append((_axis, _side, _corners))
_AXIS_SHADE = (0.8, 0.65, 1.0)  # brightness of faces normal to x, y, z


@torch.no_grad()
def voxel_boxes(field: Field, section: tuple[int, float] | None = None) -> tuple[Extraction, int]:
    """The outer faces of the occupied voxels as one opaque shell; returns (it, voxel count).

    A face is drawn where a voxel has no occupied neighbour (so the boxes look solid), with
    its own four vertices, outward winding, and a colour from the voxel's contracted position
    shaded by the face's axis. `section` ``(axis, limit)`` first drops the voxels whose
    contracted centre lies beyond `limit` along `axis` (the cut then shows a solid slab).
    """
    device = field.device
    positions, colours, count = [], [], 0
    for block, grid in zip(field.layout.blocks, field.grids, strict=True):
        if section is not None and section[1] < 1.0:
            centres = grid.voxel_coords().float() + 0.5
            unit = centres / torch.tensor(grid.shape, device=device, dtype=torch.float32)
            contracted = block.to_contracted(unit, field.layout.center_extent)
            grid = grid.prune(contracted[:, section[0]] <= section[1])
        count += grid.num_voxels
        if grid.num_voxels == 0:
            continue
        coords = grid.voxel_coords()
        neighbours = grid.voxel_neighbors()
        dims = torch.tensor(grid.shape, device=device, dtype=torch.float32)
        centre_unit = (coords.float() + 0.5) / dims
        centre_contracted = block.to_contracted(centre_unit, field.layout.center_extent)
        centre_world = field.contraction.uncontract(centre_contracted)
        base = 0.2 + 0.7 * centre_contracted
        for q, (axis, _side, corners) in enumerate(_QUADS):
            open_face = neighbours[:, q] < 0
            if not bool(open_face.any()):
                continue
            offsets = torch.tensor(corners, device=device)
            quad = (coords[open_face][:, None, :] + offsets).float() / dims  # [F, 4, 3] unit
            world = field.contraction.uncontract(
                block.to_contracted(quad.reshape(-1, 3), field.layout.center_extent)
            ).reshape(-1, 4, 3)
            normal = torch.cross(world[:, 1] - world[:, 0], world[:, 2] - world[:, 0], dim=1)
            outward = world.mean(1) - centre_world[open_face]
            flip = (normal * outward).sum(1) < 0
            world = torch.where(flip[:, None, None], world.flip(1), world)
            positions.append(world.reshape(-1, 3))
            colour = (base[open_face] * _AXIS_SHADE[axis]).clamp(0, 1)
            colours.append(colour[:, None, :].expand(-1, 4, 3).reshape(-1, 3))
    if positions:
        pos = torch.cat(positions).float().contiguous()
        rgb = torch.cat(colours)
    else:
        pos, rgb = torch.zeros(0, 3, device=device), torch.zeros(0, 3, device=device)
    quads = torch.arange(pos.shape[0] // 4, device=device, dtype=torch.int32)[:, None] * 4
    faces = torch.cat(
        [
            quads + torch.tensor([0, 1, 2], device=device, dtype=torch.int32),
            quads + torch.tensor([0, 2, 3], device=device, dtype=torch.int32),
        ]
    )
    extraction = Extraction(
        positions=pos,
        faces=faces.contiguous(),
        face_offsets=torch.tensor([0, faces.shape[0]], device=device),
        sdf=torch.full((pos.shape[0],), OPAQUE_SDF, device=device),
        sh=((rgb - 0.5) / SH_C0)[:, None, :].contiguous(),
        face_voxels=[],
    )
    return extraction, count


# --- cameras -----------------------------------------------------------------------------------


def camera_from_pose(
    wxyz, position, fov_y: float, width: int, height: int
) -> tuple[Tensor, Tensor]:
    """(world_to_camera [4, 4], intrinsics [3, 3]) float32 of a viser camera.

    wxyz, position: the camera-to-world rotation (unit quaternion, w first) and centre, in the
    OpenCV convention (+x right, +y down, +z forward), as viser reports them. fov_y: vertical
    field of view in radians; pixels are square and the principal point is the image centre.
    """
    w, x, y, z = (float(v) for v in wxyz)
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    if not norm > 0:
        raise ValueError(f"wxyz must be a non-zero quaternion, got {list(wxyz)}")
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    rotation = torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )
    centre = torch.as_tensor(np.asarray(position, dtype=np.float64))
    world_to_camera = torch.eye(4, dtype=torch.float64)
    world_to_camera[:3, :3] = rotation.T
    world_to_camera[:3, 3] = -rotation.T @ centre
    if not 0 < fov_y < math.pi:
        raise ValueError(f"fov_y must be in (0, pi) radians, got {fov_y}")
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    intrinsics = torch.tensor(
        [[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]]
    )
    return world_to_camera.float(), intrinsics


@dataclass
class InitialView:
    """Where a new browser's camera starts: a dataset camera looking at the scene centre."""

    position: np.ndarray
    look_at: np.ndarray
    up: np.ndarray
    fov_y: float


def initial_view(dataset) -> InitialView:
    """The first test (else training) camera, aimed at the point nearest to every training
    camera's optical axis (least squares), with the cameras' mean up direction."""
    w2c = dataset.world_to_camera.double().cpu()
    c2w = torch.linalg.inv(w2c)
    centres, forward, down = c2w[:, :3, 3], c2w[:, :3, 2], c2w[:, :3, 1]
    train = dataset.splits["train"].cpu()
    # sum_i (I - d_i d_i^T) (p - c_i) = 0: the point closest to all training axes
    d = forward[train] / forward[train].norm(dim=1, keepdim=True)
    projector = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]
    a, b = projector.sum(0), (projector @ centres[train][:, :, None]).sum(0)[:, 0]
    try:
        look_at = torch.linalg.solve(a, b)
    except RuntimeError:  # parallel axes
        look_at = torch.zeros(3, dtype=torch.float64)
    up = -down[train].mean(0)
    up = up / up.norm().clamp_min(1e-12)
    split = dataset.splits["test"] if len(dataset.splits["test"]) else train
    first = int(split[0])
    fov = 2 * math.atan(0.5 * dataset.height / float(dataset.intrinsics[first, 1, 1]))
    return InitialView(centres[first].numpy(), look_at.numpy(), up.numpy(), fov)


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewState:
    """What a frame shows: the mode and the cross-section (axis 0..2, limit in [0, 1])."""

    mode: str = "layered"
    section_axis: int = 0
    section: float = 1.0


class ViewRenderer:
    """Renders a field in a view mode; keeps the last geometry for the same (step, view)."""

    def __init__(self, config: Config, background: Tensor):
        self.config = config
        self.background = background  # float32 [3]
        self._key = None
        self._geometry: tuple[Extraction, float | None] | None = None
        self.voxels = 0

    def modes(self, step: int) -> list[str]:
        return view_modes(shells_at(self.config.model, step))

    @torch.no_grad()
    def geometry(self, field: Field, step: int, view: ViewState) -> tuple[Extraction, float | None]:
        """(extraction, alpha_max) of `view`: alpha_max None means the model's (layered)."""
        key = (id(field), step, field.num_vertices, view)
        if key == self._key and self._geometry is not None:
            return self._geometry
        model = self.config.model
        section = (view.section_axis, view.section)
        if view.mode == "voxels":
            extraction, self.voxels = voxel_boxes(field, section)
            alpha_max = 1.0
        elif view.mode in ("layered", "surface"):
            extraction = extract_for_mode(field, model, step, view.mode)
            alpha_max = None if view.mode == "layered" else 1.0
        else:
            number = shell_number(view.mode)
            shells = shells_at(model, step)
            if number is None or not 0 <= number < len(shells):
                raise ValueError(f"unknown view mode {view.mode!r}; modes: {self.modes(step)}")
            extraction = extract_opaque(field, model, shells[number].level)
            alpha_max = 1.0
        if view.mode != "voxels":
            extraction = clip_faces(extraction, field.contraction, *section)
        self._key, self._geometry = key, (extraction, alpha_max)
        return self._geometry

    @torch.no_grad()
    def render(
        self,
        field: Field,
        step: int,
        view: ViewState,
        world_to_camera: Tensor,
        intrinsics: Tensor,
        size: tuple[int, int],
    ) -> np.ndarray:
        """uint8 ``[H, W, 3]`` frame of `view` from one camera (OpenCV world-to-camera)."""
        extraction, alpha_max = self.geometry(field, step, view)
        device = field.device
        if extraction.num_faces == 0:
            colour = (self.background.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            return np.broadcast_to(colour, (*size, 3)).copy()
        image, _ = render_extraction(
            extraction,
            world_to_camera[None].to(device),
            intrinsics[None].to(device),
            size,
            self.background[None].to(device),
            self.config.model,
            ssaa=1,
            near=self.config.model.train_near,
            alpha_max=alpha_max,
            # a cut shell is open: show its inside too (voxel slabs stay closed)
            cull_backfaces=view.section >= 1.0 or view.mode == "voxels",
        )
        return to_pixels(image[0])


#: The share of `viewer.max_slowdown` that `poll`'s own (timed) work may take. The rest is left
#: for what `poll` cannot time: viser's thread sending frames and receiving camera messages, and
#: the GPU queue that each frame's read-back drains.
HOOK_SHARE = 0.8


class RenderBudget:
    """Viewer time allowed while training: at most `share` of the training time (+ `burst`).

    `earn` credits ``share * seconds`` of training, capped at `burst`; `spend` debits the
    seconds of one poll's work (the credit may go negative: the next frame then waits until
    training has paid it back). Over any stretch of T seconds of training the viewer works at
    most ``share * T + burst`` seconds (plus the last poll's work).
    """

    def __init__(self, share: float, burst: float = 0.25):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.share, self.burst = share, burst
        self.credit = burst

    def earn(self, seconds: float) -> None:
        self.credit = min(self.credit + self.share * max(seconds, 0.0), self.burst)

    def available(self) -> bool:
        return self.credit > 0

    def spend(self, seconds: float) -> None:
        self.credit -= seconds


# --- the viser application ---------------------------------------------------------------------


@dataclass
class _Client:
    handle: object
    camera_time: float = 0.0  # last camera message (perf_counter); 0: none yet
    frame_camera_time: float = -1.0
    frame_view: ViewState | None = None
    frame_step: int = -1
    frame_time: float = 0.0
    frame_moving: bool = False


class Viewer:
    """The web viewer of a trainer (live) or of a restored run.

    `source` is a `Trainer` (live; `Trainer.snapshot` gives its state) or a `Snapshot`
    (`open_run`, a finished run). While training, add `poll`
    to ``trainer.step_hooks``; for a finished run, call `serve`. Files written:
    ``run_dir/viewer/*.png`` (screenshots), ``*.ply`` (meshes).
    """

    def __init__(self, source, *, training: bool, echo: Callable[[str], None] = print):
        viser = require_viser()
        self.source = source
        self.training = training
        self.echo = echo
        config: Config = source.config
        self.settings: ViewerConfig = config.viewer
        self.renderer = ViewRenderer(config, torch.tensor(source.dataset.eval_background))
        self.budget = RenderBudget(HOOK_SHARE * self.settings.max_slowdown, burst=0.1)
        self.lock = threading.Lock()
        self.clients: dict[int, _Client] = {}
        self.actions: list[tuple[str, int | None]] = []
        self.view = ViewState()
        self.stats: dict | None = None
        self.stats_time = 0.0
        self.step_times: deque[tuple[float, int]] = deque(maxlen=50)  # (time, step)
        self.rendered_seconds = 0.0
        self.frames = 0
        self._last_poll_end: float | None = None
        self._last_orbit = time.perf_counter()
        self._stop = threading.Event()
        self.logged = {} if training else _last_logged(source.run_dir)

        self.server = viser.ViserServer(
            host=self.settings.host, port=self.settings.port, label="Meshtryoshka", verbose=False
        )
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::") else "localhost"
        self.url = f"http://{host}:{self.server.get_port()}"
        start = initial_view(source.dataset)
        self.server.scene.set_up_direction(tuple(float(v) for v in start.up))
        self.server.initial_camera.position = tuple(float(v) for v in start.position)
        self.server.initial_camera.look_at = tuple(float(v) for v in start.look_at)
        self.server.initial_camera.up = tuple(float(v) for v in start.up)
        self.server.initial_camera.fov = start.fov_y
        self._build_gui()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    # ------------------------------------------------------------------------ widgets
    def _build_gui(self) -> None:
        gui = self.server.gui
        step = self.source.step
        with gui.add_folder("View"):
            self.mode_widget = gui.add_dropdown(
                "Mode", tuple(self.renderer.modes(step)), initial_value="layered"
            )
            self.axis_widget = gui.add_dropdown("Section axis", SECTION_AXES, initial_value="x")
            self.section_widget = gui.add_slider(
                "Section", min=0.0, max=1.0, step=0.01, initial_value=1.0
            )
            self.orbit_widget = gui.add_checkbox("Auto-orbit", initial_value=False)
        for widget in (self.mode_widget, self.axis_widget, self.section_widget):
            widget.on_update(lambda _event: self._view_changed())
        with gui.add_folder("Run"):
            self.stats_widget = gui.add_markdown(self._stats_text())
            self.pause_widget = (
                gui.add_checkbox("Pause training", initial_value=False) if self.training else None
            )
            self.screenshot_button = gui.add_button("Save screenshot")
            self.export_button = gui.add_button("Export mesh")
        self.screenshot_button.on_click(lambda event: self._request("screenshot", event))
        self.export_button.on_click(lambda event: self._request("export", event))

    def _view_changed(self) -> None:
        view = ViewState(
            str(self.mode_widget.value),
            SECTION_AXES.index(str(self.axis_widget.value)),
            float(self.section_widget.value),
        )
        with self.lock:
            self.view = view

    def _request(self, action: str, event) -> None:
        with self.lock:
            self.actions.append((action, event.client_id))

    def _connect(self, client) -> None:
        state = _Client(client)

        def moved(_camera) -> None:
            with self.lock:
                state.camera_time = time.perf_counter()

        client.camera.on_update(moved)
        with self.lock:
            self.clients[client.client_id] = state

    def _disconnect(self, client) -> None:
        with self.lock:
            self.clients.pop(client.client_id, None)

    # ------------------------------------------------------------------------ the hook
    def poll(self, trainer=None, stats: dict | None = None) -> float:
        """Serve pending requests; call after every training step (``Trainer.step_hooks``).

        Returns the seconds spent paused ("Pause training"), which the trainer leaves out
        of its steps/s.
        """
        start = time.perf_counter()
        source = trainer if trainer is not None else self.source
        if self._last_poll_end is not None and self.training:
            self.budget.earn(start - self._last_poll_end)
        if stats is not None:
            self.stats = stats
            self.step_times.append((start, source.step))
        self._work(source, budgeted=self.training)
        if self.training:  # all of the hook's work counts: frames, encoding, widgets, buttons
            self.budget.spend(time.perf_counter() - start)
        paused = 0.0
        while self._paused(source):
            began = time.perf_counter()
            if not self._work(source, budgeted=False):
                time.sleep(0.02)
            paused += time.perf_counter() - began
        self._last_poll_end = time.perf_counter()
        return paused

    def _paused(self, source) -> bool:
        """The "Pause training" box is ticked, and neither `close` nor a signal (Ctrl-C,
        SIGTERM: the trainer's ``stop_signal``) asked to stop."""
        if self.pause_widget is None or not self.pause_widget.value or self._stop.is_set():
            return False
        return getattr(source, "stop_signal", None) is None

    def _work(self, source, *, budgeted: bool) -> bool:
        """Stats, actions, auto-orbit and due frames; True when something was rendered."""
        now = time.perf_counter()
        if now - self.stats_time > 0.5:
            self._refresh_widgets(source)
            self.stats_time = now
        with self.lock:
            actions, self.actions = self.actions, []
        for action, client_id in actions:
            try:
                self._run_action(source, action, client_id)
            except Exception as error:  # a full disk, say: report it, keep training
                self.echo(f"viewer: {action} failed ({type(error).__name__}: {error})")
        self._orbit(now)
        return self._render_due(source, budgeted=budgeted)

    def _refresh_widgets(self, source) -> None:
        modes = tuple(self.renderer.modes(source.step))
        if tuple(self.mode_widget.options) != modes:
            current = self.mode_widget.value
            self.mode_widget.options = modes
            if current not in modes:
                self.mode_widget.value = "layered"
        text = self._stats_text(source)
        if text != self.stats_widget.content:
            self.stats_widget.content = text

    def _stats_text(self, source=None) -> str:
        source = source or self.source
        config = source.config
        lines = [f"**step** {source.step} / {config.train.steps}"]
        stats = self.stats
        if stats is None:  # a restored run: its last logged step, if it is this one
            stats = self.logged.get("train")
            stats = stats if stats is not None and stats.get("step") == source.step else None
        shown = []
        for key, label, fmt in (
            ("total", "loss", "{:.4f}".format),
            ("psnr", "PSNR", "{:.2f} dB".format),
            ("faces", "faces", format_count),
        ):
            if stats is not None and key in stats:
                shown.append(f"**{label}** {fmt(float(stats[key]))}")
        if shown:
            lines.append(" &nbsp; ".join(shown))
        if len(self.step_times) > 1:
            (t0, s0), (t1, s1) = self.step_times[0], self.step_times[-1]
            if t1 > t0:
                lines.append(f"**speed** {(s1 - s0) / (t1 - t0):.2f} steps/s")
        test = self.logged.get("test")
        if self.stats is None and test is not None and test.get("step") == source.step:
            lines.append(
                f"**test PSNR** layered {test['layered_psnr']:.2f} dB, surface "
                f"{test['surface_psnr']:.2f} dB"
            )
        field = source.field
        lines.append(
            f"**grid** {field.center_resolution}"
            + (f"/{field.arm_resolution}" if field.arm_resolution else "")
            + f", {format_count(field.num_voxels)} voxels, SH degree {field.sh_degree}"
        )
        if self._geometry_faces is not None:
            lines.append(f"**shown** {format_count(self._geometry_faces)} faces")
        return "  \n".join(lines)

    _geometry_faces: int | None = None

    def _orbit(self, now: float) -> None:
        elapsed, self._last_orbit = now - self._last_orbit, now
        if not self.orbit_widget.value:
            return
        angle = math.radians(20.0) * min(elapsed, 0.2)  # 20 degrees per second
        with self.lock:
            handles = [c.handle for c in self.clients.values() if c.camera_time > 0]
        for handle in handles:
            camera = handle.camera
            target, up = np.asarray(camera.look_at), np.asarray(camera.up_direction, dtype=float)
            up = up / max(np.linalg.norm(up), 1e-12)
            offset = np.asarray(camera.position) - target
            cos, sin = math.cos(angle), math.sin(angle)
            rotated = (
                offset * cos + np.cross(up, offset) * sin + up * np.dot(up, offset) * (1 - cos)
            )
            with handle.atomic():
                camera.position = target + rotated
                camera.look_at = target

    def _render_due(self, source, *, budgeted: bool) -> bool:
        now = time.perf_counter()
        with self.lock:
            view = self.view
            due = []
            for state in self.clients.values():
                if state.camera_time == 0:
                    continue  # no camera yet
                moved = state.camera_time > state.frame_camera_time
                settled = state.frame_moving and now - state.camera_time >= SETTLE_SECONDS
                live = (
                    self.training
                    and state.frame_step != source.step
                    and now - state.frame_time >= self.settings.refresh_interval
                )
                if moved or settled or live or state.frame_view != view:
                    due.append(state)
        rendered = False
        for state in sorted(due, key=lambda s: s.frame_time):
            if budgeted and not self.budget.available():
                break
            began = time.perf_counter()
            moving = began - state.camera_time < SETTLE_SECONDS
            camera_time = state.camera_time
            try:
                image = self._frame(source, state.handle, view, moving)
                state.handle.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
            except Exception as error:  # a closed socket, an odd camera: skip this frame
                self.echo(f"viewer: frame skipped ({type(error).__name__}: {error})")
                state.frame_view, state.frame_camera_time = view, camera_time
                continue
            self.rendered_seconds += time.perf_counter() - began
            self.frames += 1
            state.frame_view, state.frame_camera_time = view, camera_time
            state.frame_step, state.frame_time, state.frame_moving = source.step, began, moving
            rendered = True
        return rendered

    def _camera(self, handle, height: int) -> tuple[Tensor, Tensor, tuple[int, int]]:
        camera = handle.camera
        height = max(16, min(height, int(camera.image_height)))
        width = max(16, round(height * float(camera.aspect)))
        w2c, intrinsics = camera_from_pose(camera.wxyz, camera.position, camera.fov, width, height)
        return w2c, intrinsics, (height, width)

    def _frame(self, source, handle, view: ViewState, moving: bool) -> np.ndarray:
        height = self.settings.moving_height if moving else self.settings.height
        w2c, intrinsics, size = self._camera(handle, height)
        image = self.renderer.render(source.field, source.step, view, w2c, intrinsics, size)
        self._geometry_faces = self.renderer.geometry(source.field, source.step, view)[0].num_faces
        return image

    # ------------------------------------------------------------------------ buttons
    def _run_action(self, source, action: str, client_id: int | None) -> None:
        with self.lock:
            state = self.clients.get(client_id) if client_id is not None else None
            view = self.view
        folder = RunDir(source.run_dir).viewer_dir
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "_", view.mode).strip("_")
        stem = f"{slug}_step_{source.step:07d}"
        if action == "screenshot":
            if state is None or state.camera_time == 0:
                return
            camera = state.handle.camera
            height = min(max(int(camera.image_height), 16), 2048)
            w2c, intrinsics, size = self._camera(state.handle, height)
            image = self.renderer.render(source.field, source.step, view, w2c, intrinsics, size)
            path = _unique(folder / f"screenshot_{stem}.png")
            from PIL import Image

            # atomically: a reader (the browser test) never sees a half-written PNG
            write_atomic(path, lambda file: Image.fromarray(image).save(file, format="PNG"))
            paths = [path]
        else:
            paths = self._export(source, view, folder, stem)
        for path in paths:
            self.echo(f"viewer: wrote {path}")
        if state is not None:
            state.handle.add_notification(
                "Saved", ", ".join(str(p) for p in paths), auto_close_seconds=8.0
            )
            for path in paths:
                if path.stat().st_size <= 64 * 2**20:  # larger files: only on disk
                    state.handle.send_file_download(path.name, path.read_bytes())

    def _export(self, source, view: ViewState, folder: Path, stem: str) -> list[Path]:
        """The mesh(es) of `view` (the whole level sets: the cross-section is not applied).

        surface / shell K: `export.export_mesh` (coloured, welded, dataset coordinates);
        layered: one file per shell; voxels: the box faces in normalized coordinates.
        """
        if view.mode == "voxels":
            from slang_marching_cubes import write_ply

            boxes, _ = voxel_boxes(source.field)
            path = _unique(folder / f"mesh_{stem}.ply")
            write_ply(path, boxes.positions, boxes.faces)
            return [path]
        snapshot = source if isinstance(source, Snapshot) else source.snapshot()
        if view.mode == "surface":
            chosen = [(0.0, "")]
        elif view.mode == "layered":
            chosen = [(shell.level, shell.suffix) for shell in snapshot.shells()]
        else:
            chosen = [(snapshot.shell(shell_number(view.mode)).level, "")]
        return [
            export_mesh(
                snapshot, level=level, output=_unique(folder / f"mesh_{stem}{suffix}.ply")
            ).path
            for level, suffix in chosen
        ]

    # ------------------------------------------------------------------------ lifetime
    def serve(self) -> None:
        """Serve until `close` or Ctrl-C (for a finished run, or after training)."""
        self.training = False
        if self.pause_widget is not None:
            self.pause_widget.value = False
            self.pause_widget.visible = False
        try:
            while not self._stop.is_set():
                if not self.poll():
                    time.sleep(1 / 60)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self.server.stop()


def _last_logged(run_dir: Path) -> dict[str, dict]:
    """The last entry of each event ("train", "test", ...) of a run's metrics.jsonl."""
    return {entry["event"]: entry for entry in read_metrics(run_dir) if "event" in entry}


def _unique(path: Path) -> Path:
    """`path`, or path with _2, _3, ... before the suffix when it exists."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
    return candidate


def run_with_viewer(trainer, echo: Callable[[str], None] = print):
    """``trainer.run()`` with the viewer serving it; after training, serve until Ctrl-C
    (``viewer.keep_alive``). Returns what `run` returns."""
    viewer = Viewer(trainer, training=True, echo=echo)
    echo(f"viewer: {viewer.url}")
    trainer.step_hooks.append(viewer.poll)
    try:
        result = trainer.run()
    except BaseException:
        viewer.close()
        raise
    finally:
        trainer.step_hooks.remove(viewer.poll)
    if trainer.config.viewer.keep_alive:
        echo(f"training finished; the viewer stays at {viewer.url} (Ctrl-C to quit)")
        viewer.serve()
    else:
        viewer.close()
    return result
