"""Clip offsets of a synchronised multi-view capture, found from the clips themselves.

Two cues every camera of a stage records:

* **audio** (:func:`audio_offsets`): a clap, a slate or any sharp sounds the microphones share.
  Each clip's sound is decoded, mixed to mono and resampled to :data:`AUDIO_RATE`; the lag of each
  clip against the reference (the first clip by name) is the peak of the cross-correlation of their
  onset envelopes (the rises of a 1 ms log-energy envelope of the high-passed sound, so different
  microphones, gains and hum matter little), refined to a sample by the cross-correlation of
  their log-energy envelopes near that peak (whose symmetric peaks noise does not shift).
  Measured on the synthetic rig's sound (``tests/test_rig_sync.py``): within 0.1 ms.
* **flash** (:func:`flash_offsets`): a flash (or a light switched on) that every camera sees.
  Each clip's frames are decoded small and their mean luminance taken; the flash is the frame
  whose luminance jumps up the most, which must stand well above the clip's own frame-to-frame
  changes. Frame precision: a flash that lights one frame puts each clip within half a frame
  period of its true offset when the cameras' frames are in phase.

Offsets follow ``offsets.json``'s convention (:mod:`recon.capture.multiview`): each clip's frame 0
is at that many event seconds, and the clip that started first is at 0. A clip without the cue (no
audio stream, silence, no clear flash) or with an ambiguous one is refused with one line
(:class:`ReconError`) that names it and points at ``offsets.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from recon.errors import ReconError

SYNC_VERSION = 1
SyncMethod = Literal["audio", "flash"]

AUDIO_RATE = 8000
"""Sample rate (Hz) the clips' sound is resampled to."""
ENVELOPE_HOP = 8
"""Samples per step of the onset envelope (1 ms at :data:`AUDIO_RATE`)."""
MIN_AUDIO_PEAK_RATIO = 1.5
"""The onset correlation's peak must be this many times its best rival (beyond
:data:`AUDIO_EXCLUDE_S` of the peak); repeating sounds (a metronome) or unrelated ones fail it."""
MIN_AUDIO_CORRELATION = 0.1
"""...and this normalised correlation (1: identical onsets)."""
AUDIO_EXCLUDE_S = 0.03
REFINE_S = 0.006  # the sample-level refinement searches this far around the onsets' lag
FLASH_MIN_JUMP = 0.04
"""The flash's luminance jump (mean luminance in [0, 1]) must be at least this..."""
FLASH_MIN_RATIO = 8.0
"""...this many times the clip's typical frame-to-frame change (a robust spread of the changes)..."""
FLASH_MIN_RIVAL_RATIO = 2.0
"""...and this many times the next largest rise of luminance elsewhere in the clip."""
FLASH_SIDE = 64  # frames are decoded with their long side at most this many pixels

_ADVICE = "give the clips' offsets in offsets.json (or --offsets FILE) instead"


def stream_damaged(path, what: str, e: Exception, tail: str = "") -> ReconError:
    """One line for a clip whose stream failed to decode: ``PATH: WHAT (the decoder's message)TAIL``."""
    return ReconError(f"{path}: {what} ({' '.join(str(e).split())[:160]}){tail}")


@dataclass
class ClipSync:
    """One clip's offset and how sure it is.

    Attributes:
        name: the clip's file name.
        offset_s: event time of its frame 0 (the earliest clip at 0).
        confidence: audio: the onset correlation's peak over its best rival (1 for the reference);
            flash: the flash's luminance jump over the clip's typical frame-to-frame change.
        detail: what was found, in words.
    """

    name: str
    offset_s: float
    confidence: float
    detail: str


