"""One capture's job, as a Ray task runs it: process (SfM when the capture has no poses) → train →
eval → export, through recon's own entry points, each stage skipped when its output is there.

State lives in files, so a re-run (or a retry on another node) picks up where the last attempt
stopped: ``RUNS/NAME/`` is an ordinary ``recon train`` run folder (resumed from its last checkpoint
with ``--resume``), ``RUNS/_batch/NAME.json`` the capture's record (stage, progress, attempts, error,
figures) and ``RUNS/_batch/NAME.log`` the output of every stage.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from recon.errors import ReconError

BATCH_DIR = "_batch"
_STEP = re.compile(r"^\[train\] step (\d+)/(\d+)")


def record_path(runs: Path, name: str) -> Path:
    return Path(runs) / BATCH_DIR / f"{name}.json"


def read_record(runs: Path, name: str) -> dict:
    p = record_path(runs, name)
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def write_record(runs: Path, name: str, rec: dict) -> None:
    from recon.io_utils import atomic_write_text

    p = record_path(runs, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(rec, indent=2))


def run_state(run: Path) -> str:
    """``"none"`` (no run yet), ``"done"``, ``"resumable"`` (training, with a checkpoint) or
    ``"stale"`` (a manifest that says training, with no checkpoint to resume from)."""
    mp = Path(run) / "run.json"
    if not mp.is_file():
        return "none"
    try:
        status = json.loads(mp.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return "stale"
    if status == "done":
        return "done"
    return "resumable" if any((Path(run) / "checkpoints").glob("step_*.pt")) else "stale"


def folder_bytes(p: Path, skip: tuple[str, ...] = ()) -> int:
    total = 0
    for f in Path(p).rglob("*"):
        if f.is_file() and not any(part in skip for part in f.relative_to(p).parts):
            total += f.stat().st_size
    return total


class _Progress:
    """The log function handed to the stages: writes every line to the capture's log and keeps
    its record's stage and progress fresh (at most once a second)."""

    def __init__(self, runs: Path, name: str, rec: dict, fh):
        self.runs, self.name, self.rec, self.fh = runs, name, rec, fh
        self.last = 0.0

    def stage(self, stage: str, progress: float) -> None:
        self.rec.update(stage=stage, progress=round(progress, 4))
        self.fh.write(f"[batch] stage {stage}\n")
        self.fh.flush()
        write_record(self.runs, self.name, self.rec)
        self.last = time.monotonic()

    def __call__(self, msg: str) -> None:
        self.fh.write(str(msg) + "\n")
        self.fh.flush()
        m = _STEP.match(str(msg))
        if m and time.monotonic() - self.last > 1.0:
            step, total = int(m.group(1)), max(int(m.group(2)), 1)
            self.rec.update(stage=f"train {step}/{total}", progress=round(0.05 + 0.8 * step / total, 4))
            write_record(self.runs, self.name, self.rec)
            self.last = time.monotonic()


