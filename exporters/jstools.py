"""Node.js tools used to check exports against reference implementations (tests, not the CLI).

``tools/js`` pins the Khronos glTF-Validator and Niantic's SPZ library (C++ compiled to WASM, as
packaged by ``@spz-loader/core``). Install them with ``npm ci --prefix tools/js`` (``make test``
does); callers skip their checks with the reason :func:`unavailable` gives when they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

JS_DIR = Path(__file__).resolve().parent.parent / "tools" / "js"


def unavailable(package: str) -> str | None:
    """``None`` when ``node`` and the npm ``package`` are installed, otherwise why not."""
    if shutil.which("node") is None:
        return "node (Node.js) is not installed"
    if not (JS_DIR / "node_modules" / package / "package.json").is_file():
        return f"npm package {package} is not installed; run: npm ci --prefix {JS_DIR}"
    return None


def run_node(script: str, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run ``tools/js/<script>`` with ``node``; returns the completed process (text output)."""
    return subprocess.run(
        ["node", str(JS_DIR / script), *args], capture_output=True, text=True, timeout=timeout, cwd=JS_DIR
    )
