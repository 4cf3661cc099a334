"""User-facing errors.

Raise :class:`ReconError` for anything caused by the user's input (a missing folder, malformed
JSON, an unreadable image, a bad option value). The CLI prints its message as one line and exits
with code 2, without a traceback. The message must name the file or value and say what to do.
"""

from __future__ import annotations


class ReconError(Exception):
    """An error caused by user input; printed as one line by the CLI (exit code 2)."""

    exit_code = 2


# What a user can do about each OS error, by errno name (the OS's own wording is the reason).
_OS_ADVICE: dict[str, tuple[str, str]] = {
    # errno: (what was attempted, what to do)
    "EACCES": ("cannot access", "check its permissions or choose another path"),
    "EPERM": ("cannot access", "check its permissions or choose another path"),
    "EROFS": ("cannot write", "the file system is read-only: write to another folder (--out)"),
    "ENOSPC": ("cannot write", "the disk is full: free some space or write to another disk (--out)"),
    "EDQUOT": ("cannot write", "the disk quota is exceeded: free some space or write elsewhere (--out)"),
    "EFBIG": ("cannot write", "the file is too large for this file system: write to another disk (--out)"),
    "ENAMETOOLONG": ("cannot use", "the name is too long for the file system: choose a shorter path"),
    "ENOTDIR": ("cannot use", "part of the path is a file, not a folder: fix the path"),
    "EISDIR": ("cannot use", "it is a folder where a file is expected: pass a file path"),
    "EEXIST": ("cannot create", "something already exists there: remove it or choose another path"),
    "ENOTEMPTY": ("cannot replace", "the folder is not empty: remove it or choose another path"),
    "ENOENT": ("cannot find", "check the path"),
    "ELOOP": ("cannot follow", "the path has a symbolic-link loop: fix the link"),
    "EXDEV": ("cannot move", "write the output on the same disk as its folder"),
    "EMFILE": ("cannot open", "too many open files: raise the limit (ulimit -n) and retry"),
    "ENFILE": ("cannot open", "too many open files on the system: retry later"),
    "EIO": ("cannot read or write", "the device reported an I/O error: check the disk or medium"),
    "EADDRINUSE": ("cannot listen on", "the port is in use: choose another --port (0: any free port)"),
    "EADDRNOTAVAIL": ("cannot listen on", "the address is not on this machine: choose another --host"),
    "EBUSY": ("cannot use", "it is in use by another program: retry when it is free"),
    "ETXTBSY": ("cannot write", "it is in use by another program: retry when it is free"),
}


def describe_os_error(e: OSError) -> str:
    """One line for an OS error: ``<what> <path>: <reason>; <what to do>`` (no traceback).

    The path is the one the OS named (both paths for a rename); the reason is the OS's own
    wording of the errno; the advice depends on the errno.
    """
    import errno as _errno
    import os

    name = _errno.errorcode.get(e.errno, "") if e.errno is not None else ""
    what, advice = _OS_ADVICE.get(name, ("cannot use", "check the path and retry"))
    reason = e.strerror or (os.strerror(e.errno) if e.errno is not None else None) or str(e) or type(e).__name__
    if e.errno is None and e.args and not e.strerror:  # a library's OSError (e.g. an unreadable image)
        reason = " ".join(str(a) for a in e.args)
        what, advice = "cannot read", "check the file or remove it"
    parts = [str(p) for p in (getattr(e, "filename", None), getattr(e, "filename2", None)) if p not in (None, "")]
    path = " -> ".join(parts)
    reason = " ".join(str(reason).split())  # one line
    if path:
        return f"{what} {path}: {reason}; {advice}"
    return f"{what}: {reason}; {advice}"
