"""Capture ingest: a folder of photos and/or videos to a flat, checked set of SfM-ready images.

What :func:`ingest` does, never touching the originals:

* lists the media in the scene folder (its top level, or ``images/`` when the top level has
  none; subfolders with ``recursive``), skipping hidden files, recon output folders and the output
  folder, and noting every other file as ignored;
* decodes every image once (corrupt or truncated files are skipped with a warning), applies EXIF
  orientation, composites alpha on white, converts 16-bit and float images to 8 bits, and drops
  exact duplicates (same pixels);
* reads the EXIF focal length as a prior in pixels (:mod:`recon.capture.exif`);
* cuts videos into their sharpest frames (:mod:`recon.capture.video`);
* writes the result to ``work_dir/ingest-<key>/images/``: a symbolic link to the original where
  COLMAP can read it as is (8-bit JPEG/PNG stored upright), else an oriented 8-bit copy; plus a
  ``manifest.json``. ``<key>`` hashes the file list (paths, sizes, modification times) and the
  options, so a re-run with the same inputs reuses the folder without decoding anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from recon.capture.exif import read_exif
from recon.errors import ReconError
from recon.scene.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES

INGEST_VERSION = 1
OUTPUT_MARKER = ".recon-sfm.json"  # written into every `recon process` output folder
DEFAULT_VIDEO_FRAMES = 150  # total frames over all videos when neither frames nor fps is given
_LINKABLE = {"JPEG": ".jpg", "PNG": ".png"}
MAX_DEPTH = 64  # deepest subfolder a recursive walk enters


def jpeg_problem(path: Path) -> Optional[str]:
    """libjpeg's complaint about a JPEG's compressed data, or ``None`` when it decodes cleanly.

    Pillow decodes a JPEG with corrupt entropy-coded data without an error (the picture is
    garbage below the damage); libjpeg only warns. This decodes the file once more through
    OpenCV's libjpeg at 1/8 scale (every coefficient is still entropy-decoded) and captures the
    warnings it prints on standard error ("Corrupt JPEG data: ...", "Premature end of JPEG
    file"). Not thread-safe with other writers of file descriptor 2 during the call.
    """
    import sys
    import tempfile

    import cv2

    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        return f"cannot read file ({e.strerror or e})"
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)
            try:
                arr = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)
            except cv2.error:
                arr = None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read(4096).decode("utf-8", "replace")
    if arr is None:
        return "corrupt JPEG data (OpenCV cannot decode it)"
    lines = [ln.strip() for ln in text.splitlines() if "JPEG" in ln or "jpeg" in ln]
    return f"corrupt JPEG data ({lines[0]})" if lines else None


@dataclass
class IngestOptions:
    """Options of :func:`ingest`.

    Attributes:
        recursive: also take media from subfolders (hidden and recon output folders excluded).
        video_frames: total frames to keep over all videos (split by duration); default 150
            when ``video_fps`` is not given either.
        video_fps: keep this many frames per second of video instead of a total count.
        dup_threshold: drop a video frame whose 64-pixel grey thumbnail differs from the previous
            kept frame by less than this mean absolute difference (0 keeps all).
        jpeg_quality: quality of JPEG copies and video frames.
    """

    recursive: bool = False
    video_frames: Optional[int] = None
    video_fps: Optional[float] = None
    dup_threshold: float = 0.01
    jpeg_quality: int = 95


@dataclass
class CaptureImage:
    """One ingested image (a photo or a video frame).

    Attributes:
        name: its file name inside :attr:`IngestResult.image_dir` (posix, may contain ``/``).
        source: the original file (absolute).
        kind: "image" or "video".
        width, height: size as displayed (after EXIF orientation), full resolution.
        focal_px: EXIF focal-length prior in pixels at full resolution, or None.
        camera_key: images with equal keys (and equal sizes) can share intrinsics.
        frame_index, time_s: position in the source video (videos only).
        linked: True when the file is a symbolic link to the unmodified original.
    """

    name: str
    source: str
    kind: str
    width: int
    height: int
    focal_px: Optional[float] = None
    camera_key: str = ""
    frame_index: Optional[int] = None
    time_s: Optional[float] = None
    linked: bool = False


@dataclass
class IngestResult:
    """The output of :func:`ingest`.

    Attributes:
        image_dir: the folder the :attr:`images` names are relative to.
        images: usable images in a stable order (photos by path, then each video's frames in time order).
        skipped: ``(file, reason)`` for media that could not be used (corrupt, undecodable).
        duplicates: ``(file, same_as)`` images dropped because their pixels equal an earlier one's.
        ignored: files that are neither images nor videos.
        videos: the video files used.
        key: the cache key of this ingest.
    """

    image_dir: Path
    images: list[CaptureImage]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def from_video(self) -> bool:
        return any(im.kind == "video" for im in self.images)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def _is_video(p: Path) -> bool:
    return p.suffix.lower() in VIDEO_SUFFIXES


def is_output_dir(p: Path) -> bool:
    """Whether ``p`` is a folder written by ``recon process`` (it holds the output marker)."""
    return (p / OUTPUT_MARKER).is_file()


def list_media(
    scene: Path, exclude: tuple[Path, ...] = (), recursive: bool = False
) -> tuple[list[Path], list[Path], list[Path]]:
    """``(images, videos, ignored)`` under ``scene`` (a folder or one media file), sorted by path.

    Looks at the folder's top level; when that has no media, at ``scene/images`` (the usual
    layout). ``recursive`` walks subfolders too. Hidden entries, ``exclude`` folders and recon
    output folders are never entered; other non-media files are returned as ``ignored``.
    """
    scene = Path(scene)
    if scene.is_file():
        if _is_image(scene):
            return [scene], [], []
        if _is_video(scene):
            return [], [scene], []
        return [], [], [scene]
    excl = {Path(os.path.abspath(e)) for e in exclude}
    # Folders already walked, by (device, inode): a symbolic link back to a parent (a cycle) or a
    # second link to the same folder is entered once, so a recursive walk always ends.
    seen: set[tuple[int, int]] = set()

    def first_visit(d: Path) -> bool:
        try:
            st = d.stat()
        except OSError:  # a broken or looping link
            return False
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return False
        seen.add(key)
        return True

    def skip_dir(d: Path) -> bool:
        return d.name.startswith(".") or Path(os.path.abspath(d)) in excl or is_output_dir(d)

    def entries(folder: Path) -> list[Path]:
        try:
            return sorted(folder.iterdir(), key=lambda q: q.name)
        except OSError as e:
            raise ReconError(f"{folder}: cannot list folder ({e.strerror or e})") from None

    def scan(folder: Path, deep: bool, depth: int = 0) -> tuple[list[Path], list[Path], list[Path]]:
        imgs, vids, other = [], [], []
        first_visit(folder)
        for p in entries(folder):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                if deep and depth < MAX_DEPTH and not skip_dir(p) and first_visit(p):
                    a, b, c = scan(p, True, depth + 1)
                    imgs += a
                    vids += b
                    other += c
                continue
            if not p.is_file():
                continue
            (imgs if _is_image(p) else vids if _is_video(p) else other).append(p)
        return imgs, vids, other

    imgs, vids, other = scan(scene, recursive)
    if not imgs and not vids and not recursive and (scene / "images").is_dir() and not skip_dir(scene / "images"):
        seen.clear()
        a, b, c = scan(scene / "images", False)
        imgs, vids, other = a, b, other + c
    return imgs, vids, other


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) >= 25 and head[12:16] == b"IHDR" else 8


def _key(files: list[Path], opts: IngestOptions) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"v": INGEST_VERSION, "opts": asdict(opts)}, sort_keys=True).encode())
    for p in files:
        st = p.stat()
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _unique(name: str, taken: set[str]) -> str:
    if name.lower() not in taken:
        taken.add(name.lower())
        return name
    stem, suf = os.path.splitext(name)
    i = 2
    while f"{stem}_{i}{suf}".lower() in taken:
        i += 1
    taken.add(f"{stem}_{i}{suf}".lower())
    return f"{stem}_{i}{suf}"


def _link_or_copy(src: Path, dst: Path) -> bool:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.abspath(src), dst)
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


def _ingest_image(
    p: Path, rel: str, image_dir: Path, taken: set[str], seen: dict[str, str], res: IngestResult, quality: int
) -> None:
    from PIL import Image, UnidentifiedImageError

    from recon.scene.images import decode, split_rgba

    try:
        arr = decode(p)  # refuses images above the pixel limit before decoding them
    except ReconError as e:
        msg = str(e)
        res.skipped.append((str(p), msg.split(": ", 1)[1] if msg.startswith(str(p)) else msg))
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size was checked by decode()
            with Image.open(p) as im:
                exif = read_exif(im)
                fmt, mode = im.format, im.mode
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        exif, fmt, mode = read_exif(None), None, None
    if fmt == "JPEG":
        problem = jpeg_problem(p)
        if problem:
            res.skipped.append((str(p), problem))
            return
    rgb, _ = split_rgba(arr, (1.0, 1.0, 1.0))
    u8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    digest = hashlib.sha1(np.ascontiguousarray(u8).tobytes() + str(u8.shape).encode()).hexdigest()
    if digest in seen:
        res.duplicates.append((str(p), seen[digest]))
        return
    seen[digest] = str(p)
    h, w = u8.shape[:2]
    linkable = (
        fmt in _LINKABLE
        and exif.orientation == 1
        and mode in ("RGB", "L")
        and (fmt != "PNG" or _png_bit_depth(p) == 8)
    )
    suffix = p.suffix if linkable else (".jpg" if fmt == "JPEG" else ".png")
    name = _unique(str(Path(rel).with_suffix(suffix).as_posix()), taken)
    dst = image_dir / name
    if linkable:
        linked = _link_or_copy(p, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        out = Image.fromarray(u8)
        if suffix == ".jpg":
            out.save(dst, quality=quality)
        else:
            out.save(dst)
        linked = False
    res.images.append(
        CaptureImage(
            name=name,
            source=os.path.abspath(p),
            kind="image",
            width=int(w),
            height=int(h),
            focal_px=exif.focal_prior_px(w, h),
            camera_key=exif.camera_key,
            linked=linked,
        )
    )


def ingest(
    scene: Path,
    work_dir: Path,
    options: Optional[IngestOptions] = None,
    exclude: tuple[Path, ...] = (),
    log: Optional[Callable[[str], None]] = None,
) -> IngestResult:
    """Ingest the photos and videos of ``scene`` into ``work_dir`` (see the module docstring).

    Args:
        scene: a folder of photos and/or videos, or one video/image file.
        work_dir: cache folder; the result goes to ``work_dir/ingest-<key>/``.
        options: :class:`IngestOptions`.
        exclude: folders not to read media from (e.g. the output folder).
        log: receives one-line progress and warning messages.

    Raises :class:`ReconError` (one line, naming the folder and what is wrong) when nothing usable
    is left: an empty folder, only non-media files, only unreadable files, one image, or images
    that are all identical.
    """
    opts = options or IngestOptions()
    say = log or (lambda s: None)
    scene = Path(scene)
    if not scene.exists():
        raise ReconError(f"{scene}: no such file or folder")
    images, videos, ignored = list_media(scene, exclude, opts.recursive)
    base = scene.parent if scene.is_file() else scene
    if not images and not videos:
        exts = "photos (.jpg, .png, .tif, ...) or videos (.mp4, .mov, .mkv, ...)"
        if ignored:
            shown = ", ".join(p.name for p in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
            raise ReconError(f"{scene}: no images or videos to process; ignored {len(ignored)} other file(s) ({shown}); expected {exts}")
        raise ReconError(f"{scene}: empty folder: no images or videos to process (expected {exts})")

    key = _key(images + videos, opts)
    out = Path(work_dir) / f"ingest-{key}"
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            res = _load_manifest(manifest)
            say(f"reusing {len(res.images)} ingested images from {out}")
            _check_usable(scene, res)
            return res
        except (KeyError, TypeError, ValueError, json.JSONDecodeError):
            pass
    if out.exists():
        shutil.rmtree(out)
    tmp = Path(work_dir) / f".ingest-{key}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    image_dir_tmp = tmp / "images"
    image_dir_tmp.mkdir(parents=True)
    res = IngestResult(image_dir=out / "images", images=[], ignored=[str(p) for p in ignored], key=key)
    if ignored:
        shown = ", ".join(p.name for p in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        say(f"note: ignoring {len(ignored)} file(s) that are not images or videos ({shown})")
    taken: set[str] = set()
    seen: dict[str, str] = {}
    step = max(1, len(images) // 10)
    for i, p in enumerate(images):
        rel = os.path.relpath(p, base) if not scene.is_file() else p.name
        _ingest_image(p, rel, image_dir_tmp, taken, seen, res, opts.jpeg_quality)
        if (i + 1) % step == 0 or i + 1 == len(images):
            say(f"images {i + 1}/{len(images)}")
    for path, reason in res.skipped:
        say(f"warning: skipping {path}: {reason}")
    for path, same in res.duplicates:
        say(f"warning: skipping {path}: same pixels as {same}")

    if videos:
        _ingest_videos(videos, base, image_dir_tmp, taken, res, opts, say)

    _check_usable(scene, res)
    (tmp / "manifest.json").write_text(json.dumps(_to_json(res), indent=1))
    os.replace(tmp, out)
    return res


def _ingest_videos(
    videos: list[Path], base: Path, image_dir: Path, taken: set[str], res: IngestResult, opts: IngestOptions, say
) -> None:
    from recon.capture.video import extract_frames, probe_video

    infos = {}
    for v in videos:
        try:
            infos[v] = probe_video(v)
        except ReconError as e:
            res.skipped.append((str(v), str(e).split(": ", 1)[-1]))
            say(f"warning: skipping {v}: {str(e).split(': ', 1)[-1]}")
    total = sum(max(i.duration_s, 1e-3) for i in infos.values())
    for v, info in infos.items():
        target = None
        if opts.video_fps is None:
            n_total = opts.video_frames or DEFAULT_VIDEO_FRAMES
            target = max(2, int(round(n_total * max(info.duration_s, 1e-3) / total)))
        rel = Path(os.path.relpath(v, base)).with_suffix("").as_posix().replace("/", "_")
        prefix = _unique(rel, taken)
        try:
            frames = extract_frames(
                v, image_dir, prefix, frames=target, fps=opts.video_fps,
                dup_threshold=opts.dup_threshold, quality=opts.jpeg_quality, log=say,
            )
        except ReconError as e:
            reason = str(e).split(": ", 1)[-1]
            res.skipped.append((str(v), reason))
            say(f"warning: skipping {v}: {reason}")
            continue
        res.videos.append(os.path.abspath(v))
        for f in frames:
            taken.add(f.name.lower())
            res.images.append(
                CaptureImage(
                    name=f.name, source=os.path.abspath(v), kind="video",
                    width=info.width, height=info.height, camera_key=f"video:{rel}",
                    frame_index=f.index, time_s=f.time_s,
                )
            )
        if frames:  # the decoded size is authoritative (rotation metadata can swap it)
            from PIL import Image

            with Image.open(frames[0].path) as im:
                w, h = im.size
            for ci in res.images[-len(frames):]:
                ci.width, ci.height = w, h


def _check_usable(scene: Path, res: IngestResult) -> None:
    n = len(res.images)
    if n == 0:
        if res.duplicates:
            raise ReconError(f"{scene}: all images are identical copies; SfM needs photos from different viewpoints")
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in res.skipped[:3])
        raise ReconError(f"{scene}: no usable images ({reasons})")
    if n == 1:
        if res.duplicates:
            raise ReconError(
                f"{scene}: all {len(res.duplicates) + 1} images are identical copies of {Path(res.images[0].source).name}; "
                "SfM needs overlapping photos taken from different viewpoints"
            )
        raise ReconError(
            f"{scene}: only 1 usable image ({Path(res.images[0].source).name}); "
            "SfM needs at least 2 overlapping photos from different viewpoints (20-200 recommended)"
        )


def _to_json(res: IngestResult) -> dict:
    return {
        "version": INGEST_VERSION,
        "key": res.key,
        "images": [asdict(im) for im in res.images],
        "skipped": res.skipped,
        "duplicates": res.duplicates,
        "ignored": res.ignored,
        "videos": res.videos,
    }


def _load_manifest(path: Path) -> IngestResult:
    d = json.loads(path.read_text())
    if d.get("version") != INGEST_VERSION:
        raise ValueError("old manifest")
    images = [CaptureImage(**im) for im in d["images"]]
    image_dir = path.parent / "images"
    for im in images:
        if not (image_dir / im.name).exists():
            raise ValueError(f"missing {im.name}")
    return IngestResult(
        image_dir=image_dir,
        images=images,
        skipped=[tuple(x) for x in d["skipped"]],
        duplicates=[tuple(x) for x in d["duplicates"]],
        ignored=d["ignored"],
        videos=d["videos"],
        key=d["key"],
    )
