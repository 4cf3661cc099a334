"""NeRF outputs and exports: normals of a field of known shape, the density mesh against the true mesh
of a small synthetic scene, surface points, splats distilled from a trained NeRF (PSNR gap to the
NeRF, provenance in every splat format, the cache, the viewer's run reader)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import scenes
from exporters.mesh_metrics import mesh_metrics
from recon.cli import run as recon
from recon.methods.nerf import NerfRenderer
from recon.nerf.field import VoxelField
from recon.scene.cameras import Camera

RES, VIEWS = 48, 24


def _orbit(n: int, size: int, dist: float = 2.6, fov_deg: float = 40.0):
    from exporters.mesh import orbit_views

    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    cams = orbit_views(np.full(3, -1.0), np.full(3, 1.0), n, size, np.array([0, 0, 1.0]))
    out = []
    for c in cams:  # closer than orbit_views' framing: the sphere fills the image
        c2w = c.c2w.copy()
        c2w[:3, 3] = c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]) * dist
        out.append(Camera(K=np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]]), width=size, height=size, c2w=c2w))
    return out


def _sphere_field(res=40, r0=0.6):
    ax = torch.linspace(-1, 1, res)
    X, Y, Z = torch.meshgrid(ax, ax, ax, indexing="ij")
    r = torch.sqrt(X**2 + Y**2 + Z**2)
    dens = 40.0 * (r0 - r) / (2 / (res - 1))  # raw density rising across about one voxel at r0
    f = VoxelField(np.full(3, -1.0), np.full(3, 1.0), (res,) * 3, 0, -5.0, 0.5, density=dens.reshape(-1).float())
    f.update_occupancy(1e-4)
    return f


def test_normals_of_a_sphere_field():
    """Rendered normals of a sphere-shaped density match the sphere's normals at the rendered
    depth (mean error < 2 degrees) and are zero where nothing is hit."""
    field = _sphere_field()
    cam = _orbit(3, 48)[1]
    o = NerfRenderer(field).render(cam, outputs=("rgb", "alpha", "depth", "normals"))
    a, d, n = o.alpha[..., 0].numpy(), o.depth[..., 0].numpy(), o.normals.numpy()
    H, W = a.shape
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(cam.K).T
    p = (rays * d[..., None]) @ cam.c2w[:3, :3].T + cam.c2w[:3, 3]
    hit = a > 0.99
    assert hit.sum() > 300
    gt = p / np.linalg.norm(p, axis=-1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip((gt * n).sum(-1), -1, 1)))[hit]
    print(f"normal error: mean {ang.mean():.2f} deg, 95th percentile {np.percentile(ang, 95):.2f} deg")
    assert ang.mean() < 2.0 and np.percentile(ang, 95) < 5.0
    np.testing.assert_allclose(np.linalg.norm(n[hit], axis=-1), 1.0, atol=1e-4)
    assert np.all(n[a < 1e-4] == 0)


def test_marching_tetrahedra_closed_sphere():
    from exporters.nerf_mesh import marching_tetrahedra

    n = 32
    ax = np.linspace(-1, 1, n)
    X, Y, Z = np.meshgrid(ax, ax, ax, indexing="ij")
    V, F = marching_tetrahedra(0.6 - np.sqrt(X**2 + Y**2 + Z**2), 0.0, np.full(3, -1.0), np.full(3, 2 / (n - 1)))
    import trimesh

    m = trimesh.Trimesh(V, F, process=True)
    assert m.is_watertight
    assert abs(m.volume / (4 / 3 * math.pi * 0.6**3) - 1) < 0.02  # positive volume: faces point outward
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 0.6, atol=4e-3)  # linear along edges


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A NeRF run (``recon train --method nerf``) on a 48 px turntable with 24 views."""
    root = tmp_path_factory.mktemp("nerf-export")
    scene = scenes.synth("turntable", root / "scene", views=VIEWS, res=RES)
    run = root / "run"
    rc = recon(["train", str(scene), "--method", "nerf", "--out", str(run), "--steps", "400", "--res-init", "32",
                "--res-final", "56", "--upsample-at", "0.15", "0.35", "--rays-per-batch", "2048", "--sh-degree", "1",
                "--downscale", "1", "--log-every-seconds", "1000", "--checkpoint-every", "0"])
    assert rc == 0
    return {"scene": scene, "run": run}


