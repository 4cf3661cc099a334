"""Selecting an object in the operator viewer without a browser: the handlers viser calls on a
dragged box or a click are called directly, with a stand-in client whose camera sits at a training
camera (or elsewhere), and the saved selection is compared with what `recon select` writes for the
same prompt.

The model is the tabletop of tests/test_select.py as flat Gaussians sampled on its meshes (a splat
model whose surface is known exactly, so no training is needed), with the scene's images and
ground-truth id maps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from recon.cli import run as cli
from recon.run import RunCamera, write_cameras
from recon.scene.conventions import rotmat_to_qvec
from recon.selection import read_selection
from test_select import BALL, RED_BOX, _box, _frames, _ids, _inner_point, _with_alpha, tabletop
from viewer.run import open_run

RES = 80


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import scenes
    from scenes.recipes import RECIPES

    from recon.testing.gaussians import surface_splats

    root = tmp_path_factory.mktemp("viewer-select")
    RECIPES["select-test-tabletop"] = tabletop
    try:
        sc = _with_alpha(scenes.synth("select-test-tabletop", root / "scene", views=16, res=RES))
    finally:
        del RECIPES["select-test-tabletop"]
    from plyfile import PlyData

    ply = PlyData.read(str(sc / "mesh.ply"))
    v = np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float64)
    c = np.stack([ply["vertex"][k] for k in ("red", "green", "blue")], 1) / 255.0
    f = np.stack(ply["face"]["vertex_indices"]).astype(np.int64)
    from exporters.ply import write_ply

    run = root / "run"
    run.mkdir()
    write_ply(surface_splats(v, f, c, 12000, seed=3), run / "splats.ply")
    write_cameras(run / "cameras.json", _frames(sc))
    (run / "run.json").write_text(json.dumps({
        "format": "recon-run", "version": 1, "status": "done", "method": "splat",
        "artifacts": {"model": "splats.ply", "cameras": "cameras.json"},
        "scene": {"absolute": str(sc), "format": "nerfstudio"}}))
    return sc, run


@dataclass
class FakeCamera:
    wxyz: np.ndarray
    position: np.ndarray
    fov: float
    aspect: float


@dataclass
class FakeClient:
    """What the handlers use of a viser client: its camera and notifications."""

    camera: FakeCamera
    client_id: int = 1
    notes: list = field(default_factory=list)

    def add_notification(self, title, body="", **kw):
        self.notes.append((title, body))


@dataclass
class RectEvent:
    client: FakeClient
    screen_min: tuple
    screen_max: tuple


@dataclass
class ClickEvent:
    client: FakeClient
    screen_pos: tuple


def _client_at(ui, cam: RunCamera, aspect: float) -> FakeClient:
    c2w = ui.frame.c2w_to_scene(np.asarray(cam.c2w))
    fov_y = float(2 * np.arctan2(0.5 * cam.height, cam.K[1, 1]))
    return FakeClient(FakeCamera(rotmat_to_qvec(c2w[:3, :3]), c2w[:3, 3], fov_y, aspect))


def _to_screen(cam: RunCamera, x: float, y: float, aspect: float) -> tuple[float, float]:
    """Pixel (x, y) of a training image to viser's screen coordinates of a viewport of ``aspect``
    showing that camera with its vertical field of view."""
    t = 0.5 * cam.height / cam.K[1, 1]  # tan(fov_y / 2)
    tx, ty = (x - cam.K[0, 2]) / cam.K[0, 0], (y - cam.K[1, 2]) / cam.K[1, 1]
    return 0.5 + tx / (2 * t * aspect), 0.5 + ty / (2 * t)


@pytest.fixture
def ui(run_dir):
    import viser

    from viewer.operator import OperatorUI

    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        ui = OperatorUI(server, open_run(run_dir[1]))
        yield ui
        ui.close()
    finally:
        server.stop()


def test_box_in_viewer_matches_recon_select(run_dir, ui):
    sc, run = run_dir
    cam = next(c for c in _frames(sc) if c.split == "train")
    x0, y0, x1, y1 = (v + 0.3 for v in _box(_ids(sc, cam.name), RED_BOX))
    assert cli(["select", str(run), "--box", f"{cam.name}:{x0},{y0},{x1},{y1}", "--name", "cli-box"]) == 0
    # Select mode registers viser's rect-select callback (clicks too once there is a model)
    def pointer():
        return [e.event_type for e in ui.server.scene._scene_pointer_cb]

    assert pointer() == []
    ui.select_on.value = True
    assert pointer() == ["rect-select"]
    ui.select_on.value = False
    assert pointer() == []
    aspect = 1.6  # a browser window wider than the photo: the box still maps to the photo's pixels
    client = _client_at(ui, cam, aspect)
    ui.select_name.value = "viewer-box"
    assert ui.selector.training_view(ui.view_pose(client), ui.frame.radius) == 0
    ui.on_rect_select(RectEvent(client, _to_screen(cam, x0, y0, aspect), _to_screen(cam, x1, y1, aspect)))
    assert client.notes and client.notes[-1][0] == "Selection saved", client.notes
    n = ui.run.num_gaussians
    a, meta_a = read_selection(run, "cli-box", run / "splats.ply", n)
    b, meta_b = read_selection(run, "viewer-box", run / "splats.ply", n)
    assert np.array_equal(a, b) and 100 < a.sum() < n // 2
    np.testing.assert_allclose(meta_b["how"]["prompt"]["box"], meta_a["how"]["prompt"]["box"], atol=1e-6)
    assert meta_b["how"]["made_in"] == "recon view" and meta_b["how"]["prompt"]["view"] == cam.name
    # shown alone; the other choices and the crop box combine with it
    assert ui.select_show.value == "Selection only" and np.array_equal(ui.display_mask(), b)
    ui.select_show.value = "Without selection"
    assert np.array_equal(ui.display_mask(), ~b)
    # and `recon export --selection NAME` takes it
    out = run.parent / "exported"
    assert cli(["export", str(run), "--selection", "viewer-box", "--format", "ply", "--out", str(out)]) == 0
    from exporters.ply import read_ply

    assert len(read_ply(out / "splats.ply")["means"]) == b.sum()


def test_click_with_a_segmentation_model_matches_recon_select(run_dir, ui):
    from viewer.select import load_viewer_segmenter

    sc, run = run_dir
    cam = [c for c in _frames(sc) if c.split == "train"][2]
    client = _client_at(ui, cam, 1.0)
    ui.select_name.value = "viewer-click"
    ui.on_scene_click(ClickEvent(client, (0.5, 0.5)))  # no model yet: says so, saves nothing
    assert "segmentation model" in client.notes[-1][1] and not (run / "selections" / "viewer-click.json").exists()
    ui.set_segmenter(load_viewer_segmenter(f"ids:{sc / 'masks'}"))  # id maps stand in for SAM
    ui.select_on.value = True
    assert sorted(e.event_type for e in ui.server.scene._scene_pointer_cb) == ["click", "rect-select"]
    x, y = _inner_point(_ids(sc, cam.name), BALL)
    assert cli(["select", str(run), "--prompt", f"{cam.name}:{x},{y}", "--segmenter", f"ids:{sc / 'masks'}",
                "--name", "cli-click"]) == 0
    ui.on_scene_click(ClickEvent(client, _to_screen(cam, x, y, 1.0)))
    n = ui.run.num_gaussians
    a, _ = read_selection(run, "cli-click", run / "splats.ply", n)
    b, meta = read_selection(run, "viewer-click", run / "splats.ply", n)
    assert np.array_equal(a, b) and a.sum() > 100
    np.testing.assert_allclose(meta["how"]["prompt"]["points"], [[x, y]], atol=1e-6)


def test_box_on_a_rendered_view(run_dir, ui):
    """From a viewpoint that is no training camera the render is segmented: the red box's
    selection then matches the one made on a training photo."""
    sc, run = run_dir
    cams = [c for c in _frames(sc) if c.split == "train"]
    cam = cams[1]
    x0, y0, x1, y1 = _box(_ids(sc, cam.name), RED_BOX)
    assert cli(["select", str(run), "--box", f"{cam.name}:{x0},{y0},{x1},{y1}", "--name", "ref"]) == 0
    # the same camera pulled back 5 % along its axis: no training camera, nearly the same picture
    moved = RunCamera(name="x", c2w=np.asarray(cam.c2w).copy(), K=cam.K, width=cam.width, height=cam.height)
    moved.c2w[:3, 3] -= 0.05 * np.linalg.norm(moved.c2w[:3, 3]) * moved.c2w[:3, 2]
    client = _client_at(ui, moved, 1.0)
    assert ui.selector.training_view(ui.view_pose(client), ui.frame.radius) is None
    s = 1 / 1.05  # what the pulled-back camera sees of the box, about the image centre
    c0 = ((x0 - 40) * s + 40 - 2, (y0 - 40) * s + 40 - 2)
    c1 = ((x1 - 40) * s + 40 + 2, (y1 - 40) * s + 40 + 2)
    ui.select_name.value = "rendered"
    ui.on_rect_select(RectEvent(client, _to_screen(moved, *c0, 1.0), _to_screen(moved, *c1, 1.0)))
    n = ui.run.num_gaussians
    a, _ = read_selection(run, "ref", run / "splats.ply", n)
    b, meta = read_selection(run, "rendered", run / "splats.ply", n)
    assert meta["how"]["prompt"]["view"] == "rendered"
    jaccard = (a & b).sum() / (a | b).sum()
    print(f"rendered-view selection vs training-view selection: Jaccard {jaccard:.3f}")
    assert jaccard >= 0.85


def test_view_flag_errors_are_one_line(run_dir, capsys):
    _, run = run_dir
    assert cli(["view", str(run), "--segment-model", "/no/such/sam2", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--segment-model" in err[0] and "no such folder" in err[0], err
