"""``recon batch``'s driver: every capture as a Ray task with declared resources, progress as
results stream back, retries per policy, a summary table and ``RUNS/batch.json`` at the end.

Exit codes: 0 every capture finished; 3 at least one capture failed (the others finished: see
the summary); 130 interrupted (re-run to resume); 2 bad input.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from recon.cluster.captures import Capture
from recon.cluster.task import BATCH_DIR, read_record, run_state, write_record
from recon.errors import ReconError

EXIT_PARTIAL = 3
SUMMARY = "batch.json"


@dataclass
class BatchOptions:
    """How captures run: cluster, declared resources per capture, retries, exports."""

    address: Optional[str] = None
    num_cpus: Optional[int] = None
    num_gpus: Optional[int] = None
    cpus_per_capture: float = 1.0
    gpus_per_capture: Optional[float] = None
    """None: 1 when the cluster has GPUs, else 0."""
    memory_gb: float = 2.0
    retries: int = 1
    export: tuple[str, ...] = ("ply",)
    progress_seconds: float = 5.0


def is_finished(runs: Path, cap: Capture, export: tuple[str, ...]) -> bool:
    """Whether a capture's record and run folder say it is done (so a re-run skips it)."""
    rec = read_record(runs, cap.name)
    if rec.get("status") != "done" or run_state(runs / cap.name) != "done":
        return False
    if export:
        done = rec.get("export") or {}
        if done.get("formats") != list(export) or not all((runs / cap.name / "export" / f).is_file()
                                                          for f in done.get("files") or [None]):
            return False
    return True


def should_retry(rec: dict, attempt: int, retries: int) -> bool:
    """The retry policy: a capture that failed for a reason that may pass (a crash, an unexpected
    error, a lost worker) is tried again up to ``retries`` more times; bad input (a
    :class:`ReconError`: the same input fails the same way) and interruptions are not retried."""
    return rec.get("status") == "failed" and bool(rec.get("retryable")) and attempt <= retries


def run_batch(captures: list[Capture], runs: Path, train_options: list[str], opts: BatchOptions,
              log: Callable[[str], None] = print) -> int:
    """Run ``captures`` into ``runs``; returns the exit code (see the module docstring)."""
    from recon.cluster import ray_env

    runs = Path(runs)
    (runs / BATCH_DIR).mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    todo, skipped = [], []
    for cap in captures:
        (skipped if is_finished(runs, cap, opts.export) else todo).append(cap)
    if skipped:
        log(f"[batch] {len(skipped)} finished capture(s) skipped: {', '.join(c.name for c in skipped)}")
    if not todo:
        return _finish(captures, runs, opts, t_start, log)
    cluster = ray_env.start(opts.address, opts.num_cpus, opts.num_gpus, log=log)
    import ray

    try:
        gpus = opts.gpus_per_capture if opts.gpus_per_capture is not None else (1.0 if cluster.gpus >= 1 else 0.0)
        mem = opts.memory_gb * 1e9
        _check_fits(cluster, opts.cpus_per_capture, gpus, mem)
        task = ray.remote(_task_entry).options(num_cpus=opts.cpus_per_capture, num_gpus=gpus, memory=int(mem),
                                               max_retries=0)
        threads = [] if _has_option(train_options, "--threads") else ["--threads", str(max(1, int(opts.cpus_per_capture)))]
        log(f"[batch] {len(todo)} capture(s) to run, each with {opts.cpus_per_capture:g} CPU, {gpus:g} GPU, "
            f"{opts.memory_gb:g} GB; retries {opts.retries}; logs in {runs / BATCH_DIR}")
        pending: dict = {}
        attempts: dict[str, int] = {}
        started: dict[str, float] = {}
        durations: list[float] = []

        def submit(cap: Capture) -> None:
            attempts[cap.name] = attempts.get(cap.name, 0) + 1
            prev = read_record(runs, cap.name)
            spec = {"name": cap.name, "scene": str(cap.path), "runs": str(runs.resolve()),
                    "options": threads + list(train_options) + list(cap.options), "export": list(opts.export),
                    "attempt": int(prev.get("attempts", 0)) + 1}
            prev.update(name=cap.name, status="queued", stage="queued", progress=0.0)
            write_record(runs, cap.name, prev)
            pending[task.remote(spec)] = cap
            started[cap.name] = time.perf_counter()

        for cap in todo:
            submit(cap)
        last_line, last_t = "", 0.0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    cap = pending.pop(ref)
                    try:
                        rec = ray.get(ref)
                    except ray.exceptions.RayError as e:  # a lost worker or node, out of memory
                        rec = read_record(runs, cap.name)
                        rec.update(name=cap.name, status="failed", retryable=True,
                                   error=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}",
                                   attempts=int(rec.get("attempts", 0)) or attempts[cap.name])
                        write_record(runs, cap.name, rec)
                    if should_retry(rec, attempts[cap.name], opts.retries):
                        log(f"[batch] {cap.name}: failed ({rec.get('error')}); retrying "
                            f"({attempts[cap.name]}/{opts.retries} retries used)")
                        submit(cap)
                        continue
                    if rec.get("status") == "done":
                        durations.append(time.perf_counter() - started[cap.name])
                        log(f"[batch] {cap.name}: done, PSNR {_fmt_num(rec.get('psnr'), '.2f')} dB in "
                            f"{rec.get('seconds', 0):.0f} s")
                    else:
                        log(f"[batch] {cap.name}: {rec.get('status')}: {rec.get('error')}")
                line = _progress_line(captures, runs, pending, started, durations, t_start)
                now = time.perf_counter()
                if ready or (line != last_line and now - last_t >= opts.progress_seconds) or now - last_t >= 30:
                    log(line)
                    last_line, last_t = line, now
        except KeyboardInterrupt:
            log("[batch] interrupted: stopping the running captures (they keep their checkpoints)")
            for ref in pending:
                ray.cancel(ref)
            deadline = time.time() + 30
            for ref in list(pending):
                try:
                    ray.get(ref, timeout=max(deadline - time.time(), 0.1))
                except Exception:  # noqa: BLE001 - cancelled or already gone
                    pass
            _finish(captures, runs, opts, t_start, log)
            log("[batch] re-run the same command to resume")
            return 130
    finally:
        cluster.shutdown()
    return _finish(captures, runs, opts, t_start, log)


