#!/usr/bin/env bash
# GPU check (issue 18), one command: rasterizer parity (recon CPU vs gsplat CUDA vs the dense
# reference), `pytest -m cuda`, and lego --preset quality training on CUDA; prints one table and
# writes it as JSON. On a machine without a CUDA device only the CPU half runs (exit 0).
#
#   scripts/gpu_check.sh [--out gpu_check.json] [--minutes 10] [--cpu-only] [--lego-full DIR] ...
#
# Options are scripts/gpu_check.py's (`scripts/gpu_check.sh --help`). The Python it uses:
#   1. $GPU_CHECK_VENV if set, else
#   2. ./.venv when its torch can use the GPU (or when there is no GPU), else
#   3. $HOME/.cache/recon/venv-cuda (created on a CUDA machine, when the package index answers,
#      with a CUDA torch build and recon's dependencies, gsplat included).
# Nothing is downloaded on a machine without an NVIDIA GPU. gsplat builds its CUDA kernels the first
# time they are used (needs nvcc; a few minutes, cached under ~/.cache/torch_extensions); this
# script limits the build to the GPU's own architecture.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  has_gpu=1
fi

torch_has_cuda() {  # $1: python; true when its torch was built with CUDA
  "$1" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' >/dev/null 2>&1
}

PY=""
if [ -n "${GPU_CHECK_VENV:-}" ]; then
  PY="$GPU_CHECK_VENV/bin/python"
  [ -x "$PY" ] || { echo "GPU_CHECK_VENV=$GPU_CHECK_VENV has no bin/python" >&2; exit 2; }
elif [ -x .venv/bin/python ] && { [ "$has_gpu" = 0 ] || torch_has_cuda .venv/bin/python; }; then
  PY=.venv/bin/python
elif [ "$has_gpu" = 1 ]; then
  CUDA_VENV="$HOME/.cache/recon/venv-cuda"
  if [ -x "$CUDA_VENV/bin/python" ] && torch_has_cuda "$CUDA_VENV/bin/python"; then
    PY="$CUDA_VENV/bin/python"
  else
    base=python3
    [ -x .venv/bin/python ] && base=.venv/bin/python
    if timeout 30 "$base" -m pip index versions torch >/dev/null 2>&1; then
      echo "[gpu_check] NVIDIA GPU found and no CUDA torch: installing one into $CUDA_VENV"
      mkdir -p "$(dirname "$CUDA_VENV")"
      python3 -m venv "$CUDA_VENV"
      "$CUDA_VENV/bin/python" -m pip install -q torch  # the index's default build carries CUDA
      "$CUDA_VENV/bin/python" -m pip install -q -e ".[dev]" torch
      PY="$CUDA_VENV/bin/python"
    elif [ -x .venv/bin/python ]; then
      echo "[gpu_check] NVIDIA GPU found, but .venv's torch is a CPU build and no package index answers:" \
           "running the CPU half only (install a CUDA build: make install TORCH=torch)" >&2
      PY=.venv/bin/python
    else
      echo "[gpu_check] no venv and no package index: run make install TORCH=torch first" >&2
      exit 2
    fi
  fi
else
  echo "[gpu_check] no .venv: run make install first (nothing is downloaded on a machine without a GPU)" >&2
  exit 2
fi

if [ "$has_gpu" = 1 ]; then
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' ' || true)
    [ -n "$cap" ] && export TORCH_CUDA_ARCH_LIST="$cap"
  fi
  export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
fi

echo "[gpu_check] python: $PY"
exec "$PY" scripts/gpu_check.py "$@"
