#!/usr/bin/env bash
# Debian packages recon needs: libusb and libgomp for open3d's wheel at run time; with --test (what
# `make test` passes) also chromium, the headless browser the viewer tests drive (via Playwright,
# launched from /usr/bin/chromium: no `playwright install`, no browser download).
# Installs only what is missing, and only as root; otherwise prints the command to run.
set -euo pipefail
need=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || need+=(libusb-1.0-0)
ldconfig -p | grep -q 'libgomp.so.1' || need+=(libgomp1)
# --- viewer tests (issue 7): a headless Chromium with SwiftShader WebGL ---
if [ "${1:-}" = "--test" ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
  # Blender tests (issue 19): Debian's Blender 3.4 headless, and numpy for its glTF importer
  # (Debian's package does not pull it in). The bpy module with USD is a pip install (Makefile).
  [ -x /usr/bin/blender ] || need+=(blender)
  [ -d /usr/lib/python3/dist-packages/numpy ] || need+=(python3-numpy)
fi
# ---
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "recon needs Debian packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