def _task_entry(spec: dict) -> dict:
    from recon.cluster.task import run_capture

    return run_capture(spec)


def _has_option(words: list[str], flag: str) -> bool:
    return any(w == flag or w.startswith(flag + "=") for w in words)


def _check_fits(cluster, cpus: float, gpus: float, mem: float) -> None:
    """A capture that asks for more than the whole (local) cluster has would wait forever."""
    short = []
    if cpus > cluster.cpus:
        short.append(f"{cpus:g} CPUs (the cluster has {cluster.cpus:g}; --cpus-per-capture)")
    if gpus > cluster.gpus:
        short.append(f"{gpus:g} GPUs (the cluster has {cluster.gpus:g}; --gpus-per-capture)")
    if mem > cluster.memory_bytes:
        short.append(f"{mem / 1e9:.1f} GB (the cluster offers {cluster.memory_bytes / 1e9:.1f} GB; --memory-gb)")
    if short and cluster.local:
        raise ReconError("each capture asks for " + " and ".join(short) + "; lower the request")


def _fmt_num(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _fmt_time(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _progress_line(captures, runs, pending, started, durations, t_start) -> str:
    recs = {c.name: read_record(runs, c.name) for c in captures}
    running_names = {cap.name for cap in pending.values()}
    done = sum(1 for c in captures if recs[c.name].get("status") == "done" and c.name not in running_names)
    failed = sum(1 for c in captures if recs[c.name].get("status") in ("failed", "interrupted")
                 and c.name not in running_names)
    running = [(n, recs[n]) for n in running_names if recs[n].get("status") == "running"]
    queued = len(running_names) - len(running)
    now = time.perf_counter()
    est = []
    for n, r in running:
        frac = float(r.get("progress") or 0.0)
        if frac > 0.06:
            est.append((now - started[n]) / frac)
    per = (sum(durations) / len(durations)) if durations else (max(est) if est else None)
    eta = "-"
    if per is not None:
        slots = max(len(running), 1)
        left = sum(max(per * (1 - float(r.get("progress") or 0)), 0) for _, r in running) + per * queued
        eta = _fmt_time(left / slots)
    stages = ", ".join(f"{n}: {r.get('stage')}" for n, r in sorted(running))
    return (f"[batch] {done}/{len(captures)} done | {len(running)} running{' (' + stages + ')' if stages else ''} | "
            f"{queued} queued | {failed} failed | elapsed {_fmt_time(now - t_start)} | ETA {eta}")


def _finish(captures: list[Capture], runs: Path, opts: BatchOptions, t_start: float, log) -> int:
    from recon.io_utils import atomic_write_text

    rows = []
    for c in captures:
        r = read_record(runs, c.name)
        exp = r.get("export") or {}
        rows.append({
            "name": c.name, "scene": str(c.path), "run": str(runs / c.name), "status": r.get("status", "not run"),
            "error": r.get("error"), "attempts": r.get("attempts", 0), "psnr": r.get("psnr"), "ssim": r.get("ssim"),
            "lpips": r.get("lpips"), "split": r.get("split"), "steps": r.get("steps"),
            "num_gaussians": r.get("num_gaussians"), "seconds": r.get("seconds"),
            "train_seconds": r.get("train_seconds"), "model_bytes": r.get("model_bytes"),
            "run_bytes": r.get("run_bytes"), "export_bytes": sum((exp.get("bytes") or {}).values()) or None,
            "log": str(runs / BATCH_DIR / f"{c.name}.log"),
        })
    failed = [r for r in rows if r["status"] != "done"]
    doc = {"format": "recon-batch", "version": 1, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "captures": rows, "done": len(rows) - len(failed), "failed": len(failed),
           "export": list(opts.export), "exit_code": EXIT_PARTIAL if failed else 0}
    atomic_write_text(runs / SUMMARY, json.dumps(doc, indent=2))
    table = summary_table(rows)
    atomic_write_text(runs / "batch.txt", table + "\n")
    log("")
    log(table)
    log(f"\n[batch] {doc['done']}/{len(rows)} captures done, {len(failed)} failed in "
        f"{_fmt_time(time.perf_counter() - t_start)}; summary {runs / SUMMARY}")
    if failed:
        log(f"[batch] partial failure (exit code {EXIT_PARTIAL}): fix the failed captures and re-run the same command; "
            "finished ones are skipped")
    return doc["exit_code"]


def summary_table(rows: list[dict]) -> str:
    """One line per capture: status, PSNR, Gaussians, time, model/export sizes, error."""

    def mb(v):
        return "-" if not v else f"{v / 1e6:.2f}"

    head = ["capture", "status", "PSNR dB", "SSIM", "Gaussians", "time s", "model MB", "export MB", "error"]
    body = [[r["name"], r["status"], _fmt_num(r["psnr"], ".2f"), _fmt_num(r["ssim"], ".4f"),
             _fmt_num(r["num_gaussians"], ",.0f"), _fmt_num(r["seconds"], ".0f"), mb(r["model_bytes"]),
             mb(r["export_bytes"]), (r["error"] or "")[:160]] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = lambda row: " | ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths)] + [fmt(b) for b in body])
