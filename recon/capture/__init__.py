"""Capture ingest: photos and videos to checked, upright 8-bit images for SfM.

* :mod:`recon.capture.exif`: EXIF orientation and a focal-length prior in pixels.
* :mod:`recon.capture.video`: the sharpest frame per window of a video, near-duplicates skipped.
* :mod:`recon.capture.ingest`: a folder (or file) of media to an ingest folder + manifest.
"""

from recon.capture.ingest import CaptureImage, IngestOptions, IngestResult, ingest, list_media

__all__ = ["CaptureImage", "IngestOptions", "IngestResult", "ingest", "list_media"]
