"""Object extraction (`recon select`): a click or a box on one training view, lifted to the splats over
all training views, matches the true object masks in held-out views; the object exports alone.

The model is the built-in turntable (six objects with ground-truth ids) trained by `recon train` for
1,500 steps at 128 px: the whole pipeline, with a trained model's blur and floaters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recon.cli import run as cli
from recon.models.splats import SplatRenderer
from recon.priors import lift
from recon.run import RunCamera, write_cameras
from recon.scene.conventions import opengl_to_opencv
from recon.selection import read_selection

RES = 128
VIEWS = 32
KNOT, BLOB, CUBE = 3, 2, 4


def _frames(scene: Path):
    tj = json.loads((scene / "transforms.json").read_text())
    K = np.array([[tj["fl_x"], 0, tj["cx"]], [0, tj["fl_y"], tj["cy"]], [0, 0, 1.0]])
    test = set(tj["test_filenames"])
    out = []
    for fr in tj["frames"]:
        c2w = opengl_to_opencv(np.array(fr["transform_matrix"]))
        split = "test" if fr["file_path"] in test else "train"
        out.append(RunCamera(name=Path(fr["file_path"]).stem, c2w=c2w, K=K, width=tj["w"], height=tj["h"],
                             split=split, image=fr["file_path"]))
    return out


def _ids(scene: Path, stem: str) -> np.ndarray:
    return np.asarray(Image.open(scene / "masks" / f"{stem}.png")).astype(np.int64)


def _inner_point(ids: np.ndarray, target: int) -> tuple[float, float]:
    import cv2

    d = cv2.distanceTransform((ids == target).astype(np.uint8), cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(d.argmax()), d.shape)
    return x + 0.5, y + 0.5


def _box(ids: np.ndarray, target: int, pad: int = 3) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(ids == target)
    return xs.min() - pad, ys.min() - pad, xs.max() + 1 + pad, ys.max() + 1 + pad


def heldout_iou(run: Path, scene: Path, name: str, target: int) -> tuple[float, float]:
    """(pooled IoU over the held-out views of the selection's visible footprint against the true
    object masks, the same for the selection rendered alone)."""
    from recon.run import RunFolder

    rf = RunFolder.open(run)
    r = SplatRenderer(rf.gaussians(), antialiased=rf.antialiased)
    keep, _ = read_selection(run, name, rf.path("model"), r.num_primitives)
    inter = union = inter_a = union_a = 0
    for c in _frames(scene):
        if c.split != "test":
            continue
        gt = _ids(scene, c.name) == target
        fp = lift.footprint(r, c.camera, keep) >= 0.5
        alone = r.subset(keep).render(c.camera).alpha[..., 0].numpy() >= 0.5
        inter += (fp & gt).sum()
        union += (fp | gt).sum()
        inter_a += (alone & gt).sum()
        union_a += (alone | gt).sum()
    return inter / union, inter_a / union_a


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    import scenes

    return scenes.synth("turntable", tmp_path_factory.mktemp("select") / "scene", views=VIEWS, res=RES)


@pytest.fixture(scope="module")
def trained_run(scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("select") / "trained"
    assert cli(["train", str(scene), "--preset", "fast", "--steps", "1500", "--out", str(out)]) == 0
    return out


def _first_train_view(scene: Path) -> str:
    return next(c.name for c in _frames(scene) if c.split == "train")


@pytest.mark.parametrize("target", [KNOT, BLOB])
def test_click_with_id_masks_standing_in_for_sam(trained_run, scene, target):
    """One click on one training view (id maps stand in for SAM), grown over the training views:
    the selection's visible footprint matches the true object in the held-out views."""
    view = _first_train_view(scene)
    x, y = _inner_point(_ids(scene, view), target)
    name = f"click{target}"
    assert cli(["select", str(trained_run), "--prompt", f"{view}:{x},{y}", "--segmenter", f"ids:{scene / 'masks'}",
                "--name", name]) == 0
    iou, alone = heldout_iou(trained_run, scene, name, target)
    print(f"object {target}: held-out IoU {iou:.3f} (selection rendered alone {alone:.3f})")
    # measured 0.903 (knot) and 0.896 (blob); the bar leaves room for float-level training changes.
    # The ceiling is the trained model's own held-out silhouettes (20 dB held out), not the lifting:
    # lifting the true masks of all 28 training views gives the same figures.
    assert iou >= {KNOT: 0.88, BLOB: 0.87}[target]
    meta = json.loads((trained_run / "selections" / f"{name}.json").read_text())
    assert meta["how"]["views_used"] >= (VIEWS - 4) // 2 and meta["model"]["sha1"]
    assert (trained_run / "selections" / f"{name}.png").is_file()


