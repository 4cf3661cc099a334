"""Clip offsets of a synchronised multi-view capture found from the clips (recon.capture.sync,
`recon process FOLDER --sync audio|flash`) against the rig's ground truth
(`recon scene video dynamic-rig OUT --start-frames ... --flash-frame N --audio --no-offsets-file`).

* 4 cameras at 64 px, 2.5 s at 12 fps, starting at event frames 0, 3, 1 and 5 (offsets 0, 0.25,
  0.083 and 0.417 s), a flash at event frame 14 and the event's sound on every clip (its own noise
  per camera): the flash gives every offset to the frame (measured: exact; the bar is half a frame,
  41.7 ms), the sound within 2 ms (measured: at most 0.05 ms).
* `recon process --sync audio|flash` reaches the extraction with those offsets, prints them,
  keeps them in the extraction's manifest (a re-run reuses it without decoding the sound) and
  groups every clip's frames with its found offset; end to end (16 cameras at 384 px, which SfM
  poses, 6 event frames, a flash at frame 3) the report and transforms.json carry the true
  offsets and say they were found by the flash.
* Bad inputs: a clip without sound, sound that does not match, no flash, a clip that starts
  during the flash, offsets given together with --sync: one line on stderr naming the clip or
  file, exit 2, no output folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recon.cli import run

pytest.importorskip("av")

FPS = 12
STARTS = [0, 3, 1, 5]


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> Path:
    """The set, made through the CLI (scenes.video.render_rig_videos)."""
    root = tmp_path_factory.mktemp("rigsync")
    out = root / "rig"
    assert run(["scene", "video", "dynamic-rig", str(out), "--cameras", "4", "--seconds", "2.5", "--fps", str(FPS),
                "--res", "64", "--start-frames", *map(str, STARTS), "--flash-frame", "14", "--audio",
                "--no-offsets-file"]) == 0
    assert not (out / "offsets.json").exists()
    return out


def _truth(src: Path) -> dict[str, float]:
    gt = json.loads((src / "ground_truth.json").read_text())
    return {c["video"]: c["offset_s"] for c in gt["cameras"]}


def _errors_ms(found: dict[str, float], truth: dict[str, float]) -> dict[str, float]:
    assert sorted(found) == sorted(truth)
    return {k: 1000 * (found[k] - truth[k]) for k in truth}


def test_ground_truth_records_the_cues(rig):
    gt = json.loads((rig / "ground_truth.json").read_text())
    assert _truth(rig) == {f"cam{j:02d}.mp4": pytest.approx(s / FPS) for j, s in enumerate(STARTS)}
    assert gt["flash_frame"] == 14 and gt["audio"]["rate"] == 16000 and len(gt["audio"]["bursts"]) >= 10


def test_flash_offsets_within_half_a_frame(rig):
    from recon.capture.sync import flash_offsets

    err = _errors_ms(flash_offsets(sorted(rig.glob("cam*.mp4"))), _truth(rig))
    print("flash offset errors (ms):", {k: round(v, 3) for k, v in err.items()})
    assert max(abs(v) for v in err.values()) <= 500.0 / FPS  # the bar: half a frame period
    assert max(abs(v) for v in err.values()) < 1e-3  # measured: exact (a one-frame flash, frames in phase)


def test_audio_offsets_within_2_ms(rig):
    from recon.capture.sync import sync_clips

    res = sync_clips(sorted(rig.glob("cam*.mp4")), "audio")
    err = _errors_ms(res.offsets, _truth(rig))
    print("audio offset errors (ms):", {k: round(v, 3) for k, v in err.items()}, res.describe())
    assert max(abs(v) for v in err.values()) < 2.0
    assert max(abs(v) for v in err.values()) < 0.5  # measured: at most 0.05 ms
    assert res.reference == "cam00.mp4" and all(c.confidence >= 3.0 for c in res.clips[1:])


def test_audio_lag_robust_to_microphones_and_refuses_ambiguity():
    """The lag estimator on the event's sound recorded differently (no video): another gain and a
    duller microphone, 10x and 30x the noise, mains hum; a repeating sound (a metronome) and
    another event's sound give no clear peak (ratio under the 1.5 the clips must reach)."""
    import numpy as np

    from recon.capture.sync import AUDIO_RATE as R, MIN_AUDIO_PEAK_RATIO, audio_lag
    from scenes.video import event_sound, sound_at

    rng = np.random.default_rng(0)
    bursts = event_sound(3, 6.0)

    def record(start: float, seconds: float, noise=0.005, gain=1.0, dull=0, hum=0.0, sound=bursts) -> np.ndarray:
        t = start + np.arange(int(seconds * R)) / R
        x = gain * sound_at(sound, t) + rng.normal(0, noise, len(t)) + hum * np.sin(2 * np.pi * 50 * t + 1.0)
        return np.convolve(x, np.ones(dull) / dull, mode="same") if dull else x

    ref = record(0.0, 5.0)
    cases = {"gain 0.2, dull": dict(gain=0.2, dull=4), "noise x10": dict(noise=0.05), "noise x30": dict(noise=0.15),
             "hum": dict(hum=0.3)}
    errs = {}
    for i, (name, kw) in enumerate(cases.items()):
        start = 0.1 + 0.2317 * i
        lag, peak, ratio = audio_lag(ref, record(start, 4.0, **kw))
        errs[name] = 1000 * (lag / R - start)
        assert ratio >= 2.5, (name, ratio)
    print("audio lag errors (ms):", {k: round(v, 3) for k, v in errs.items()})
    assert max(abs(v) for v in errs.values()) < 1.0  # measured: at most 0.28 ms (30x the noise), else 0.07
    metronome = [(0.1 + 0.25 * k, 1000.0, 0.003, 0.5) for k in range(24)]
    _, _, ratio = audio_lag(record(0.0, 5.0, sound=metronome), record(0.3, 4.0, sound=metronome))
    assert ratio < 1.1 < MIN_AUDIO_PEAK_RATIO
    _, _, ratio = audio_lag(ref, record(0.0, 4.0, sound=event_sound(99, 4.0)))
    assert ratio < 1.2 < MIN_AUDIO_PEAK_RATIO


