"""Built-in ground-truth scenes: camera conventions end to end, depth, determinism, files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scenes
from recon.errors import ReconError
from recon.scene.readers import load_scene
from scenes.dataset import _build_cached


# ---------------------------------------------------------------------------------- helpers --


def read_ply_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices [V, 3], faces [F, 3] and per-face object ids of a scene's mesh.ply (via plyfile)."""
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    v = ply["vertex"]
    verts = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)
    faces = np.stack(ply["face"]["vertex_indices"]).astype(np.int64)
    return verts, faces, np.asarray(ply["face"]["object_id"])


def project(K: np.ndarray, c2w: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection written out here (independent of the renderer): OpenCV c2w, pixel
    coordinates in which the top-left pixel's centre is (0.5, 0.5)."""
    R, t = c2w[:3, :3], c2w[:3, 3]
    p = (X - t) @ R  # world -> camera (R^T (X - t)), row vectors
    z = p[:, 2]
    uv = np.stack([K[0, 0] * p[:, 0] / z + K[0, 2], K[1, 1] * p[:, 1] / z + K[1, 2]], 1)
    return uv, z


def rasterize_silhouette(uv: np.ndarray, faces: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[H, W]`` bool: pixels whose centre (i + 0.5, j + 0.5) lies inside any projected triangle."""
    tri = uv[faces]  # [F, 3, 2]
    lo = np.floor(tri.min(1) - 0.5).astype(np.int64) + 1  # first pixel index whose centre >= min
    hi = np.floor(tri.max(1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    nx, ny = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    keep = (nx > 0) & (ny > 0)
    tri, lo, nx, ny = tri[keep], lo[keep], nx[keep], ny[keep]
    cnt = nx * ny
    fid = np.repeat(np.arange(len(tri)), cnt)
    k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    px = lo[fid, 0] + k % nx[fid]
    py = lo[fid, 1] + k // nx[fid]
    cx, cy = px + 0.5, py + 0.5
    a, b, c = tri[fid, 0], tri[fid, 1], tri[fid, 2]

    def edge(p, q):
        return (q[:, 0] - p[:, 0]) * (cy - p[:, 1]) - (q[:, 1] - p[:, 1]) * (cx - p[:, 0])

    e0, e1, e2 = edge(a, b), edge(b, c), edge(c, a)
    inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
    sil = np.zeros((height, width), bool)
    sil[py[inside], px[inside]] = True
    return sil


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def apply(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    return X @ T[:3, :3].T + T[:3, 3]


def object_mask(frame) -> Path:
    """The object-id mask of a frame (``object_mask_path``: not an ignore mask, so not ``mask_path``)."""
    assert frame.mask_path is None
    return frame.image_path.parent.parent / "masks" / f"{frame.image_path.stem}.png"


# --------------------------------------------------------------------------------- fixtures --


@pytest.fixture(scope="module")
def turntable(tmp_path_factory) -> Path:
    return scenes.synth("turntable", tmp_path_factory.mktemp("tt") / "turntable", views=24, res=128)


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory) -> Path:
    return scenes.synth("dynamic", tmp_path_factory.mktemp("dyn") / "dynamic", views=16, res=96)


# ------------------------------------------------------------------------------------ tests --


def test_api_lists_scenes():
    assert {"turntable", "room", "dynamic"} <= set(scenes.SCENES)


def test_turntable_mesh_projects_onto_masks(turntable):
    """GT mesh projected with the cameras read back from transforms.json covers the rendered
    object masks: proves the OpenGL/OpenCV conversion and the +0.5 pixel-centre convention."""
    scene = load_scene(turntable)
    assert scene.format == "nerfstudio" and len(scene) == 24
    verts, faces, _ = read_ply_mesh(turntable / "mesh.ply")
    ious = []
    for fr in scene.frames:
        cam = fr.camera
        assert (cam.width, cam.height) == (128, 128)
        mask = np.asarray(Image.open(object_mask(fr))) > 0
        uv, z = project(cam.K, cam.c2w, verts)
        assert (z > 0).all()
        ious.append(iou(rasterize_silhouette(uv, faces, cam.width, cam.height), mask))
    assert min(ious) >= 0.98, ious
    # A half-pixel convention slip costs about 3 % IoU at this size; exact conventions lose ~nothing.
    assert np.mean(ious) >= 0.995, ious


def test_turntable_depth_lands_on_mesh(turntable):
    """Depth back-projected with K and the c2w read back lands on the GT surface (z-depth, not ray length)."""
    import open3d as o3d

    scene = load_scene(turntable)
    verts, faces, _ = read_ply_mesh(turntable / "mesh.ply")
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(verts.astype(np.float32), faces.astype(np.uint32))
    for fr in scene.frames[::5]:
        cam = fr.camera
        depth = np.load(fr.depth_path)
        assert depth.dtype == np.float32 and depth.shape == (cam.height, cam.width)
        mask = np.asarray(Image.open(object_mask(fr))) > 0
        np.testing.assert_array_equal(depth > 0, mask)  # 0 = no hit, exactly where the mask is background
        j, i = np.nonzero(depth > 0)
        z = depth[j, i].astype(np.float64)
        xc = np.stack([(i + 0.5 - cam.cx) / cam.fx * z, (j + 0.5 - cam.cy) / cam.fy * z, z], 1)
        X = apply(cam.c2w, xc)
        dist = rs.compute_distance(o3d.core.Tensor(X.astype(np.float32))).numpy()
        assert np.median(dist) < 1e-5 and dist.max() < 1e-4, (np.median(dist), dist.max())


def test_turntable_files_and_splits(turntable):
    meta = json.loads((turntable / "transforms.json").read_text())
    info = json.loads((turntable / "scene.json").read_text())
    assert meta["camera_model"] in ("OPENCV", "PINHOLE")
    assert meta["w"] == meta["h"] == 128 and meta["cx"] == 64.0
    names = [f["file_path"] for f in meta["frames"]]
    assert meta["test_filenames"] == names[::8]
    assert set(meta["train_filenames"]) == set(names) - set(names[::8])
    scene = load_scene(turntable)
    assert [f.split for f in scene.frames].count("test") == 3
    for key in ("name", "seed", "bbox", "objects", "light"):
        assert key in info
    assert info["name"] == "turntable" and info["seed"] == 0
    assert {o["id"] for o in info["objects"]} == set(range(1, 7))
    img = np.asarray(Image.open(turntable / "images" / "frame_00000.png"))
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    mask = np.asarray(Image.open(turntable / "masks" / "frame_00000.png"))
    near = mask > 0  # pixels next to an object may be anti-aliased
    near = near | np.roll(near, 1, 0) | np.roll(near, -1, 0)
    near = near | np.roll(near, 1, 1) | np.roll(near, -1, 1)
    assert (img[~near] == 255).all()  # plain white background
    assert set(np.unique(mask)) <= {o["id"] for o in info["objects"]} | {0}
    # The bounding box in scene.json holds the mesh.
    verts, _, _ = read_ply_mesh(turntable / "mesh.ply")
    assert (verts.min(0) >= np.array(info["bbox"]["min"]) - 1e-5).all()
    assert (verts.max(0) <= np.array(info["bbox"]["max"]) + 1e-5).all()


def test_dynamic_moving_mesh_projects_onto_masks(dynamic):
    scene = load_scene(dynamic)
    meta = json.loads((dynamic / "transforms.json").read_text())
    times = [f.time for f in scene.frames]
    assert times[0] == 0.0 and times[-1] == 1.0 and np.all(np.diff(times) > 0)
    verts, faces, fobj = read_ply_mesh(dynamic / "mesh.ply")
    ious = []
    moved_any = False
    for fr, fm in zip(scene.frames, meta["frames"]):
        v = verts.copy()
        for oid, T in fm["object_transforms"].items():
            T = np.asarray(T)
            moved_any |= not np.allclose(T, np.eye(4))
            idx = np.unique(faces[fobj == int(oid)])
            v[idx] = apply(T, verts[idx])
        cam = fr.camera
        uv, _ = project(cam.K, cam.c2w, v)
        mask = np.asarray(Image.open(object_mask(fr))) > 0
        ious.append(iou(rasterize_silhouette(uv, faces, cam.width, cam.height), mask))
    assert moved_any
    assert min(ious) >= 0.98, ious


def test_dynamic_scene_moves(dynamic):
    """The same camera at two times sees different masks (something moves)."""
    r = scenes.build("dynamic")
    from recon.scene.cameras import intrinsics_from_fov
    from scenes.render import Renderer

    c2w, _ = r.rig(4)
    K = intrinsics_from_fov(r.fov_x, 64, 64)
    ren = Renderer(r, ss=1)
    a = ren.render(K, c2w[0], 64, 64, 0.0).ids
    b = ren.render(K, c2w[0], 64, 64, 0.5).ids
    assert (a != b).sum() > 20


def test_deterministic_bytes(tmp_path, turntable):
    """Same seed, same bytes: a fresh process-level rebuild (textures too) reproduces every file."""
    _build_cached.cache_clear()  # regenerate the textures as a new process would
    again = scenes.synth("turntable", tmp_path / "again", views=24, res=128)
    for rel in ("images/frame_00005.png", "masks/frame_00017.png", "depth/frame_00023.npy", "transforms.json",
                "scene.json", "mesh.ply"):
        assert (again / rel).read_bytes() == (turntable / rel).read_bytes(), rel
    other = scenes.synth("turntable", tmp_path / "seed1", views=2, res=32, seed=1)
    first = scenes.synth("turntable", tmp_path / "seed0", views=2, res=32, seed=0)
    assert (other / "images/frame_00001.png").read_bytes() != (first / "images/frame_00001.png").read_bytes()


def test_room_forward_facing(tmp_path):
    out = scenes.synth("room", tmp_path / "room", views=9, res=64)
    scene = load_scene(out)
    info = json.loads((out / "scene.json").read_text())
    assert info["kind"] == "forward" and info["background"] is None
    for fr in scene.frames:
        depth = np.load(fr.depth_path)
        assert (depth > 0).all()  # closed room: every ray hits
    fwd = np.stack([f.camera.c2w[:3, 2] for f in scene.frames])
    assert (fwd @ fwd.mean(0) / np.linalg.norm(fwd.mean(0)) > 0.95).all()  # all look the same way
    centres = scene.camera_centers()
    assert np.ptp(centres, axis=0).max() < 1.5  # a small frontal area
    assert [f.split for f in scene.frames] == ["test"] + ["train"] * 7 + ["test"]


def test_sift_finds_hundreds_of_features():
    import pycolmap

    from recon.scene.cameras import intrinsics_from_fov
    from scenes.render import Renderer

    r = scenes.build("turntable")
    c2w, _ = r.rig(8)
    K = intrinsics_from_fov(r.fov_x, 256, 256)
    img = Renderer(r).render(K, c2w[3], 256, 256).rgb
    gray = np.ascontiguousarray((img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0)
    if hasattr(pycolmap, "FeatureExtractor") and hasattr(pycolmap.FeatureExtractor, "create"):
        kps, _ = pycolmap.FeatureExtractor.create().extract_from_float32_array(gray)  # pycolmap >= 3.13
    else:
        kps, _ = pycolmap.Sift().extract(gray)
    assert len(kps) >= 200, len(kps)


def test_reuse_and_refuse(tmp_path, turntable):
    stamp = (turntable / "transforms.json").stat().st_mtime_ns
    assert scenes.synth("turntable", turntable, views=24, res=128) == turntable
    assert (turntable / "transforms.json").stat().st_mtime_ns == stamp  # same config: reused
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ReconError):
        scenes.synth("turntable", busy, views=2, res=32)
    with pytest.raises(ReconError):
        scenes.synth("nope", tmp_path / "x")


def test_cli(tmp_path, capsys):
    from recon.cli import run

    with pytest.raises(SystemExit) as e:
        run(["scene", "--help"])
    assert e.value.code == 0
    assert run(["scene", "synth", "turntable", str(tmp_path / "cli"), "--views", "2", "--res", "32"]) == 0
    assert (tmp_path / "cli" / "images" / "frame_00001.png").is_file()
    assert run(["scene", "synth", "turntable", str(tmp_path / "cli"), "--views", "0"]) == 2


def test_render_video(tmp_path):
    av = pytest.importorskip("av")
    out = scenes.render_video("turntable", tmp_path / "v.mp4", seconds=1.0, fps=6, res=48)
    with av.open(str(out)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n == 6
    cams = json.loads((tmp_path / "v.transforms.json").read_text())
    assert len(cams["frames"]) == 6 and cams["w"] == 48


def test_rerun_replaces_only_its_own_output(tmp_path):
    out = scenes.synth("turntable", tmp_path / "s", views=3, res=16, ss=1)
    marker = json.loads((out / ".recon-synth.json").read_text())
    assert "images" in marker["entries"] and "images/frame_00002.png" in marker["files"]
    (out / "notes.txt").write_text("mine")
    (out / "run").mkdir()
    (out / "run" / "splats.ply").write_bytes(b"ply\n")
    scenes.synth("turntable", out, views=2, res=16, ss=1)  # new config: re-rendered in place
    assert (out / "notes.txt").read_text() == "mine" and (out / "run" / "splats.ply").read_bytes() == b"ply\n"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["frame_00000.png", "frame_00001.png"]
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 2
    # A file of someone else's inside synth's own folder is not deleted: the re-run is refused.
    (out / "images" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(ReconError, match="photo.jpg"):
        scenes.synth("turntable", out, views=3, res=16, ss=1)
    assert (out / "images" / "photo.jpg").is_file() and len(list((out / "images").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folders left
