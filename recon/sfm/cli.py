"""``recon process SCENE [--out DIR]``: photos or videos to posed, undistorted frames (SfM)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import tyro

from recon.sfm.options import SfmOptions


def main(
    scene: tyro.conf.Positional[Path],
    out: Optional[Path] = None,
    sfm: Annotated[SfmOptions, tyro.conf.OmitArgPrefixes] = SfmOptions(),
    quiet: bool = False,
) -> int:
    """Run structure from motion on a folder of photos and/or videos (or one video file).

    Writes OUT (default SCENE/recon, or a work folder under ~/.cache/recon/work when SCENE cannot
    be written, e.g. photos on read-only media; see docs/sfm.md): images/ (undistorted frames), sparse/0/ (COLMAP model, SfM
    frame), transforms.json + points.ply (nerfstudio format, normalised frame: +z up, cameras in a
    unit sphere unless a metric scale is given), sfm_report.{json,txt,png}. Originals are never
    modified; features and matches are cached in OUT/.cache for re-runs.

    Args:
        scene: folder of photos and/or videos, or a single video file.
        out: output folder (default: SCENE/recon, or a work folder when SCENE is not writable).
        sfm: SfM options.
        quiet: print nothing but errors.
    """
    from recon.sfm.pipeline import command_line, print_progress, process

    argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "process" else [str(scene)]
    process(scene, out, options=sfm, log=None if quiet else print_progress, command=command_line(argv))
    return 0