def test_grabcut_separates_by_colour_and_depth():
    """The offline segmenter on a box: an object whose colour differs from its surroundings, and one
    whose colour matches them but whose depth does not."""
    from recon.priors.segment import GrabCutSegmenter, Prompt

    rng = np.random.default_rng(0)
    H = W = 96
    yy, xx = np.mgrid[:H, :W]
    disc = (xx - 48) ** 2 + (yy - 44) ** 2 < 20**2
    img = (rng.random((H, W, 3)) * 80 + 40).astype(np.uint8)  # textured grey-ish background
    coloured = img.copy()
    coloured[disc] = (rng.random((disc.sum(), 3)) * 40 + [200, 40, 30]).astype(np.uint8)
    box = (24.0, 20.0, 72.0, 68.0)
    m = GrabCutSegmenter().segment(coloured, Prompt(box=box), "a")
    assert (m & disc).sum() / (m | disc).sum() >= 0.9
    depth = np.where(disc, 2.0, 5.0).astype(np.float32) + rng.normal(0, 0.02, (H, W)).astype(np.float32)
    m = GrabCutSegmenter().segment(img, Prompt(box=box, depth=depth), "b")  # same texture inside and out
    assert (m & disc).sum() / (m | disc).sum() >= 0.9


def test_masks_folder_lifts_as_given(trained_run, scene, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for c in _frames(scene):
        if c.split == "train":
            Image.fromarray(((_ids(scene, c.name) == BLOB) * 255).astype(np.uint8)).save(masks / f"{c.name}.png")
    assert cli(["select", str(trained_run), "--masks", str(masks), "--name", "fromMasks"]) == 0
    assert heldout_iou(trained_run, scene, "fromMasks", BLOB)[0] >= 0.87  # measured 0.896


def test_export_object_alone_and_scene_without_it(trained_run, scene, tmp_path):
    from exporters.ply import read_ply
    from recon.run import RunFolder

    view = _first_train_view(scene)
    x, y = _inner_point(_ids(scene, view), CUBE)
    assert cli(["select", str(trained_run), "--prompt", f"{view}:{x},{y}", "--segmenter", f"ids:{scene / 'masks'}",
                "--name", "cube"]) == 0
    rf = RunFolder.open(trained_run)
    n = int(rf.gaussians()["means"].shape[0])
    keep, _ = read_selection(trained_run, "cube", rf.path("model"), n)
    fmts = "ply,spz,splat,splat-glb,splat-usd"
    assert cli(["export", str(trained_run), "--selection", "cube", "--format", fmts, "--out", str(tmp_path / "obj")]) == 0
    assert cli(["export", str(trained_run), "--selection", "cube", "--invert-selection", "--format", "ply",
                "--out", str(tmp_path / "rest")]) == 0
    obj = {k: np.asarray(v) for k, v in read_ply(tmp_path / "obj" / "splats.ply").items()}
    rest = {k: np.asarray(v) for k, v in read_ply(tmp_path / "rest" / "splats.ply").items()}
    assert len(obj["means"]) == keep.sum() and len(rest["means"]) == n - keep.sum()
    # the object's Gaussians lie in the cube's box (scene frame: ply keeps the training frame).
    # Measured: 99th percentile 0.249, farthest 0.37 from its centre; without the two-view rule
    # floaters that one camera saw in front of the cube reached 1.5 (99th percentile).
    c = np.array([0.36, -0.36, 0.19])
    d = np.abs(obj["means"] - c).max(1)
    assert np.percentile(d, 99) < 0.19 * np.sqrt(2) + 0.02 and d.max() < 0.6
    # the other formats hold the same count and say what they hold
    from exporters.spz import read_spz

    assert int(read_spz(tmp_path / "obj" / "splats.spz")["means"].shape[0]) == keep.sum()
    import pxr

    stage = pxr.Usd.Stage.Open(str(tmp_path / "obj" / "splats.usdc"))
    assert "cube" in json.dumps(dict(stage.GetRootLayer().customLayerData.get("recon", {})))
    comments = (tmp_path / "obj" / "splats.ply").read_bytes()[:4000].decode("latin-1")
    assert "selection: cube" in comments
    # the object alone renders where the cube is in a held-out view
    from recon.models.splats import SplatRenderer as R

    test = next(c for c in _frames(scene) if c.split == "test")
    alpha = R(obj).render(test.camera).alpha[..., 0].numpy() >= 0.5
    gt = _ids(scene, test.name) == CUBE
    assert (alpha & gt).sum() / max(1, gt.sum()) >= 0.9


def _sam2_tiny(folder: Path) -> Path:
    from transformers import Sam2Config, Sam2Model
    from transformers.models.sam2 import (Sam2HieraDetConfig, Sam2MaskDecoderConfig, Sam2PromptEncoderConfig,
                                          Sam2VisionConfig)

    torch.manual_seed(0)
    bb = Sam2HieraDetConfig(hidden_size=16, num_attention_heads=1, image_size=[128, 128], blocks_per_stage=[1, 1, 2, 1],
                            embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
                            window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
                            window_positional_embedding_background_size=[4, 4])
    vc = Sam2VisionConfig(backbone_config=bb, backbone_channel_list=[128, 64, 32, 16],
                          backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=32)
    cfg = Sam2Config(vision_config=vc, prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=128, patch_size=16),
                     mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))
    Sam2Model(cfg).save_pretrained(str(folder))
    return folder


