"""Every `recon ...` command line in README.md and docs/ parses with the real CLI parsers."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def command_lines() -> list[tuple[str, int, str]]:
    """``(file, line number, command)`` of each line in a fenced code block that starts with
    ``recon `` (or ``$ recon ``). Synopsis lines that use ``[optional]`` / ``A|B`` notation are
    not command lines and are skipped."""
    out = []
    for path in DOCS:
        fenced = False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:]
            if not fenced or not text.startswith("recon "):
                continue
            text = re.split(r"\s+#\s", text, maxsplit=1)[0].strip()
            if re.search(r"\[[^\]]*\]|\w\|\w", text):
                continue
            out.append((path.name, n, text))
    return out


LINES = command_lines()


def test_docs_have_command_lines():
    assert len(LINES) >= 20  # README and docs/ hold about 40; a broken extractor finds none


@pytest.mark.parametrize("where,line,cmd", LINES, ids=[f"{w}:{n}" for w, n, _ in LINES])
def test_command_line_parses(where, line, cmd):
    from recon.cli import parse_only

    argv = shlex.split(cmd)[1:]
    try:
        parse_only(argv)
    except SystemExit as e:
        if e.code == 0 and ("--help" in argv or "-h" in argv):
            return  # printed its help, as asked
        pytest.fail(f"{where}:{line}: `{cmd}` does not parse ({e})")