def _gt(scene):
    from plyfile import PlyData

    ply = PlyData.read(str(scene / "mesh.ply"))
    v = np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float64)
    f = np.stack(ply["face"]["vertex_indices"]).astype(np.int64)
    meta = json.loads((scene / "scene.json").read_text())
    extent = float(np.linalg.norm(np.subtract(meta["bbox"]["max"], meta["bbox"]["min"])))
    return v, f, extent


def _glb_mesh(path):
    """(positions, faces, texture) of a mesh GLB written by exporters.mesh_io.write_mesh_glb."""
    import io

    from PIL import Image

    from exporters.gltf_splat import parse_glb

    doc, binary = parse_glb(path.read_bytes())

    def accessor(i, dtype, width):
        a = doc["accessors"][i]
        view = doc["bufferViews"][a["bufferView"]]
        return np.frombuffer(binary, dtype, a["count"] * width, view["byteOffset"]).reshape(a["count"], width)

    prim = doc["meshes"][0]["primitives"][0]
    pos = accessor(prim["attributes"]["POSITION"], "<f4", 3).astype(np.float64)
    idx = accessor(prim["indices"], "<u4", 1).reshape(-1, 3).astype(np.int64)
    view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    png = binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
    return pos, idx, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), doc


def test_mesh_and_points_of_a_trained_nerf(trained, tmp_path):
    """The density mesh is within 2 % of the extent of the true mesh (Chamfer, unseen ground truth
    left out), its files carry the NeRF provenance, and the surface points lie on the surface."""
    from exporters.run import load_run

    run = load_run(trained["run"])
    gv, gf, extent = _gt(trained["scene"])
    out = tmp_path / "exp"
    assert recon(["export", str(trained["run"]), "--format", "mesh-glb", "points", "--out", str(out), "--axes", "scene",
                  "--mesh-faces", "20000", "--mesh-texture-size", "256"]) == 0
    verts, faces, tex, doc = _glb_mesh(out / "mesh.glb")
    cams = [c.camera for c in run.cameras]
    m = mesh_metrics(verts, faces, gv, gf, 0.01 * extent, samples=30_000, cameras=cams)
    print(f"NeRF mesh: chamfer {100 * m['chamfer'] / extent:.2f}% of extent, F@1% {m['fscore']:.3f}")
    assert m["chamfer"] <= 0.02 * extent
    assert tex.std() > 10  # a baked texture, not one colour
    extras = doc["asset"]["extras"]["recon"]
    assert extras["method"] == "nerf" and extras["mesh_from"] == "nerf density iso-surface"
    from plyfile import PlyData

    ply = PlyData.read(str(out / "points.ply"))
    assert any("points_from: nerf surface" in c for c in ply.comments)
    pts = np.stack([ply["vertex"][k] for k in "xyz"], 1)
    cols = np.stack([ply["vertex"][k] for k in ("red", "green", "blue")], 1)
    assert len(pts) > 10_000 and cols.std() > 10  # coloured, not one grey
    import open3d as o3d

    from exporters.mesh_metrics import _scene

    dist = _scene(gv, gf).compute_distance(o3d.core.Tensor(pts.astype(np.float32))).numpy()
    print(f"points: median distance to the true surface {100 * np.median(dist) / extent:.2f}% of extent")
    assert np.median(dist) < 0.02 * extent