@dataclass
class SyncResult:
    """What :func:`sync_clips` found: ``method``, ``reference`` (the clip audio lags are measured
    against; empty for a flash) and per clip (file-name order) a :class:`ClipSync`."""

    method: str
    reference: str
    clips: list[ClipSync] = field(default_factory=list)

    @property
    def offsets(self) -> dict[str, float]:
        return {c.name: c.offset_s for c in self.clips}

    def describe(self, limit: int = 8) -> str:
        """One line: ``offsets by audio: cam00.mp4 +0.000 s (reference), cam01.mp4 +0.250 s (confidence 9.3), ...``."""
        parts = [f"{c.name} {c.offset_s:+.3f} s " + ("(reference)" if c.name == self.reference else f"(confidence {c.confidence:.3g})")
                 for c in self.clips]
        more = f", ... ({len(parts) - limit} more)" if len(parts) > limit else ""
        return f"offsets by {self.method}: " + ", ".join(parts[:limit]) + more

    def to_json(self) -> dict:
        return {"method": self.method, "reference": self.reference, "version": SYNC_VERSION,
                "clips": [asdict(c) for c in self.clips]}

    @staticmethod
    def from_json(d: dict) -> "SyncResult":
        return SyncResult(method=str(d["method"]), reference=str(d["reference"]), clips=[ClipSync(**c) for c in d["clips"]])


def sync_clips(clips: Sequence[Path], method: SyncMethod) -> SyncResult:
    """Offsets of ``clips`` (two or more video files of one event) by ``method`` ("audio" or
    "flash"); see the module docstring. Raises :class:`ReconError` (one line naming the clip)."""
    clips = sorted((Path(c) for c in clips), key=lambda p: p.name)
    if len(clips) < 2:
        raise ReconError(f"--sync {method} needs at least 2 clips, got {len(clips)}")
    if method == "audio":
        return _audio_sync(clips)
    if method == "flash":
        return _flash_sync(clips)
    raise ReconError(f"--sync must be offsets, audio or flash, got {method!r}")


def audio_offsets(clips: Sequence[Path]) -> dict[str, float]:
    """``{clip file name: seconds}``: each clip's start in event time from its sound (the module
    docstring); the earliest clip at 0. One-line :class:`ReconError` for a clip without an audio
    stream, a silent one, or one whose sound matches the reference's weakly or ambiguously."""
    return sync_clips(clips, "audio").offsets


def flash_offsets(clips: Sequence[Path]) -> dict[str, float]:
    """``{clip file name: seconds}``: each clip's start in event time from the flash every camera
    sees (the module docstring); the earliest clip at 0. One-line :class:`ReconError` for a clip
    without a clear flash, or one that starts with the flash in its first frame."""
    return sync_clips(clips, "flash").offsets


def _normalised(names: list[str], rel: dict[str, float]) -> dict[str, float]:
    lo = min(rel.values())
    return {n: round(float(rel[n] - lo), 9) for n in names}


# ---------------------------------------------------------------------------------------- audio


def read_audio(path: Path, rate: int = AUDIO_RATE) -> tuple[np.ndarray, float]:
    """``(samples [S] float32, start_s)``: the clip's first audio stream, mixed to mono and
    resampled to ``rate``; ``start_s`` is the first sample's time relative to the first video
    frame (0 for a usual recording)."""
    import av

    from recon.capture.video import _open

    container = _open(path)
    try:
        if not container.streams.audio:
            raise ReconError(f"{path}: no audio stream, so --sync audio cannot place it; record sound on every camera, "
                             f"use --sync flash, or {_ADVICE}")
        ast, vst = container.streams.audio[0], container.streams.video[0]
        v0 = float(vst.start_time * vst.time_base) if vst.start_time is not None and vst.time_base else 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(rate))
        chunks: list[np.ndarray] = []
        a0 = None
        try:
            for frame in container.decode(ast):
                if a0 is None and frame.time is not None:
                    a0 = float(frame.time)
                for f in resampler.resample(frame):
                    chunks.append(f.to_ndarray().reshape(-1))
            for f in resampler.resample(None):
                chunks.append(f.to_ndarray().reshape(-1))
        except ReconError:
            raise
        except Exception as e:
            raise stream_damaged(path, "audio stream damaged", e, f"; {_ADVICE}") from None
    finally:
        container.close()
    x = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return x, (a0 - v0 if a0 is not None else 0.0)


