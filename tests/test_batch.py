"""`recon batch` on a local Ray cluster: three tiny synthetic captures (one broken) give two runs with
metrics and one recorded failure (partial-failure exit code); a batch killed mid-way and run again
skips the finished capture and resumes the interrupted one from its checkpoint; every Ray listener
binds loopback. Plus the parts that need no cluster (manifests, options, the retry policy, no Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recon.errors import ReconError

ROOT = Path(__file__).resolve().parents[1]


# ---- no cluster needed ----------------------------------------------------------------------------

def test_manifest_options_and_names(tmp_path):
    from recon.cluster.captures import discover

    for n in ("a", "b"):
        (tmp_path / n).mkdir()
    (tmp_path / "m.json").write_text(json.dumps({
        "options": ["--steps", "50"],
        "captures": ["a", {"path": "b", "name": "b-hq", "options": {"preset": "quality", "pose-opt": True,
                                                                    "appearance": False}}]}))
    caps = discover(tmp_path / "m.json")
    assert [c.name for c in caps] == ["a", "b-hq"]
    assert caps[0].path == (tmp_path / "a").resolve()
    assert caps[1].options == ["--steps", "50", "--preset", "quality", "--pose-opt", "--no-appearance"]
    # a folder: each non-hidden sub-folder is a capture
    (tmp_path / ".hidden").mkdir()
    assert [c.name for c in discover(tmp_path)] == ["a", "b"]
    bad = [
        ({"captures": ["a", "a"]}, "two captures are named"),
        ({"captures": [{"path": "a", "options": ["--out", "x"]}]}, "--out is set by `recon batch`"),
        ({"captures": ["nowhere"]}, "does not exist"),
        ({"captures": [{"path": "a", "name": "_batch"}]}, "cannot name a run folder"),
        ({"captures": []}, "at least one capture"),
    ]
    for doc, msg in bad:
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        with pytest.raises(ReconError, match=msg):
            discover(tmp_path / "bad.json")


def test_cli_refuses_bad_options_in_one_line(tmp_path):
    from recon.cli import run

    (tmp_path / "caps" / "a").mkdir(parents=True)
    code = subprocess.run([sys.executable, "-m", "recon.cli", "batch", str(tmp_path / "caps"), "--out",
                           str(tmp_path / "runs"), "--steps", "lots"], capture_output=True, text=True, cwd=ROOT)
    assert code.returncode == 2 and len(code.stderr.strip().splitlines()) == 1, code.stderr
    assert "--steps" in code.stderr and "Traceback" not in code.stderr
    assert run(["batch", str(tmp_path / "caps"), "--out", str(tmp_path / "runs"), "--resume"]) == 2
    assert run(["batch", str(tmp_path / "caps"), "--out", str(tmp_path / "runs"), "--memory-gb", "0"]) == 2
    assert run(["batch", str(tmp_path / "nope"), "--out", str(tmp_path / "runs")]) == 2
    assert not (tmp_path / "runs").exists()


def test_without_ray_one_line_says_how_to_install(tmp_path, monkeypatch, capsys):
    from recon.cli import run

    (tmp_path / "caps" / "a").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert run(["batch", str(tmp_path / "caps"), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "recon[cluster]"' in err[0]


def test_retry_policy():
    from recon.cluster.batch import should_retry

    crash = {"status": "failed", "retryable": True}
    assert should_retry(crash, attempt=1, retries=1)
    assert not should_retry(crash, attempt=2, retries=1)
    assert not should_retry({"status": "failed", "retryable": False}, attempt=1, retries=3)  # bad input
    assert not should_retry({"status": "done"}, attempt=1, retries=3)


# ---- on a local Ray cluster ------------------------------------------------------------------------

def _tcp_listeners() -> dict[int, list[tuple[str, int]]]:
    """Listening TCP sockets by socket inode: ``{inode: [(address, port)]}`` from /proc/net/tcp{,6}."""
    out: dict[int, list[tuple[str, int]]] = {}
    for fam in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{fam}").read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if f[3] != "0A":  # LISTEN
                continue
            hexaddr, hexport = f[1].split(":")
            raw = bytes.fromhex(hexaddr)
            # the kernel prints each 32-bit word in host (little-endian) order
            b = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            if len(b) == 4:
                addr = ".".join(str(x) for x in b)
            else:
                import ipaddress

                a6 = ipaddress.IPv6Address(b)
                addr = str(a6.ipv4_mapped) if a6.ipv4_mapped else str(a6)
            out.setdefault(int(f[9]), []).append((addr, int(hexport, 16)))
    return out


def _session_listeners(sid: int) -> list[tuple[int, str, str, int]]:
    """``(pid, name, address, port)`` of every listening TCP socket held by a process of session ``sid``."""
    socks = _tcp_listeners()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) != sid:  # field 6 of /proc/PID/stat: the session id
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            for fd in (d / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    for addr, port in socks.get(int(target[8:-1]), []):
                        found.append((int(d.name), name, addr, port))
        except (OSError, ValueError):
            continue
    return found


def _loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1"


def _mean_colour_psnr(scene_dir: Path) -> float:
    """PSNR of the best constant image on the held-out views: a trained run must beat it clearly."""
    from recon.eval.metrics import psnr
    from recon.scene.readers import load_scene

    sc = load_scene(scene_dir, background=(1.0, 1.0, 1.0))
    vals = []
    for i in sc.indices("test"):
        im = torch.from_numpy(sc.image(i))
        vals.append(psnr(torch.full_like(im, float(im.mean())), im))
    return sum(vals) / len(vals)


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    from scenes.dataset import synth

    d = tmp_path_factory.mktemp("batch")
    caps = d / "caps"
    synth("turntable", caps / "quick", views=10, res=32, seed=1)
    synth("turntable", caps / "long", views=10, res=32, seed=2)
    broken = caps / "broken"
    broken.mkdir()
    (broken / "transforms.json").write_text((caps / "quick" / "transforms.json").read_text()[:300])
    manifest = d / "batch.json"
    manifest.write_text(json.dumps({
        "options": ["--init-num-points", "1000", "--checkpoint-every", "25", "--log-every-seconds", "0.5"],
        "captures": [{"path": "caps/quick", "options": {"steps": 150}},
                     {"path": "caps/long", "options": {"steps": 900}},
                     "caps/broken"]}))
    return d, manifest


def _kill_ray_leftovers(timeout: float = 10.0) -> None:
    me = os.getpid()
    marks = ("ray::", "raylet", "gcs_server", "ray/dashboard", "ray/_private", "default_worker.py")
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in marks):
            pids.append(int(d.name))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and any(alive(p) for p in pids):
        time.sleep(0.1)


def test_batch_partial_failure_kill_and_resume(captures):
    pytest.importorskip("ray")
    from recon.cluster.task import read_record

    d, manifest = captures
    runs = d / "runs"
    cmd = [sys.executable, "-m", "recon.cli", "batch", str(manifest), "--out", str(runs), "--num-cpus", "2",
           "--export", "ply", "spz"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log1 = open(d / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT, env=env, cwd=d, start_new_session=True)
    listeners: list = []
    killed_at = None
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            if proc.poll() is not None:
                break
            if not listeners and read_record(runs, "quick").get("status") == "running":
                listeners = _session_listeners(proc.pid)
            quick = read_record(runs, "quick").get("status")
            ckpts = list((runs / "long" / "checkpoints").glob("step_*.pt"))
            if quick == "done" and ckpts and read_record(runs, "long").get("status") == "running":
                killed_at = len(ckpts)
                break
            time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
        proc.wait()
        log1.close()
        # Ray workers can outlive their process group for a moment and finish a short task (seen on a
        # quiet CI machine): kill every Ray process left, as a crash of the machine would.
        _kill_ray_leftovers()
    first = (d / "first.log").read_text()
    assert killed_at is not None, f"the batch did not reach the kill point:\n{first[-3000:]}"
    # Security: the cluster's listeners (GCS, raylet, object manager, workers, agents) are all loopback.
    ray_socks = [s for s in listeners if any(k in s[1] for k in ("gcs_server", "raylet", "ray::", "python"))]
    assert any("gcs_server" in s[1] or "raylet" in s[1] for s in ray_socks), listeners
    off = [s for s in ray_socks if not _loopback(s[2])]
    assert not off, f"Ray listeners off loopback: {off}"

    quick_metrics = runs / "quick" / "metrics.json"
    mtime = quick_metrics.stat().st_mtime_ns
    assert (runs / "long" / "run.json").is_file() and not (runs / "long" / "metrics.json").exists()

    # The timeout is a guard: about 60 s alone, over 150 s on a loaded machine.
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=d, timeout=600)
    out = second.stdout + second.stderr
    assert second.returncode == 3, out  # partial failure
    assert "finished capture(s) skipped: quick" in out
    assert quick_metrics.stat().st_mtime_ns == mtime  # not redone
    assert (runs / "_batch" / "quick.log").read_text().count("[batch] attempt") == 1
    long_log = (runs / "_batch" / "long.log").read_text()
    assert "[train] resumed from" in long_log, long_log[-2000:]
    resumed_step = int(long_log.split("[train] resumed from")[1].split(" at step ")[1].split()[0])
    assert resumed_step >= 25

    summary = json.loads((runs / "batch.json").read_text())
    rows = {r["name"]: r for r in summary["captures"]}
    assert summary["done"] == 2 and summary["failed"] == 1 and summary["exit_code"] == 3
    for name, steps in (("quick", 150), ("long", 900)):
        r = rows[name]
        m = json.loads((runs / name / "metrics.json").read_text())
        assert r["status"] == "done" and r["steps"] == steps == m["steps"]
        assert r["psnr"] == pytest.approx(m["psnr"])
        assert r["psnr"] > _mean_colour_psnr(d / "caps" / name) + 2.0, r
        assert r["model_bytes"] == (runs / name / "splats.ply").stat().st_size > 0
        assert r["export_bytes"] and (runs / name / "export" / "splats.spz").is_file()
        assert r["seconds"] > 0
    b = rows["broken"]
    assert b["status"] == "failed" and "transforms.json" in b["error"] and "JSON" in b["error"]
    assert b["attempts"] == 2  # once per batch run: bad input is not retried within a run
    assert "broken" in out and "partial failure" in out
