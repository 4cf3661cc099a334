"""Atomic file writes: write to a temporary file beside the target, then ``os.replace`` it.

A reader never sees a half-written export, and an interrupted export leaves the previous file (or
nothing) in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    The temporary name keeps the target's suffix (libraries such as USD pick the file format from
    it). On an exception the temporary file is removed and the target is untouched. An OS error
    (a full disk, a read-only folder, permissions) that names the temporary file, or no file, is
    re-raised naming ``path``, so the user sees the file they asked for.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:100]}.", suffix=f".tmp{path.suffix[:20]}", dir=path.parent)
    except OSError as e:
        raise _naming(e, path, None) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(e, OSError):
            raise _naming(e, path, tmp_path) from None
        raise


def _naming(e: OSError, path: Path, tmp: Path | None) -> OSError:
    """``e`` naming ``path`` instead of the temporary file (or of nothing)."""
    names = {str(tmp)} if tmp is not None else set()
    if e.filename is not None and tmp is None:  # mkstemp: the temporary name it tried
        f = Path(os.fsdecode(e.filename))
        if f.parent == path.parent and f.name.startswith(f".{path.stem[:100]}."):
            names.add(str(e.filename))
    if e.errno is None or (e.filename is not None and str(e.filename) not in names):
        return e
    if e.filename2 is not None and str(e.filename) in names:  # os.replace(tmp, path)
        new = OSError(e.errno, e.strerror, str(e.filename2))
    else:
        new = OSError(e.errno, e.strerror or os.strerror(e.errno), str(path))
    new.__cause__ = e
    return new


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask



def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