def test_distilled_splats(trained, tmp_path, capsys):
    """Splat formats of a NeRF run: distilled splats within 1.5 dB of the NeRF on the held-out views,
    provenance in the PLY, glTF and USD files, the cache reused by a second export and by the viewer."""
    from exporters.nerf_distill import distill_dir
    from recon.eval.evaluate import evaluate
    from recon.models.splats import SplatRenderer
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene

    out = tmp_path / "exp"
    args = ["export", str(trained["run"]), "--out", str(out), "--distill-steps", "600"]
    assert recon(args + ["--format", "ply", "splat-glb", "splat-usd"]) == 0
    rec = json.loads((distill_dir(trained["run"]) / "distill.json").read_text())
    assert rec["steps"] == 600 and rec["psnr"] > 25  # splats vs NeRF renders on held-out extra views

    scene = load_scene(trained["scene"], background=EVAL_BACKGROUND)
    quiet = lambda s: None  # noqa: E731
    nerf = evaluate(RunFolder.open(trained["run"]).renderer(), scene, 1.0, log=quiet)["psnr"]
    from exporters.ply import read_ply, read_ply_comments

    splat = evaluate(SplatRenderer(read_ply(out / "splats.ply")), scene, 1.0, log=quiet)["psnr"]
    print(f"held-out PSNR: NeRF {nerf:.2f} dB, distilled splats {splat:.2f} dB")
    assert splat >= nerf - 1.5

    comments = read_ply_comments(out / "splats.ply")
    assert "recon distilled_from: nerf" in comments and "recon distill_steps: 600" in comments
    assert any(c.startswith("recon distill_psnr_vs_nerf: ") for c in comments)
    from exporters.gltf_splat import parse_glb

    doc, _ = parse_glb((out / "splats.glb").read_bytes())
    assert doc["asset"]["extras"]["recon"]["distilled_from"] == "nerf"
    pxr = pytest.importorskip("pxr")
    stage = pxr.Usd.Stage.Open(str(out / "splats.usdc"))
    assert stage.GetRootLayer().customLayerData["recon"]["distilled_from"] == "nerf"

    mtime = (distill_dir(trained["run"]) / "distill.json").stat().st_mtime_ns
    capsys.readouterr()
    assert recon(args + ["--format", "spz"]) == 0
    assert "reusing the splats distilled from this NeRF" in capsys.readouterr().err
    assert (distill_dir(trained["run"]) / "distill.json").stat().st_mtime_ns == mtime

    from viewer.run import open_run

    vr = open_run(trained["run"], distill_nerf=True, log=quiet)
    assert vr.num_gaussians == rec["gaussians"] and "distilled" in vr.note
    from recon.errors import ReconError

    with pytest.raises(ReconError, match="not made of Gaussians"):
        open_run(trained["run"])


def test_points_format_refused_on_a_splat_run(tmp_path, capsys):
    from recon.testing.gaussians import random_splats
    from recon.testing.runs import write_run

    run = write_run(tmp_path / "splat-run", random_splats(50, sh_degree=0))
    assert recon(["export", str(run), "--format", "points"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format points is for NeRF runs" in err[0] and "Traceback" not in err[0]
    assert not (run / "export" / "points.ply").exists()


def test_render_video_of_a_nerf_run(trained, tmp_path):
    """`recon render RUN` (an orbit video with frames) works on a NeRF run: every frame is the run's
    own renderer at the frame's recorded camera (PSNR > 40 dB against a direct render: only PNG
    rounding differs), the object is in view in every frame, and depth frames hold its depth."""
    from PIL import Image

    from recon.run import RunFolder

    out, frames = tmp_path / "orbit.mp4", tmp_path / "frames"
    assert recon(["render", str(trained["run"]), "--out", str(out), "--seconds", "0.4", "--fps", "10",
                  "--frames", str(frames)]) == 0
    assert out.stat().st_size > 1000
    meta = json.loads((frames / "frames.json").read_text())
    assert len(meta["frames"]) == 4
    renderer = RunFolder.open(trained["run"]).renderer()
    for rec in meta["frames"]:
        name = f"{rec['index']:05d}"
        rgb = np.asarray(Image.open(frames / "rgb" / f"{name}.png"), np.float64) / 255.0
        alpha = np.asarray(Image.open(frames / "alpha" / f"{name}.png"), np.float64) / 255.0
        cam = Camera(K=np.array(rec["K"]), width=meta["width"], height=meta["height"], c2w=np.array(rec["c2w"]))
        ref = renderer.render(cam, outputs=("rgb", "depth"), background=torch.ones(3))
        mse = float(((rgb - ref.rgb.clamp(0, 1).numpy()) ** 2).mean())
        assert 10 * math.log10(1 / max(mse, 1e-12)) > 40.0
        assert 0.05 < (alpha > 0.5).mean() < 0.95  # the object in view, not the whole frame
        depth = np.load(frames / "depth" / f"{name}.npy")
        hit = alpha > 0.5
        np.testing.assert_allclose(depth[hit], ref.depth[..., 0].numpy()[hit], rtol=1e-4, atol=1e-5)
        # the camera sits outside the object: depths are positive and shorter than the camera distance + extent
        assert (depth[hit] > 0).all() and depth[hit].max() < np.linalg.norm(np.array(rec["c2w"])[:3, 3]) + 3.0
