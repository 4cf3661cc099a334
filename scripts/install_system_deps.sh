#!/usr/bin/env bash
# Debian packages recon needs at run time: libusb and libgomp for open3d's wheel.
set -euo pipefail
need=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || need+=(libusb-1.0-0)
ldconfig -p | grep -q 'libgomp.so.1' || need+=(libgomp1)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "recon needs Debian packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
