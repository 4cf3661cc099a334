"""Compilation options and float32 constants shared by the Numba CPU kernels."""

from __future__ import annotations

import numpy as np

# fastmath without nnan/ninf: culling and clamps rely on ordinary IEEE comparisons.
FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
OPTS = dict(cache=True, fastmath=FM, nogil=True, error_model="numpy")

F0 = np.float32(0.0)
F05 = np.float32(0.5)
F1 = np.float32(1.0)
F2 = np.float32(2.0)
ALPHA_THRESHOLD = np.float32(1.0 / 255.0)
