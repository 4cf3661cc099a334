"""Viewer building blocks without a browser: run loading, display frame, viser arrays, camera paths, TLS."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recon.cli import run as cli_run
from recon.errors import ReconError
from viewer.camera_path import Keyframe, interpolate, read_keyframes, to_nerfstudio, write_camera_path
from viewer.run import open_run, scene_frame
from viewer.splats import SH_C0, read_splats, to_viser, write_splats_ply
from recon.scene.conventions import look_at_c2w
from recon.testing.gaussians import sphere_splats
from recon.testing.runs import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), n=500)


def test_open_run_reads_splats_and_cameras(run_dir):
    run = open_run(run_dir)
    ref = sphere_splats(500)
    assert run.num_gaussians == 500 and len(run.cameras) == 8 and run.sh_degree == 0
    for k in ("means", "quats", "scales", "opacities", "sh0"):
        np.testing.assert_allclose(run.splats[k].numpy(), ref[k].numpy(), atol=1e-6)
    # A .ply path works too.
    assert open_run(run_dir / "splats.ply").num_gaussians == 500


def test_scene_frame_centres_and_puts_up_on_z(run_dir):
    run = open_run(run_dir)
    f = run.frame
    # The synthetic sphere is centred at the origin with world up +Z; cameras look at the origin.
    np.testing.assert_allclose(f.to_scene(np.zeros((1, 3)))[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(f.R @ np.array([0, 0, 1.0]), [0, 0, 1.0], atol=1e-6)
    assert 0.9 < f.radius < 1.1
    # First camera looks along scene +Y (horizontally); XR frame is Y up.
    fwd = f.R @ run.cameras[0].c2w[:3, 2]
    assert fwd[1] > 0.9
    np.testing.assert_allclose(f.to_xr[:3, :3] @ f.R.T @ np.array([0, 0, 1.0]), [0, 1.0, 0], atol=1e-6)
    c2w_s = f.c2w_to_scene(run.cameras[3].c2w)
    np.testing.assert_allclose(f.c2w_from_scene(c2w_s), run.cameras[3].c2w, atol=1e-9)


def test_scene_frame_with_tilted_world_and_offset():
    # Rotate and shift the whole world: the frame should undo it (up back on +Z, centre at 0).
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.linalg.det(q))
    shift = np.array([3.0, -2.0, 5.0])
    means = sphere_splats(300)["means"].numpy().astype(np.float64) @ q.T + shift
    from viewer.run import RunCamera

    cams = []
    for j in range(6):
        a = 2 * math.pi * j / 6
        c2w = look_at_c2w(np.array([4 * math.cos(a), 4 * math.sin(a), 1.0]), np.zeros(3))
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = q, shift
        cams.append(RunCamera("c", T @ c2w, np.eye(3), 10, 10))
    f = scene_frame(means, cams)
    np.testing.assert_allclose(f.to_scene(shift[None])[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(f.R @ (q @ np.array([0, 0, 1.0])), [0, 0, 1.0], atol=1e-6)


def test_to_viser_covariances_and_colours():
    s = sphere_splats(50)
    s["quats"] = torch.randn(50, 4)
    s["scales"] = torch.randn(50, 3) * 0.3 - 2
    a = to_viser(s)
    q = torch.nn.functional.normalize(s["quats"], dim=1).numpy().astype(np.float64)
    for i in (0, 17, 49):
        w, x, y, z = q[i]
        R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        S = np.diag(np.exp(s["scales"][i].numpy().astype(np.float64)))
        np.testing.assert_allclose(a["covariances"][i], R @ S @ S @ R.T, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(a["rgbs"], np.clip(0.5 + SH_C0 * s["sh0"][:, 0].numpy(), 0, 1), atol=1e-6)
    np.testing.assert_allclose(a["opacities"][:, 0], torch.sigmoid(s["opacities"]).numpy(), atol=1e-6)
    assert to_viser(s, np.arange(50) < 10)["centers"].shape == (10, 3)


def test_ply_round_trip_with_sh(tmp_path):
    s = sphere_splats(64, sh_degree=2)
    back = read_splats(write_splats_ply(s, tmp_path / "x.ply"))
    for k in s:
        np.testing.assert_allclose(back[k].numpy(), s[k].numpy(), atol=1e-6)


def test_camera_path_interpolates_through_keyframes(tmp_path):
    eyes = [np.array([4.0, 0, 1]), np.array([0, 4.0, 1.5]), np.array([-4.0, 0, 1]), np.array([0, -4.0, 0.5])]
    kfs = [Keyframe(look_at_c2w(e, np.zeros(3)), math.radians(40 + 5 * i), 4 / 3) for i, e in enumerate(eyes)]
    poses = interpolate(kfs, 31, tension=0.0)
    # Passes exactly through each keyframe (10 frames per segment) with its field of view.
    for i, k in enumerate(kfs):
        c2w, fov = poses[10 * i]
        np.testing.assert_allclose(c2w, k.c2w, atol=1e-9)
        assert abs(fov - k.fov_y) < 1e-12
    # Smooth: consecutive positions change little and rotations stay orthonormal.
    P = np.stack([c[:3, 3] for c, _ in poses])
    steps = np.linalg.norm(np.diff(P, axis=0), axis=1)
    assert steps.max() < 2.5 * steps.mean()
    for c, _ in poses:
        np.testing.assert_allclose(c[:3, :3] @ c[:3, :3].T, np.eye(3), atol=1e-9)
    # Loop: the last frame comes back towards the first.
    loop = interpolate(kfs, 40, loop=True)
    assert np.linalg.norm(loop[-1][0][:3, 3] - kfs[0].c2w[:3, 3]) < 1.5

    content = to_nerfstudio(kfs, 640, 480, fps=10, seconds=3)
    assert len(content["camera_path"]) == 30 and content["render_width"] == 640
    first = np.asarray(content["camera_path"][0]["camera_to_world"]).reshape(4, 4)
    # nerfstudio stores OpenGL camera axes: camera looks down -z.
    np.testing.assert_allclose(-first[:3, 2], kfs[0].c2w[:3, 2], atol=1e-9)
    assert abs(content["camera_path"][0]["fov"] - 40.0) < 1e-9
    p = write_camera_path(tmp_path / "camera_path.json", content)
    json.loads(p.read_text())
    back = read_keyframes(p)
    np.testing.assert_allclose(back[2].c2w, kfs[2].c2w, atol=1e-12)


def test_self_signed_certificate_is_cached_and_covers_hosts(tmp_path):
    from cryptography import x509

    from viewer.tls import ensure_self_signed, load_certificate

    c1 = ensure_self_signed(["127.0.0.1"], tmp_path)
    assert c1.generated and len(c1.fingerprint.split(":")) == 32
    assert (c1.key.stat().st_mode & 0o077) == 0
    c2 = ensure_self_signed(["localhost"], tmp_path)
    assert not c2.generated and c2.fingerprint == c1.fingerprint
    c3 = ensure_self_signed(["192.168.7.9"], tmp_path)  # a new address: a new certificate covering both
    assert c3.generated
    san = x509.load_pem_x509_certificate(c3.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {"192.168.7.9", "127.0.0.1"} <= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert load_certificate(c3.cert, c3.key).fingerprint == c3.fingerprint
    with pytest.raises(ReconError):
        load_certificate(tmp_path / "missing.pem", c3.key)


def test_bad_runs_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ReconError, match="does not exist"):
        open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReconError, match="no splats.ply"):
        open_run(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "splats.ply").write_bytes(b"not a ply")
    with pytest.raises(ReconError):
        open_run(bad)
    # Through the CLI: exit code 2, one line on stderr, no traceback.
    assert cli_run(["view", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("recon view: error:") and "does not exist" in err[0]


def test_server_side_render_modes(run_dir):
    from viewer.render import SplatRenderer

    run = open_run(run_dir)
    cam = run.cameras[0]
    K = cam.K.copy()
    K[:2] *= 0.25
    r = SplatRenderer(run.splats)
    rgb = r.render(cam.c2w, K, 80, 60, "RGB (server)")
    alpha = r.render(cam.c2w, K, 80, 60, "Alpha")
    depth = r.render(cam.c2w, K, 80, 60, "Depth")
    assert rgb.shape == alpha.shape == depth.shape == (60, 80, 3) and rgb.dtype == np.uint8
    inside = alpha[..., 0] > 200
    assert 0.2 < inside.mean() < 0.9 and alpha[0, 0, 0] < 10  # the sphere in the middle, empty corner
    assert (depth[inside].astype(int).sum(1) > 30).all() and depth[0, 0].sum() == 0
    # Only the crop's Gaussians are drawn: keep the half with x > 0 in world coordinates.
    keep = run.splats["means"][:, 0].numpy() > 0
    assert r.render(cam.c2w, K, 80, 60, "Alpha", mask=~keep)[..., 0].mean() < alpha[..., 0].mean()


def test_operator_ui_crop_and_camera_path(run_dir, tmp_path):
    import viser

    from viewer.operator import OperatorUI

    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        run = open_run(run_dir)
        ui = OperatorUI(server, run)
        assert ui.crop_mask() is None
        ui.crop_on.value = True
        ui.crop_min.value = (0.0, -5.0, -5.0)
        ui.crop_max.value = (5.0, 5.0, 5.0)
        m = ui.crop_mask()
        assert m is not None and 0.3 < m.mean() < 0.7  # half the sphere in the scene frame
        ui._set_keyframes([Keyframe(c.c2w, c.fov_y, c.width / c.height) for c in run.cameras[:3]])
        ui.seconds.value, ui.fps.value = 2.0, 10
        content = ui.path_content()
        assert len(content["camera_path"]) == 20 and len(content["keyframes"]) == 3
        assert content["render_width"] == run.cameras[0].width
        ui.update_splats(sphere_splats(200))
        assert ui.run.num_gaussians == 200 and ui._means_scene.shape == (200, 3)
        assert ui.points is None and ui.show_points.disabled  # this run has no points.ply
        ui.close()
    finally:
        server.stop()


def test_sparse_points_shown_with_size_control(run_dir, tmp_path):
    import shutil

    import viser

    from recon.scene.writers import write_ply_points
    from viewer.operator import OperatorUI

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3)).astype(np.float32)
    cols = rng.integers(0, 256, size=(500, 3)).astype(np.uint8)
    write_ply_points(run / "points.ply", pts, cols)
    r = open_run(run)
    np.testing.assert_array_equal(r.points, pts)
    np.testing.assert_array_equal(r.point_colors, cols)
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        ui = OperatorUI(server, r)
        assert ui.points is not None and not ui.points.visible and not ui.show_points.disabled
        ui.show_points.value = True
        ui.point_size.value = 0.05
        assert ui.points.visible
        assert ui.points.point_size == pytest.approx(0.05 * ui.frame.radius)
        np.testing.assert_allclose(ui.points.points, pts, atol=2e-3 * np.abs(pts).max())  # viser sends float16
        ui.close()
    finally:
        server.stop()
    (run / "points.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\n")
    with pytest.raises(ReconError, match="cannot read sparse points"):
        open_run(run)