def run_capture(spec: dict) -> dict:
    """Run one capture to the end (or to its first error) and return its record.

    ``spec``: ``name``, ``scene`` (the capture folder), ``runs`` (RUNS/), ``options`` (recon train
    words), ``export`` (format keys; empty: no export), ``attempt``. Errors are returned in the
    record (``status: "failed"``, ``error``, ``retryable``), never raised, so one capture cannot stop
    the others.
    """
    runs, name = Path(spec["runs"]), spec["name"]
    run = runs / name
    rec = read_record(runs, name)
    rec.update(name=name, scene=str(spec["scene"]), run=str(run), status="running", stage="start", progress=0.0,
               attempts=int(spec.get("attempt", 1)), error=None, options=list(spec["options"]),
               started=time.time(), node=_node())
    write_record(runs, name, rec)
    t0 = time.perf_counter()
    log_path = runs / BATCH_DIR / f"{name}.log"
    with open(log_path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        prog = _Progress(runs, name, rec, fh)
        fh.write(f"\n[batch] attempt {rec['attempts']} of {name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        try:
            scene = _process(Path(spec["scene"]), runs / BATCH_DIR / f"{name}.sfm", prog)
            code = _train(scene, run, list(spec["options"]), rec, prog)
            if code == 130:
                rec.update(status="interrupted", error="interrupted; re-run the batch to resume", retryable=False)
            elif code != 0:
                rec.update(status="failed", error=f"recon train exited with code {code}", retryable=True)
            else:
                _eval(run, prog)
                _export(run, tuple(spec.get("export") or ()), rec, prog)
                rec.update(status="done", stage="done", progress=1.0, retryable=False, **_figures(run))
        except ReconError as e:
            rec.update(status="failed", error=" ".join(str(e).split()), retryable=False)
            fh.write(f"[batch] error: {rec['error']}\n")
        except KeyboardInterrupt:
            rec.update(status="interrupted", error="interrupted; re-run the batch to resume", retryable=False)
        except Exception as e:  # noqa: BLE001 - recorded, retried per the batch's policy
            rec.update(status="failed", error=f"{type(e).__name__}: {' '.join(str(e).split())}", retryable=True)
            traceback.print_exc(file=fh)
    rec["seconds"] = round(rec.get("seconds_before", 0.0) + time.perf_counter() - t0, 2)
    if rec["status"] != "done":
        rec["seconds_before"] = rec["seconds"]  # a resumed attempt adds to the time already spent
    rec["finished"] = time.time()
    write_record(runs, name, rec)
    return rec


def _node() -> str:
    import socket

    return socket.gethostname()


def _process(scene: Path, sfm_out: Path, prog: _Progress) -> Path:
    from recon.sfm import needs_processing, process

    if not scene.exists():
        raise ReconError(f"capture {scene} does not exist")
    if needs_processing(scene):
        prog.stage("process", 0.0)
        return Path(process(scene, sfm_out, log=prog))
    return scene


def _train(scene: Path, run: Path, options: list[str], rec: dict, prog: _Progress) -> int:
    from recon.commands.train import parse, run_request

    state = run_state(run)
    if state == "done":
        prog("[batch] the run is finished: training skipped")
        return 0
    if state == "stale":
        if not rec.get("created_run"):
            raise ReconError(f"{run} holds a run with no checkpoint that this batch did not make; move it away or "
                             "choose another --out")
        prog(f"[batch] {run} was started but has no checkpoint yet: starting it again")
        shutil.rmtree(run)
        state = "none"
    argv = [str(scene), "--out", str(run)] + options
    if state == "resumable":
        argv.append("--resume")
        prog.stage("train (resume)", 0.05)
    else:
        rec["created_run"] = not run.exists()
        prog.stage("train", 0.05)
    return run_request(parse(argv), log=prog)


def _eval(run: Path, prog: _Progress) -> None:
    """``recon eval`` when the run has no held-out scores yet (``recon train`` writes them)."""
    from recon.run import RunFolder

    if RunFolder.open(run).metrics().get("psnr") is not None:
        return
    from recon.commands.eval import main as eval_main

    prog.stage("eval", 0.9)
    eval_main(run)


def _export(run: Path, formats: tuple[str, ...], rec: dict, prog: _Progress) -> None:
    if not formats:
        return
    out = run / "export"
    done = rec.get("export") or {}
    if done.get("formats") == list(formats) and done.get("files") and all((out / f).is_file() for f in done["files"]):
        prog("[batch] export is up to date: skipped")
        return
    from exporters.cli import main as export_main

    prog.stage("export", 0.95)
    export_main(run, format=formats, out=out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    rec["export"] = {"formats": list(formats), "files": files,
                     "bytes": {f: (out / f).stat().st_size for f in files}}


def _figures(run: Path) -> dict[str, Any]:
    from recon.run import RunFolder

    rf = RunFolder.open(run)
    m = rf.metrics()
    model: Optional[Path] = rf.path("model")
    return {
        "psnr": m.get("psnr"), "ssim": m.get("ssim"), "lpips": m.get("lpips"), "split": m.get("split"),
        "eval_views": m.get("eval_views"), "steps": m.get("steps"), "train_seconds": m.get("train_seconds"),
        "num_gaussians": m.get("num_gaussians"),
        "model_bytes": model.stat().st_size if model is not None and model.is_file() else None,
        "run_bytes": folder_bytes(run, skip=("checkpoints", "export")),
    }
