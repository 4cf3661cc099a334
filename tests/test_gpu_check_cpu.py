"""The CPU half of the GPU check (issue 18) runs anywhere and reports honestly.

``scripts/gpu_check.py`` without a CUDA device: its JSON holds the CPU backend's parity with the dense
reference within the tolerances, a training smoke figure, and says that the GPU half was not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def test_cpu_half_reports_parity_and_no_cuda(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--smoke-steps", "20", "--work", str(tmp_path / "work")]
    if torch.cuda.is_available():
        cmd.append("--cpu-only")  # the CPU half only, as on a machine without a GPU
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads(out.read_text())

    # parity of the CPU backend with the dense reference, every case, within the tolerances
    par = r["parity"]
    assert list(par) == ["recon-cpu vs dense-reference"]
    cpu = par["recon-cpu vs dense-reference"]
    assert cpu["ok"] is True
    assert r["tolerances"] == {"forward_max_abs": 1e-4, "grad_rel": 1e-3}
    assert len(cpu["forward"]) >= 10 and len(cpu["grad"]) >= 5
    assert any(c.startswith("surface/") for c in cpu["forward"]) and any(c.startswith("awkward/") for c in cpu["grad"])
    for case, e in cpu["forward"].items():
        assert e["alphas"] <= 1e-4 and e["colors" if "colors" in e else "depths"] <= 1e-4, (case, e)
        assert e["visibility_mismatch"] == 0 and e["radii_mismatch"] == 0, (case, e)
        assert e["threshold_ties"] <= 2, (case, e)  # a rounding tie at 1/255 is rare, not the rule
    assert any("depths" in e for e in cpu["forward"].values())
    m = cpu["max"]
    assert m["colors"] <= 1e-4 and m["alphas"] <= 1e-4 and 0 < m["depths"] <= 1e-4
    assert 0 < m["grad_rel"] <= 1e-3
    for case, e in cpu["grad"].items():
        assert {"means", "quats", "log_scales", "logit_opacities", "means2d"} <= set(e), case
        assert max(e.values()) <= 1e-3, (case, e)

    # the training smoke run went through `recon train` and scored its held-out views
    (smoke,) = r["training"]
    assert "error" not in smoke, smoke
    assert smoke["steps"] == 20 and smoke["eval_views"] == 3 and smoke["device"] == "cpu"
    assert 5.0 < smoke["psnr"] < 60.0

    # the GPU half says it did not run, and why; nothing is filled in for it
    c = r["cuda"]
    assert c["run"] is False
    if torch.cuda.is_available():
        assert "--cpu-only" in c["reason"]
    else:
        assert c["reason"] == "no CUDA device: GPU half not run"
        assert "no CUDA device: GPU half not run" in p.stdout
    assert "pytest" not in c and "gsplat_build" not in c
    assert not any("peak_gpu_gb" in row for row in r["training"])
    assert "not run" in r["table"] and "recon-cpu vs dense-reference" in r["table"]
    methods = {m["method"]: m for m in r["methods"]}
    assert methods["splat"]["status"] == "not run"
    for name in ("nerf", "splat4d"):  # both have a CUDA path now; without CUDA it is not run
        assert methods[name]["status"] == "not run" and methods[name]["cuda"]


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="no .venv in this checkout")
def test_shell_entry_point_finds_the_venv():
    env = dict(os.environ, GPU_CHECK_VENV="")
    p = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "--minutes" in p.stdout and "--cpu-only" in p.stdout