def _energy(x: np.ndarray, win: int) -> np.ndarray:
    """``[S]``: the energy of the high-passed ``x`` (first difference: hum and rumble out),
    averaged over ``win`` samples."""
    x = np.asarray(x, np.float64)
    hp = np.diff(x, prepend=x[:1])
    return np.convolve(hp * hp, np.ones(win) / win, mode="same") if win > 1 else hp * hp


def _unit(v: np.ndarray) -> np.ndarray:
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-9 else np.zeros(len(v))


def onset_envelope(x: np.ndarray, hop: int = ENVELOPE_HOP) -> np.ndarray:
    """``[S // hop]`` float64: the rises of the log energy of the high-passed signal ``x`` ``[S]``
    per ``hop`` samples (smoothed over 3 steps, the log floored at 4x the clip's median energy,
    its noise level), zero-mean and unit norm; all zeros for silence."""
    n = len(x) // hop
    if n < 4:
        return np.zeros(max(n, 0))
    e = _energy(np.asarray(x)[: n * hop], 1).reshape(n, hop).sum(1)
    e = np.convolve(e, np.ones(3), mode="same")
    env = np.log(e + 4.0 * max(float(np.median(e)), 1e-12))
    return _unit(np.maximum(np.diff(env, prepend=env[0]), 0.0))


def energy_envelope(x: np.ndarray, win: int = ENVELOPE_HOP) -> np.ndarray:
    """``[S]`` float64: the log energy of the high-passed ``x`` ``[S]`` over ``win`` samples
    (floored at 4x its median), zero-mean and unit norm. Symmetric about each sound, so noise
    that masks the start of a sound in one recording does not shift its correlation peak."""
    e = _energy(x, win)
    return _unit(np.log(e + 4.0 * max(float(np.median(e)), 1e-12)))