def _stop_after_ingest(monkeypatch) -> list:
    """Stand in for SfM (too slow for 64 px clips, which it cannot pose anyway): keep what the
    extraction gave it and stop the run with a ReconError."""
    import recon.sfm.rig as rigmod
    from recon.errors import ReconError

    seen: list = []

    def fake_run(scene, out, staging, cache, ing, opts, prog, command):
        seen.append(ing)
        raise ReconError("stopped after the extraction")

    monkeypatch.setattr(rigmod, "_run", fake_run)
    return seen


@pytest.mark.parametrize("method,tol_ms", [("audio", 0.5), ("flash", 1e-3)])
def test_process_sync_finds_offsets(rig, tmp_path, monkeypatch, capsys, method, tol_ms):
    seen = _stop_after_ingest(monkeypatch)
    argv = ["process", str(rig), "--sync", method, "--out", str(tmp_path / "out"), "--num-threads", "1"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "stopped after the extraction" in err.strip().splitlines()[-1]
    line = next(ln for ln in err.splitlines() if f"offsets by {method}:" in ln)
    assert "cam01.mp4 +0.250 s" in line and "cam03.mp4 +0.417 s" in line, line
    ing = seen[-1]
    found = {c.name: c.offset_s for c in ing.clips}
    assert max(abs(v) for v in _errors_ms(found, _truth(rig)).values()) < tol_ms
    assert ing.sync["method"] == method and len(ing.sync["clips"]) == 4
    # Frames grouped with the found offsets: each clip's frame is its sample's event frame, and
    # offsets a fraction of a millisecond off cost no sample (event frames 5..29, every clip's).
    assert len(ing.grid_s) == 25
    for k, t in enumerate(ing.grid_s):
        for ci in range(4):
            f = ing.frame(ci, k)
            assert f.frame_index + STARTS[ci] == round(t * FPS)
    # A re-run reuses the extraction (the found offsets are in its manifest) without decoding the sound.
    import recon.capture.sync as sync

    monkeypatch.setattr(sync, "sync_clips", lambda *a, **k: pytest.fail("offsets found again"))
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert f"offsets by {method}:" in err and "(found earlier)" in err and "reusing" in err
    assert {c.name: c.offset_s for c in seen[-1].clips} == found


def test_process_sync_flash_end_to_end(tmp_path):
    """The whole of `recon process --sync flash` on a stage SfM can pose (16 cameras at 384 px,
    6 event frames): the found offsets are the truth, written where given ones are."""
    from scenes.video import render_rig_videos

    starts = [0, 1, 2, 0] * 4
    src = render_rig_videos(tmp_path / "rig", cameras=16, seconds=0.5, fps=FPS, res=384, start_frames=starts, flash_frame=3,
                            write_offsets=False)
    out = tmp_path / "out"
    assert run(["process", str(src), "--sync", "flash", "--out", str(out), "--num-threads", "1", "--quiet"]) == 0
    truth = _truth(src)
    rep = json.loads((out / "sfm_report.json").read_text())
    assert rep["rig"]["cameras_registered"] == 16 and rep["options"]["sync"] == "flash"
    assert {c["video"]: c["offset_s"] for c in rep["rig"]["cameras"]} == pytest.approx(truth, abs=1e-6)
    assert rep["rig"]["sync"]["method"] == "flash" and len(rep["rig"]["sync"]["clips"]) == 16
    rt = json.loads((out / "transforms.json").read_text())["recon_time"]
    assert rt["offsets_by"] == "flash" and rt["offsets_s"] == pytest.approx(truth, abs=1e-6)
    assert rt["first_s"] == pytest.approx(2 / FPS) and rt["times"] == 4  # event frames 2..5, every clip's
    assert "offsets found by flash: cam00.mp4 flash at frame 3" in (out / "sfm_report.txt").read_text()


def _one_line_exit_2(capsys, argv: list[str], *needles: str) -> str:
    assert run(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and "Traceback" not in "\n".join(lines), lines
    assert sum("error" in ln for ln in lines) == 1 and lines[-1].startswith("recon process: error: "), lines
    for s in needles:
        assert s in lines[-1], lines[-1]
    return lines[-1]


def test_bad_inputs_exit_2(rig, tmp_path, capsys):
    from scenes.video import render_rig_videos

    plain = render_rig_videos(tmp_path / "plain", cameras=2, seconds=1.0, fps=FPS, res=32, ss=1, write_offsets=False)
    out = tmp_path / "out"
    # A clip without sound.
    line = _one_line_exit_2(capsys, ["process", str(plain), "--sync", "audio", "--out", str(out)],
                            "cam00.mp4", "no audio stream", "offsets.json")
    print(line)
    # Nothing flashes.
    _one_line_exit_2(capsys, ["process", str(plain), "--sync", "flash", "--out", str(out)], "cam00.mp4", "no clear flash", "offsets.json")
    # One clip's sound is another event's (another seed): no clear match.
    mixed = tmp_path / "mixed"
    shutil.copytree(rig, mixed)
    other = render_rig_videos(tmp_path / "other", cameras=2, seconds=2.5, fps=FPS, res=32, ss=1, seed=7, audio=True,
                              write_offsets=False)
    shutil.copy(other / "cam01.mp4", mixed / "cam02.mp4")
    _one_line_exit_2(capsys, ["process", str(mixed), "--sync", "audio", "--out", str(out)], "cam02.mp4", "matches cam00.mp4", "offsets.json")
    # A camera that starts on the flash frame: its first frame is the flash.
    late = render_rig_videos(tmp_path / "late", cameras=2, seconds=1.0, fps=FPS, res=32, ss=1, start_frames=[0, 6],
                             flash_frame=6, write_offsets=False)
    _one_line_exit_2(capsys, ["process", str(late), "--sync", "flash", "--out", str(out)], "cam01.mp4", "first frame", "offsets.json")
    # Offsets given and asked to be found.
    given = tmp_path / "given"
    shutil.copytree(rig, given)
    (given / "offsets.json").write_text(json.dumps({"cam01.mp4": 0.25}))
    _one_line_exit_2(capsys, ["process", str(given), "--sync", "audio", "--out", str(out)], "offsets.json", "--sync audio")
    _one_line_exit_2(capsys, ["process", str(rig), "--sync", "flash", "--offsets", str(given / "offsets.json"), "--out", str(out)],
                     "offsets.json", "drop --offsets")
    assert not out.exists()
