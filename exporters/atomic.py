"""Atomic file output for exporters (the project's one implementation lives in ``recon.io_utils``)."""

from recon.io_utils import atomic_path
from recon.io_utils import atomic_write_bytes as write_bytes_atomic
from recon.io_utils import atomic_write_text as write_text_atomic

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic"]
