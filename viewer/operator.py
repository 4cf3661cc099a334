"""The operator UI on viser: splats, training cameras, render modes, crop box, camera paths.

Scene graph: ``/world`` is a frame carrying the run's world-to-scene transform (centred, Z up; see
:mod:`viewer.run`), so everything below it is added in recon's world coordinates: ``/world/splats``
(viser's Gaussian splats, degree-0 colour), ``/world/cameras/i`` (training frustums, with
thumbnails when the images are found), ``/world/path/...`` (camera-path keyframes and spline).
viser's own camera (``client.camera``) is in the scene frame; :class:`viewer.run.SceneFrame`
converts.

Selection (the "Select" folder): with "Select mode" on, a box dragged on the view (or a click, with
``recon view --segment-model``) is lifted to the Gaussians by :mod:`viewer.select` (the code of
``recon select``), saved as ``RUN/selections/NAME.*`` and shown alone (or hidden).

Time (the "Time" folder, dynamic runs trained on two or more times only): a scene-time slider in
[0, 1], play/pause at a number of capture frames per second, loop, and steps to the previous/next
capture frame. The server-side modes render through the run's own renderer at that time; the
browser's splats are replaced by the model at that time (one push at a time, always the latest).
Crop boxes and selections are decided on the model at time 0 and keep the same Gaussians at
every time, as ``recon export`` does.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np

from recon.scene.conventions import qvec_to_rotmat, rotmat_to_qvec
from viewer import render as server_render
from viewer.camera_path import Keyframe, interpolate, read_keyframes, to_nerfstudio, write_camera_path
from viewer.run import Run
from viewer.splats import to_viser

THUMB_PX = 128
MAX_THUMBS = 300


class OperatorUI:
    def __init__(self, server, run: Run, background: tuple[int, int, int] = (24, 24, 28), segmenter=None):
        self.server = server
        self.run = run
        self.selection: np.ndarray | None = None
        self.selector = None
        if run.splats_path is not None and any(c.split == "train" for c in run.cameras):
            from viewer.select import ViewerSelector

            self.selector = ViewerSelector(run.folder, segmenter)
        self._select_lock = threading.Lock()
        self.frame = run.frame
        self.keyframes: list[Keyframe] = []
        self._mask: np.ndarray | None = None
        self._closed = threading.Event()
        self._render_jobs: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.renderer = server_render.SplatRenderer(run.splats, getattr(run, "antialiased", False),
                                                    dynamic=getattr(run, "dynamic", None))
        self.plays = bool(getattr(run, "plays", False))
        self._splat_time = 0.0  # the time of the splats last sent to the browser
        self._splats_wanted = threading.Event()
        self._playing = threading.Event()
        self.rendered: dict[int, tuple[float, np.ndarray]] = {}
        """Per client: the time and image of the last server-side render sent to it."""
        self._means_scene = self.frame.to_scene(run.splats["means"].detach().cpu().numpy().astype(np.float64))

        sc = server.scene
        sc.set_up_direction("+z")
        R, t = self.frame.R, self.frame.t
        self.world = sc.add_frame("/world", show_axes=False, wxyz=rotmat_to_qvec(R), position=t)
        self.splats = None
        self._send_splats()
        self._add_cameras()
        self.points = None
        if run.points is not None and len(run.points):
            self.points = sc.add_point_cloud("/world/points", points=run.points, colors=run.point_colors,
                                             point_size=0.01 * self.frame.radius, point_shape="rounded",
                                             visible=False)
        self._set_initial_camera()
        self._build_gui(background)
        self._set_background(background)
        if self.plays:
            threading.Thread(target=self._splat_pusher, name="recon-viewer-time", daemon=True).start()

        server.on_client_connect(self._on_connect)

    # ------------------------------------------------------------------ scene
    def update_splats(self, splats: dict) -> None:
        """Replace the splats (same scene frame), keeping the crop and render mode."""
        with self._lock:
            self.run.splats = splats
            self._means_scene = self.frame.to_scene(splats["means"].detach().cpu().numpy().astype(np.float64))
            if self.renderer is not None:
                self.renderer = server_render.SplatRenderer(splats, getattr(self.run, "antialiased", False))
            if self.selection is not None and len(self.selection) != self.run.num_gaussians:
                self.selection = None  # made on another model
            self._mask = self.display_mask()
        self._send_splats()
        self.splats.visible = self.mode.value == "RGB"
        self._rerender_all()

    def set_status(self, text: str) -> None:
        """A line of status (e.g. training progress) under the run's summary."""
        self.status.content = text

    def current_time(self) -> float:
        """The scene time shown (0 for static runs)."""
        if not self.plays:
            return 0.0
        handle = getattr(self, "time", None)  # None while the GUI is being built
        return float(self.run.times[0]) if handle is None else float(handle.value)

    def _splats_now(self) -> dict:
        """The Gaussians at the time shown (the run's splats for a static run)."""
        if not self.plays:
            return self.run.splats
        t = self.current_time()
        self._splat_time = t
        return self.run.dynamic.gaussians(t)

    def _send_splats(self) -> None:
        arrays = to_viser(self._splats_now(), self._mask)
        if self.splats is not None:
            # viser's one-buffer update (count changes included): no remove/re-add flicker per live update.
            self.splats.set_gaussians(**arrays)
            return
        self.splats = self.server.scene.add_gaussian_splats("/world/splats", **arrays)

    def _add_cameras(self) -> None:
        self.frustums = []
        size = 0.08 * self.frame.radius
        for i, cam in enumerate(self.run.cameras):
            img = _thumbnail(cam.image) if (cam.image is not None and i < MAX_THUMBS) else None
            f = self.server.scene.add_camera_frustum(
                f"/world/cameras/{i}", fov=cam.fov_y, aspect=cam.width / cam.height, scale=size,
                image=img, format="jpeg", wxyz=rotmat_to_qvec(cam.c2w[:3, :3]), position=cam.c2w[:3, 3],
                color=(120, 160, 255) if cam.split == "train" else (150, 150, 150),
            )
            f.on_click(lambda ev, cam=cam: self._goto(ev.client, cam.c2w, cam.fov_y))
            self.frustums.append(f)

    def _set_initial_camera(self) -> None:
        ic = self.server.initial_camera
        r = self.frame.radius
        if self.run.cameras:
            c = self.run.cameras[0]
            c2w = self.frame.c2w_to_scene(c.c2w)
            eye, fwd = c2w[:3, 3], c2w[:3, 2]
            dist = max(float(np.linalg.norm(eye)), 1e-3)
            target = eye + fwd * dist
            # Near the first training camera, but turned 25 degrees about the vertical through the
            # target and a little farther and higher, so no frustum sits right in front of the view.
            a = np.radians(25.0)
            rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
            pos = target + 1.25 * (rot @ (eye - target)) + np.array([0.0, 0.0, 0.15 * dist])
            ic.position = pos
            ic.look_at = target
            ic.fov = c.fov_y
        else:
            ic.position = (0.0, -3.0 * r, 1.0 * r)
            ic.look_at = (0.0, 0.0, 0.0)
        ic.up = (0.0, 0.0, 1.0)

    def _goto(self, client, c2w_world: np.ndarray, fov_y: float | None = None) -> None:
        c2w = self.frame.c2w_to_scene(c2w_world)
        with client.atomic():
            client.camera.wxyz = rotmat_to_qvec(c2w[:3, :3])
            client.camera.position = c2w[:3, 3]
            if fov_y is not None:
                client.camera.fov = fov_y

    def client_c2w(self, client) -> np.ndarray:
        """The client's current camera as an OpenCV camera-to-world in recon's world frame."""
        c2w = np.eye(4)
        c2w[:3, :3] = qvec_to_rotmat(np.asarray(client.camera.wxyz, np.float64))
        c2w[:3, 3] = np.asarray(client.camera.position, np.float64)
        return self.frame.c2w_from_scene(c2w)

    # ------------------------------------------------------------------ GUI
    def _build_gui(self, background) -> None:
        gui = self.server.gui
        run = self.run
        with gui.add_folder("Run"):
            gui.add_markdown(f"**{run.folder.name}** · {run.num_gaussians:,} Gaussians · SH degree "
                             f"{run.sh_degree} · {len(run.cameras)} cameras")
            self.status = gui.add_markdown("")
            self.links = gui.add_markdown("")
        if self.plays:
            self._build_time_gui()
        with gui.add_folder("View"):
            modes = ["RGB"] + (list(server_render.MODES) if self.renderer else [])
            self.mode = gui.add_dropdown("Render", modes, initial_value="RGB",
                                         hint="RGB: in the browser. Others: rendered here by recon's rasterizer.")
            self.res = gui.add_slider("Server res.", 64, 1280, 32, 384, visible=self.renderer is not None,
                                      hint="Width of server-side renders (pixels)")
            self.bg = gui.add_rgb("Background", tuple(background))
            self.show_cams = gui.add_checkbox("Cameras", True)
            self.cam_size = gui.add_slider("Camera size", 0.0, 0.5, 0.005, 0.08)
            n_pts = 0 if self.points is None else len(self.run.points)
            self.show_points = gui.add_checkbox(f"Sparse points ({n_pts:,})", False, disabled=n_pts == 0,
                                                hint="SfM points the training started from (RUN/points.ply)")
            self.point_size = gui.add_slider("Point size", 0.001, 0.1, 0.001, 0.01, disabled=n_pts == 0,
                                             hint="In scene radii")
        with gui.add_folder("Crop", expand_by_default=False):
            lo = np.percentile(self._means_scene, 1, axis=0)
            hi = np.percentile(self._means_scene, 99, axis=0)
            pad = 0.05 * (hi - lo) + 1e-6
            lim = 2.0 * float(np.max(np.abs(np.concatenate([lo, hi])))) + 1e-6
            step = float(lim / 200)
            self.crop_on = gui.add_checkbox("Enable crop", False)
            self.crop_min = gui.add_vector3("Min", tuple(lo - pad), min=(-lim,) * 3, max=(lim,) * 3, step=step)
            self.crop_max = gui.add_vector3("Max", tuple(hi + pad), min=(-lim,) * 3, max=(lim,) * 3, step=step)
            self.crop_info = gui.add_markdown("")
        self.box = self.server.scene.add_box("/crop_box", color=(255, 200, 0), dimensions=(1, 1, 1),
                                             wireframe=True, visible=False)
        with gui.add_folder("Camera path", expand_by_default=False):
            self.kf_info = gui.add_markdown("0 keyframes")
            add = gui.add_button("Add keyframe", icon="camera-plus", hint="From your current view")
            remove = gui.add_button("Remove last")
            clear = gui.add_button("Clear")
            self.seconds = gui.add_number("Seconds", 4.0, min=0.1, max=600.0, step=0.1)
            self.fps = gui.add_number("FPS", 30, min=1, max=120, step=1)
            self.smooth = gui.add_slider("Smoothness", 0.0, 1.0, 0.05, 1.0, hint="1: Catmull-Rom; 0: tight")
            self.loop = gui.add_checkbox("Loop", False)
            w0, h0 = (run.cameras[0].width, run.cameras[0].height) if run.cameras else (1920, 1080)
            self.out_w = gui.add_number("Width", w0, min=16, max=8192, step=1)
            self.out_h = gui.add_number("Height", h0, min=16, max=8192, step=1)
            self.preview = gui.add_slider("Preview", 0.0, 1.0, 0.001, 0.0)
            play = gui.add_button("Play", icon="player-play")
            self.path_name = gui.add_text("File", "camera_path.json")
            save = gui.add_button("Save", icon="device-floppy",
                                  hint="Writes RUN/camera_paths/FILE (nerfstudio format) and downloads it")
            load = gui.add_button("Load", hint="Reads RUN/camera_paths/FILE")
        self._build_select_gui()

        self.mode.on_update(lambda _: self._mode_changed())
        self.res.on_update(lambda _: self._rerender_all())
        self.bg.on_update(lambda _: self._set_background(self.bg.value))
        self.show_cams.on_update(lambda _: self._cams_visible())
        self.cam_size.on_update(lambda _: self._cams_size())
        self.show_points.on_update(lambda _: self._points_changed())
        self.point_size.on_update(lambda _: self._points_changed())
        for h in (self.crop_on, self.crop_min, self.crop_max):
            h.on_update(lambda _: self._crop_changed())
        add.on_click(lambda ev: self._add_keyframe(ev.client))
        remove.on_click(lambda _: self._set_keyframes(self.keyframes[:-1]))
        clear.on_click(lambda _: self._set_keyframes([]))
        for h in (self.smooth, self.loop, self.seconds, self.fps):
            h.on_update(lambda _: self._draw_path())
        self.preview.on_update(lambda ev: self._preview(ev.client, self.preview.value))
        play.on_click(lambda ev: threading.Thread(target=self._play, args=(ev.client,), daemon=True).start())
        save.on_click(lambda ev: self._save_path(ev.client))
        load.on_click(lambda ev: self._load_path(ev.client))

    # ------------------------------------------------------------------ time (dynamic runs)
    def _build_time_gui(self) -> None:
        gui = self.server.gui
        times = self.run.times
        with gui.add_folder("Time"):
            self.time = gui.add_slider("Time", 0.0, 1.0, 0.001, float(times[0]),
                                       hint="Scene time: 0 = the capture's first frame, 1 = its last")
            self.time_info = gui.add_markdown("")
            self.time_play = gui.add_button("Play", icon="player-play", hint="Play or pause the sequence")
            self.time_step = gui.add_button_group("Frame", ["Previous", "Next"])
            self.time_fps = gui.add_number("Frames/s", default_fps(len(times)), min=0.1, max=120.0, step=0.1,
                                           hint="Capture frames per second while playing")
            self.time_loop = gui.add_checkbox("Loop", True, hint="Start again at time 0 after the last frame")
        self._time_info()
        self.time.on_update(lambda _: self._time_changed())
        self.time_play.on_click(lambda _: self.pause() if self._playing.is_set() else self.play())
        self.time_step.on_click(lambda ev: self.step_frame(-1 if ev.target.value == "Previous" else 1))

    def nearest_frame(self, t: float) -> int:
        """Index of the capture frame whose time is nearest ``t``."""
        return int(np.argmin(np.abs(np.asarray(self.run.times) - t)))

    def _time_info(self) -> None:
        t, n = self.current_time(), len(self.run.times)
        k = self.nearest_frame(t)
        at = "" if abs(self.run.times[k] - t) < 5e-4 else "near "
        self.time_info.content = f"time {t:.3f} · {at}frame {k + 1} of {n}"

    def _time_changed(self) -> None:
        self._time_info()
        self._rerender_all()
        self._splats_wanted.set()

    def _splat_pusher(self) -> None:
        """Send the browser the model at the current time: one push at a time, always the latest."""
        while not self._closed.is_set():
            if not self._splats_wanted.wait(0.25):
                continue
            self._splats_wanted.clear()
            if self.mode.value != "RGB" or abs(self.current_time() - self._splat_time) < 1e-9:
                continue  # the server-side modes render the time themselves; RGB catches up when chosen
            try:
                self._send_splats()
            except Exception as e:  # noqa: BLE001 - a closing server: keep the thread quiet
                if not self._closed.is_set():
                    print(f"viewer: could not send the splats at time {self.current_time():.3f}: {e}")

    def set_time(self, t: float) -> None:
        """Show scene time ``t`` (clamped to [0, 1])."""
        self.time.value = float(min(max(t, 0.0), 1.0))

    def step_frame(self, d: int) -> None:
        """Go to the previous (``d`` = -1) or next (+1) capture frame."""
        self.pause()
        times, t = np.asarray(self.run.times), self.current_time()
        later, earlier = times[times > t + 1e-6], times[times < t - 1e-6]
        if d > 0:
            self.set_time(float(later[0]) if len(later) else float(times[0] if self.time_loop.value else times[-1]))
        else:
            self.set_time(float(earlier[-1]) if len(earlier) else float(times[-1] if self.time_loop.value else times[0]))

    def play(self) -> None:
        if self._playing.is_set():
            return
        self._playing.set()
        self.time_play.label, self.time_play.icon = "Pause", "player-pause"
        threading.Thread(target=self._play_time, name="recon-viewer-play", daemon=True).start()

    def pause(self) -> None:
        self._playing.clear()
        self.time_play.label, self.time_play.icon = "Play", "player-play"

    def _play_time(self) -> None:
        """Advance the time at ``Frames/s`` capture frames per second (in wall-clock time: frames that
        render slower than that are skipped), looping or stopping at the end."""
        last = time.monotonic()
        if self.current_time() >= 1.0 and not self.time_loop.value:
            self.set_time(0.0)
        span = max(self.run.times[-1] - self.run.times[0], 1e-6) / max(len(self.run.times) - 1, 1)
        while self._playing.is_set() and not self._closed.is_set():
            time.sleep(1.0 / 60.0)
            now = time.monotonic()
            # From the slider's value, so dragging it while playing moves the playhead.
            t = self.current_time() + (now - last) * float(self.time_fps.value) * span
            last = now
            if t > 1.0:
                if self.time_loop.value:
                    t %= 1.0
                else:
                    self.set_time(1.0)
                    self.pause()
                    return
            self.set_time(t)

    def set_links(self, viewer_url: str, xr_url: str, fingerprint: str) -> None:
        self.links.content = (f"WebXR (headsets): [{xr_url.split('?')[0]}]({xr_url})  \n"
                              f"certificate SHA-256 `{fingerprint[:23]}…`")

    def _set_background(self, rgb) -> None:
        if self.mode.value == "RGB":
            self.server.scene.set_background_image(np.full((4, 4, 3), rgb, dtype=np.uint8), format="png")

    def _points_changed(self) -> None:
        if self.points is not None:
            self.points.visible = self.show_points.value
            self.points.point_size = float(self.point_size.value) * self.frame.radius

    def _cams_visible(self) -> None:
        for f in self.frustums:
            f.visible = self.show_cams.value

    def _cams_size(self) -> None:
        for f in self.frustums:
            f.scale = self.cam_size.value * self.frame.radius

    # ------------------------------------------------------------------ crop
    def crop_mask(self) -> np.ndarray | None:
        if not self.crop_on.value:
            return None
        lo, hi = np.asarray(self.crop_min.value), np.asarray(self.crop_max.value)
        return np.all((self._means_scene >= lo) & (self._means_scene <= hi), axis=1)

    def _crop_changed(self) -> None:
        lo, hi = np.asarray(self.crop_min.value), np.asarray(self.crop_max.value)
        self.box.visible = bool(self.crop_on.value)
        self.box.position = tuple((lo + hi) / 2)
        self.box.scale = tuple(np.maximum(hi - lo, 1e-6))
        # Coalesce slider drags: only the last change within 0.25 s re-sends the splats.
        self._crop_seq = getattr(self, "_crop_seq", 0) + 1
        seq = self._crop_seq

        def apply() -> None:
            time.sleep(0.25)
            if seq != self._crop_seq or self._closed.is_set():
                return
            self._mask = self.display_mask()
            crop = self.crop_mask()
            kept = self.run.num_gaussians if crop is None else int(crop.sum())
            self.crop_info.content = f"{kept:,} of {self.run.num_gaussians:,} Gaussians"
            self._send_splats()
            self.splats.visible = self.mode.value == "RGB"
            self._rerender_all()

        threading.Thread(target=apply, daemon=True).start()

    # ------------------------------------------------------------------ selection
    def _build_select_gui(self) -> None:
        gui = self.server.gui
        sel = self.selector
        with gui.add_folder("Select", expand_by_default=False):
            self.select_help = gui.add_markdown("")
            self.select_on = gui.add_checkbox("Select mode", False, disabled=sel is None,
                                              hint="While on, dragging draws a box instead of turning the view")
            self.select_name = gui.add_text("Name", "object", disabled=sel is None,
                                            hint="Saved as RUN/selections/NAME; recon export RUN --selection NAME")
            self.select_show = gui.add_dropdown("Show", ["All", "Selection only", "Without selection"],
                                                initial_value="All", disabled=sel is None)
            self.select_info = gui.add_markdown("")
        self.select_on.on_update(lambda _: self._select_mode_changed())
        self.select_show.on_update(lambda _: self._refresh_display())
        self._select_help()

    def _select_help(self) -> None:
        sel = self.selector
        if sel is None:
            self.select_help.content = "Selecting needs a run folder with training cameras."
            return
        how = ("drag a box or click the object" if sel.segmenter is not None
               else "drag a box around the object (GrabCut; clicks need `--segment-model`)")
        self.select_help.content = (f"Select mode on, then {how}. On a training camera (click its frustum) "
                                    "the photo is segmented; elsewhere the render.")

    def set_segmenter(self, segmenter) -> None:
        """The segmentation model for clicks and boxes (``recon view --segment-model``)."""
        if self.selector is not None:
            self.selector.segmenter = segmenter
            self._select_help()
            self._select_mode_changed()

    def _select_mode_changed(self) -> None:
        sc = self.server.scene
        sc.remove_rect_select_callback("all")
        sc.remove_click_callback("all")
        if self.select_on.value and self.selector is not None:
            sc.on_rect_select()(self.on_rect_select)
            if self.selector.segmenter is not None:
                sc.on_click()(self.on_scene_click)

    def on_rect_select(self, event) -> None:
        """viser's rect-select: a box in screen coordinates (0..1) of the client's view."""
        self.select_in_view(event.client, box=(tuple(event.screen_min), tuple(event.screen_max)))

    def on_scene_click(self, event) -> None:
        self.select_in_view(event.client, points=[tuple(event.screen_pos)])

    def view_pose(self, client):
        from viewer.select import ViewPose

        aspect = float(client.camera.aspect) if client.camera.aspect else 16 / 9
        return ViewPose(self.client_c2w(client), float(client.camera.fov), aspect)

    def select_in_view(self, client, box=None, points=()) -> Path | None:
        """Lift a prompt drawn in ``client``'s view, save it under the name in the GUI, show it.
        Returns the selection's .json path (None when it failed: the client is told why)."""
        from recon.errors import ReconError

        if self.selector is None:
            return None
        if not self._select_lock.acquire(blocking=False):
            client.add_notification("Select", "A selection is already being made", auto_close_seconds=3.0)
            return None
        try:
            self.select_info.content = "selecting..."
            labels, meta, msg = self.selector.select(self.view_pose(client), self.frame.radius,
                                                     self.select_name.value.strip(), box=box, points=points)
        except ReconError as e:
            self.select_info.content = ""
            client.add_notification("Select", str(e), color="red", auto_close_seconds=8.0)
            return None
        finally:
            self._select_lock.release()
        self.selection = labels if len(labels) == self.run.num_gaussians else None
        self.select_info.content = msg
        if self.select_show.value == "All":
            self.select_show.value = "Selection only"  # its on_update refreshes the display
        else:
            self._refresh_display()
        client.add_notification("Selection saved", msg, auto_close_seconds=8.0)
        return meta

    def display_mask(self) -> np.ndarray | None:
        """The Gaussians shown: the crop box and the selection's "Show" choice together."""
        m = self.crop_mask()
        show = self.select_show.value if hasattr(self, "select_show") else "All"
        if self.selection is not None and show != "All":
            s = self.selection if show == "Selection only" else ~self.selection
            m = s if m is None else (m & s)
        return m

    def _refresh_display(self) -> None:
        self._mask = self.display_mask()
        self._send_splats()
        self.splats.visible = self.mode.value == "RGB"
        self._rerender_all()

    # ------------------------------------------------------------------ server-side render modes
    def _on_connect(self, client) -> None:
        client.camera.on_update(lambda _: self._schedule_render(client))

    def _mode_changed(self) -> None:
        rgb = self.mode.value == "RGB"
        self.splats.visible = rgb
        if rgb and self.plays:
            self._splats_wanted.set()
        if rgb:
            for c in self.server.get_clients().values():
                c.scene.set_background_image(None)
            self._set_background(self.bg.value)
        else:
            self._rerender_all()

    def _rerender_all(self) -> None:
        for c in self.server.get_clients().values():
            self._schedule_render(c)

    def _schedule_render(self, client) -> None:
        if self.renderer is None or self.mode.value == "RGB":
            return
        with self._lock:
            ev = self._render_jobs.get(client.client_id)
            if ev is not None:
                ev.set()  # a worker is running: ask it to render again with the latest camera
                return
            ev = threading.Event()
            ev.set()
            self._render_jobs[client.client_id] = ev
        threading.Thread(target=self._render_worker, args=(client, ev), daemon=True).start()

    def _render_worker(self, client, ev: threading.Event) -> None:
        try:
            while ev.is_set() and not self._closed.is_set() and self.mode.value != "RGB":
                ev.clear()
                cam = client.camera
                aspect = float(cam.aspect) if cam.aspect else 16 / 9
                w = int(self.res.value)
                h = max(16, int(round(w / aspect)))
                fy = 0.5 * h / math.tan(0.5 * float(cam.fov))
                K = np.array([[fy, 0, w / 2], [0, fy, h / 2], [0, 0, 1.0]])
                bg = tuple(np.asarray(self.bg.value, np.float32) / 255.0)
                t = self.current_time()
                img = self.renderer.render(self.client_c2w(client), K, w, h, self.mode.value, bg, self.display_mask(),
                                           time=t)
                client.scene.set_background_image(img, format="jpeg", jpeg_quality=90)
                self.rendered[client.client_id] = (t, img)
        except Exception as e:  # noqa: BLE001 - a disconnected client or a render error: tell, don't die
            try:
                client.add_notification("Render failed", str(e), color="red", auto_close_seconds=5.0)
            except Exception:  # noqa: BLE001
                pass
        finally:
            with self._lock:
                self._render_jobs.pop(client.client_id, None)

    # ------------------------------------------------------------------ camera path
    def _add_keyframe(self, client) -> None:
        aspect = float(client.camera.aspect) if client.camera.aspect else 16 / 9
        self._set_keyframes(self.keyframes + [Keyframe(self.client_c2w(client), float(client.camera.fov), aspect)])

    def _set_keyframes(self, kfs: list[Keyframe]) -> None:
        self.keyframes = list(kfs)
        self.kf_info.content = f"{len(self.keyframes)} keyframes"
        self._draw_path()

    def _tension(self) -> float:
        return 1.0 - float(self.smooth.value)

    def _draw_path(self) -> None:
        sc = self.server.scene
        for name in getattr(self, "_path_nodes", []):
            name.remove()
        self._path_nodes = []
        size = 0.06 * self.frame.radius
        for i, k in enumerate(self.keyframes):
            self._path_nodes.append(sc.add_camera_frustum(
                f"/world/path/kf_{i}", fov=k.fov_y, aspect=k.aspect, scale=size, color=(255, 120, 40),
                wxyz=rotmat_to_qvec(k.c2w[:3, :3]), position=k.c2w[:3, 3]))
        if len(self.keyframes) >= 2:
            n = max(2, 20 * len(self.keyframes))
            pts = np.stack([c[:3, 3] for c, _ in interpolate(self.keyframes, n, self._tension(), self.loop.value)])
            if self.loop.value:
                pts = np.concatenate([pts, pts[:1]])
            self._path_nodes.append(sc.add_spline_catmull_rom("/world/path/spline", points=pts, tension=0.0,
                                                              color=(255, 120, 40), thickness=0.005 * self.frame.radius))

    def _poses(self, n: int):
        return interpolate(self.keyframes, n, self._tension(), self.loop.value)

    def _preview(self, client, u: float) -> None:
        if client is None or len(self.keyframes) < 1:
            return
        n = 1001
        c2w, fov = self._poses(n)[int(round(u * (n - 1)))]
        self._goto(client, c2w, fov)

    def _play(self, client) -> None:
        if len(self.keyframes) < 2:
            client.add_notification("Camera path", "Add at least two keyframes first", auto_close_seconds=3.0)
            return
        fps = float(self.fps.value)
        poses = self._poses(max(2, int(round(fps * float(self.seconds.value)))))
        t0 = time.monotonic()
        for i, (c2w, fov) in enumerate(poses):
            if self._closed.is_set():
                return
            self._goto(client, c2w, fov)
            time.sleep(max(0.0, t0 + (i + 1) / fps - time.monotonic()))

    def path_content(self) -> dict:
        return to_nerfstudio(self.keyframes, int(self.out_w.value), int(self.out_h.value), float(self.fps.value),
                             float(self.seconds.value), self._tension(), bool(self.loop.value))

    def _path_file(self) -> Path:
        name = Path(self.path_name.value.strip() or "camera_path.json").name  # no folders: stays in the run
        if not name.endswith(".json"):
            name += ".json"
        return self.run.folder / "camera_paths" / name

    def _save_path(self, client) -> None:
        if len(self.keyframes) < 2:
            client.add_notification("Camera path", "Add at least two keyframes first", auto_close_seconds=3.0)
            return
        content = self.path_content()
        import json

        data = json.dumps(content, indent=1).encode()
        where = ""
        try:
            where = str(write_camera_path(self._path_file(), content))
        except OSError as e:
            where = f"not saved in the run ({e.strerror}); downloaded only"
        client.send_file_download(self._path_file().name, data)
        client.add_notification("Camera path saved", where, auto_close_seconds=5.0)

    def _load_path(self, client) -> None:
        try:
            self._set_keyframes(read_keyframes(self._path_file()))
        except Exception as e:  # noqa: BLE001
            client.add_notification("Camera path", str(e), color="red", auto_close_seconds=5.0)

    def close(self) -> None:
        self._playing.clear()
        self._closed.set()


def default_fps(frames: int) -> float:
    """Playback speed in capture frames per second: the sequence lasts about 3 s, at most 24 frames/s."""
    return float(min(24.0, max(1.0, round((frames - 1) / 3.0))))


def _thumbnail(path: Path) -> np.ndarray | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            return np.asarray(im)
    except Exception:  # noqa: BLE001 - a thumbnail is decoration; skip unreadable images
        return None