def _xcorr(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """``(c, lo)``: cross-correlation ``c[L - lo] = sum_t a[t + L] b[t]`` for every lag ``L`` from
    ``lo = -(len(b) - 1)`` to ``len(a) - 1`` (by FFT)."""
    n = len(a) + len(b) - 1
    nfft = 1 << max(1, (n - 1).bit_length())
    c = np.fft.irfft(np.fft.rfft(a, nfft) * np.conj(np.fft.rfft(b, nfft)), nfft)
    return np.concatenate([c[nfft - (len(b) - 1):], c[: len(a)]]), -(len(b) - 1)


def _dot_at(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """``sum_t a[t + lag] b[t]`` over the ``t`` where both are defined."""
    t0, t1 = max(0, -lag), min(len(b), len(a) - lag)
    return float(np.dot(a[t0 + lag: t1 + lag], b[t0:t1])) if t1 > t0 else 0.0


def _parabolic(c: np.ndarray, i: int) -> float:
    if 0 < i < len(c) - 1:
        den = c[i - 1] - 2 * c[i] + c[i + 1]
        if den < 0:
            return float(np.clip(0.5 * (c[i - 1] - c[i + 1]) / den, -0.5, 0.5))
    return 0.0


def envelopes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(onset_envelope(x), energy_envelope(x))``: what :func:`audio_lag` compares, computed once
    per clip."""
    return onset_envelope(x), energy_envelope(x)


def audio_lag(ref: np.ndarray, x: np.ndarray, ref_envs: tuple[np.ndarray, np.ndarray] | None = None,
              envs: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, float, float]:
    """``(lag, peak, ratio)``: ``x`` ``[S]`` (at :data:`AUDIO_RATE`) sounds like ``ref`` ``[R]``
    ``lag`` samples later in ``ref`` (``x[t] ~ ref[t + lag]``, fractional); ``peak``: the onset
    envelopes' normalised correlation there (1: identical); ``ratio``: the peak over the best
    other lag more than :data:`AUDIO_EXCLUDE_S` away (how unambiguous it is). ``ref_envs`` /
    ``envs``: their :func:`envelopes`, when already computed."""
    er, ga = envelopes(ref) if ref_envs is None else ref_envs
    e, gb = envelopes(x) if envs is None else envs
    c, lo = _xcorr(er, e)
    i = int(np.argmax(c))
    peak = float(c[i])
    excl = int(round(AUDIO_EXCLUDE_S * AUDIO_RATE / ENVELOPE_HOP))
    rival = np.concatenate([c[: max(i - excl, 0)], c[i + excl + 1:]])
    second = float(rival.max()) if len(rival) else 0.0
    ratio = peak / second if second > 1e-12 else math.inf
    lag = (i + lo + _parabolic(c, i)) * ENVELOPE_HOP
    # Refine at one sample on the energy envelopes near the coarse lag (an onset's timing
    # depends on the noise that masks it; the envelope's symmetric peak does not): a dot
    # product per candidate lag, so long clips need no full-rate FFT.
    lags = np.arange(int(math.floor(lag - REFINE_S * AUDIO_RATE)), int(math.ceil(lag + REFINE_S * AUDIO_RATE)) + 1)
    g = np.array([_dot_at(ga, gb, int(L)) for L in lags])
    j = int(np.argmax(g))
    if 0 < j < len(g) - 1 and g[j] > 0:
        lag = float(lags[j]) + _parabolic(g, j)
    return float(lag), peak, ratio


def _audio_sync(clips: list[Path]) -> SyncResult:
    sounds = {}
    for p in clips:
        x, start = read_audio(p)
        if len(x) < AUDIO_RATE // 10:
            raise ReconError(f"{p}: {len(x) / AUDIO_RATE:.3f} s of audio, too short to align by sound; {_ADVICE}")
        envs = envelopes(x)
        if not np.any(envs[0]):
            raise ReconError(f"{p}: its audio is silent (or a constant tone), nothing to align by; use --sync flash, or {_ADVICE}")
        sounds[p] = (x, start, envs)
    ref = clips[0]
    xr, sr0, er = sounds[ref]
    rel = {ref.name: 0.0}
    found = {ref.name: (1.0, "reference")}
    for p in clips[1:]:
        x, s0, e = sounds[p]
        lag, peak, ratio = audio_lag(xr, x, er, e)
        if peak < MIN_AUDIO_CORRELATION or ratio < MIN_AUDIO_PEAK_RATIO:
            raise ReconError(
                f"{p}: its sound matches {ref.name}'s {'weakly' if peak < MIN_AUDIO_CORRELATION else 'ambiguously'} "
                f"(correlation {peak:.2f}, peak {ratio:.2f}x the next best; needs {MIN_AUDIO_CORRELATION:g} and "
                f"{MIN_AUDIO_PEAK_RATIO:g}x): a sharp sound all cameras hear (a clap, a slate) aligns clips; {_ADVICE}")
        # Sample k of this clip is at clip time s0 + k / rate; the reference's at sr0 + k / rate.
        # The same event instant: sr0 + (k + lag) / rate in the reference, s0 + k / rate here,
        # so this clip's offset minus the reference's is sr0 - s0 + lag / rate.
        rel[p.name] = sr0 - s0 + lag / AUDIO_RATE
        found[p.name] = (ratio, f"onset correlation {peak:.2f}, {ratio:.1f}x the next best")
    offs = _normalised([p.name for p in clips], rel)
    return SyncResult("audio", ref.name, [ClipSync(p.name, offs[p.name], float(min(found[p.name][0], 1e6)), found[p.name][1])
                                          for p in clips])


# ---------------------------------------------------------------------------------------- flash


def frame_luminance(path: Path, side: int = FLASH_SIDE) -> np.ndarray:
    """``[frames]`` float64: the mean luminance (in [0, 1]) of each frame of the clip, decoded with
    its long side at most ``side`` pixels."""
    from recon.capture.video import _open

    container = _open(path)
    out: list[float] = []
    try:
        st = container.streams.video[0]
        w, h = int(st.width or side), int(st.height or side)
        s = min(1.0, side / max(w, h, 1))
        sw, sh = max(2, int(round(w * s))), max(2, int(round(h * s)))
        for frame in container.decode(st):
            g = frame.reformat(width=sw, height=sh, format="gray").to_ndarray()
            out.append(float(g[:sh, :sw].mean()) / 255.0)
    except ReconError:
        raise
    except Exception as e:
        raise stream_damaged(path, f"video stream damaged after {len(out)} frames", e) from None
    finally:
        container.close()
    return np.asarray(out, np.float64)


def find_flash(lum: np.ndarray) -> tuple[int, float, str]:
    """``(frame, confidence, problem)`` for a clip's per-frame luminance ``[n]``: the frame the
    luminance jumps up to the most, that jump over the clip's typical frame-to-frame change, and
    an empty string, or a reason the flash is not clear (then ``frame`` is -1)."""
    n = len(lum)
    if n < 3:
        return -1, 0.0, f"only {n} frame(s)"
    d = np.diff(lum)
    i = int(np.argmax(d))
    jump = float(d[i])
    quiet = np.ones(len(d), bool)
    quiet[max(i - 1, 0): i + 3] = False  # the flash's rise and fall
    if -d[0] > 0.5 * max(jump, 0.0):
        quiet[:2] = False
    rest = d[quiet] if quiet.any() else np.zeros(1)
    typical = max(1.4826 * float(np.median(np.abs(rest - np.median(rest)))), 0.002)
    ratio = jump / typical
    # A first frame brighter than what follows: the clip may have started during the flash.
    first_drop = float(-d[0])
    if first_drop >= FLASH_MIN_JUMP and first_drop >= FLASH_MIN_RATIO * typical and first_drop > 0.5 * jump:
        return -1, ratio, (f"its first frame is bright and the next {first_drop:.3f} darker (luminance in [0, 1]): it seems "
                           "to start during the flash; start recording before it")
    rival = float(np.max(d[quiet], initial=0.0))
    if jump < FLASH_MIN_JUMP or ratio < FLASH_MIN_RATIO:
        return -1, ratio, (f"no clear flash: its largest rise of mean luminance is {jump:.3f} (in [0, 1]) at frame {i + 1}, "
                           f"{ratio:.1f}x its typical frame-to-frame change (needs {FLASH_MIN_JUMP:g} and {FLASH_MIN_RATIO:g}x)")
    if rival > jump / FLASH_MIN_RIVAL_RATIO:
        j = int(np.flatnonzero(quiet)[np.argmax(d[quiet])]) + 1
        return -1, ratio, (f"two flashes: mean luminance rises {jump:.3f} at frame {i + 1} and {rival:.3f} at frame {j}; "
                           "one flash per capture")
    return i + 1, ratio, ""


def _flash_sync(clips: list[Path]) -> SyncResult:
    from recon.capture.video import probe_video

    rel: dict[str, float] = {}
    found: dict[str, tuple[float, str]] = {}
    for p in clips:
        fps = float(probe_video(p).fps)
        lum = frame_luminance(p)
        k, conf, problem = find_flash(lum)
        if problem:
            raise ReconError(f"{p}: {problem}; --sync flash needs one flash every camera sees; {_ADVICE}")
        # The flash is at event time offset + k / fps in every clip.
        rel[p.name] = -k / fps
        found[p.name] = (conf, f"flash at frame {k} (+{lum[k] - lum[k - 1]:.3f} luminance, {conf:.0f}x its typical change)")
    offs = _normalised([p.name for p in clips], rel)
    return SyncResult("flash", "", [ClipSync(p.name, offs[p.name], float(found[p.name][0]), found[p.name][1])
                                               for p in clips])