def test_sam2_loads_from_a_local_folder_and_matches_the_model(tmp_path, trained_run, scene):
    """recon's SAM 2 path (own pre/post-processing, no torchvision) against the model called directly;
    then `recon select --segmenter sam2:DIR` runs end to end with the tiny random model."""
    import torch.nn.functional as F

    from recon.priors.segment import Prompt, Sam2Segmenter

    folder = _sam2_tiny(tmp_path / "sam2")
    seg = Sam2Segmenter(str(folder))
    view = _first_train_view(scene)
    img = np.asarray(Image.open(scene / "images" / f"{view}.png").convert("RGB"))
    x, y = _inner_point(_ids(scene, view), KNOT)
    mask = seg.segment(img, Prompt(points=[(x, y)], labels=[1]), view)
    # the same forward by hand: resize to 128, ImageNet normalisation, point scaled, best-IoU mask upsampled
    t = torch.from_numpy(img).float().div(255).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=(128, 128), mode="bilinear", align_corners=False, antialias=True)
    t = (t - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    s = 128 / RES
    with torch.no_grad():
        out = seg.model(pixel_values=t, input_points=torch.tensor([[[[x * s, y * s]]]]), input_labels=torch.tensor([[[1]]]),
                        multimask_output=True)
    best = int(out.iou_scores[0, 0].argmax())
    ref = F.interpolate(out.pred_masks[0, 0, best][None, None], size=(RES, RES), mode="bilinear", align_corners=False)[0, 0] > 0
    assert mask.shape == (RES, RES) and (mask == ref.numpy()).mean() >= 0.999
    # end to end: a random model's mask is arbitrary, so only that the command completes and records it
    code = cli(["select", str(trained_run), "--prompt", f"{view}:{x},{y}", "--segmenter", f"sam2:{folder}", "--name", "sam",
                "--max-views", "4"])
    if code == 0:
        meta = json.loads((trained_run / "selections" / "sam.json").read_text())
        assert meta["how"]["segmenter"] == f"sam2:{folder}"
    else:
        assert code == 2  # an empty mask from random weights is reported as such, one line


@pytest.mark.parametrize(
    "args,needle",
    [
        ([], "say what to select"),
        (["--prompt", "nosuchview:1,1", "--segmenter", "grabcut"], "not a training image"),
        (["--prompt", "0:5000,1", "--segmenter", "ids:MASKS"], "outside"),
        (["--prompt", "0:1,1"], "needs a segmenter"),
        (["--prompt", "0:10,10", "--segmenter", "grabcut"], "needs a box"),
        (["--box", "0:10,10,5,5"], "empty"),
        (["--prompt", "0:1", "--segmenter", "ids:MASKS"], "two numbers"),
        (["--prompt", "0:10,10", "--segmenter", "sam2:/no/such/folder"], "no such folder"),
        (["--prompt", "0:10,10", "--segmenter", "sam2:SCENE"], "no config.json"),
        (["--masks", "/no/such/masks"], "no such folder"),
        (["--box", "0:1,1,9,9", "--name", "../evil"], "--name"),
    ],
)
def test_bad_input_is_one_line_exit_2(trained_run, scene, capsys, args, needle):
    args = [a.replace("MASKS", str(scene / "masks")).replace("SCENE", str(scene)) for a in args]
    before = sorted(p.name for p in trained_run.rglob("*"))
    assert cli(["select", str(trained_run)] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert sorted(p.name for p in trained_run.rglob("*")) == before  # nothing written


def test_stale_selection_is_refused(trained_run, scene, tmp_path, capsys):
    import shutil

    view = _first_train_view(scene)
    x, y = _inner_point(_ids(scene, view), BLOB)
    assert cli(["select", str(trained_run), "--prompt", f"{view}:{x},{y}", "--segmenter", f"ids:{scene / 'masks'}",
                "--name", "blob"]) == 0
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    from exporters.ply import read_ply, write_ply

    s = read_ply(other / "splats.ply")
    write_ply({k: v[:-5] for k, v in s.items()}, other / "splats.ply")  # "trained further"
    capsys.readouterr()
    assert cli(["export", str(other), "--selection", "blob", "--format", "ply", "--out", str(tmp_path / "x")]) == 2
    assert "select` again" in capsys.readouterr().err
    assert cli(["export", str(other), "--selection", "nosuch", "--format", "ply", "--out", str(tmp_path / "x")]) == 2
    assert cli(["export", str(other), "--invert-selection", "--format", "ply", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
