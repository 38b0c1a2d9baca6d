#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 / Python 3.11 machine without a GPU: system libraries, a venv in
# .venv/ with pinned packages, the ROS 2 interface packages built from msg/, and this package's console
# scripts. Each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
STAMPS="$VENV/.dprecon-stamps"

need_apt=()
dpkg -s libusb-1.0-0 >/dev/null 2>&1 || need_apt+=(libusb-1.0-0)
for tool in cmake make g++; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$([ "$tool" = g++ ] && echo g++ || echo "$tool")"); done
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)  # the Khronos glTF validator runs on Node.js
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x "$VENV/bin/python" ] || { echo "[setup] creating $VENV"; "$PY" -m venv "$VENV"; }
mkdir -p "$STAMPS"

stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

req_hash=$(hash_of requirements.txt)
if ! stamp_ok requirements "$req_hash"; then
  echo "[setup] pip install -r requirements.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
  echo "$req_hash" > "$STAMPS/requirements"
fi

msg_hash=$(hash_of msg/* scripts/build_interfaces.py requirements.txt)
if ! stamp_ok interfaces "$msg_hash"; then
  echo "[setup] building interface packages"
  "$VENV/bin/python" scripts/build_interfaces.py
  echo "$msg_hash" > "$STAMPS/interfaces"
fi

pkg_hash=$(hash_of setup.py)
if ! stamp_ok package "$pkg_hash" || [ ! -x "$VENV/bin/dprecon-reconstruct" ]; then
  echo "[setup] pip install -e ."
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2> >(grep -v "^WARNING: Location" >&2)
  echo "$pkg_hash" > "$STAMPS/package"
fi

# the Khronos glTF validator (npm), which tests run on exported GLBs: scripts/validate_gltf.cjs
GLTF_VALIDATOR="gltf-validator@2.0.0-dev.3.10"
if ! stamp_ok gltf_validator "$GLTF_VALIDATOR" || [ ! -f "$ROOT/.tools/node_modules/gltf-validator/package.json" ]; then
  echo "[setup] npm install $GLTF_VALIDATOR"
  mkdir -p "$ROOT/.tools"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "$GLTF_VALIDATOR" >/dev/null
  echo "$GLTF_VALIDATOR" > "$STAMPS/gltf_validator"
fi
