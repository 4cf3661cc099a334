"""User-facing errors.

Raise :class:`ReconError` for anything caused by the user's input (a missing folder, malformed
JSON, an unreadable image, a bad option value). The CLI prints its message as one line and exits
with code 2, without a traceback. The message must name the file or value and say what to do.
"""

from __future__ import annotations


class ReconError(Exception):
    """An error caused by user input; printed as one line by the CLI (exit code 2)."""

    exit_code = 2
