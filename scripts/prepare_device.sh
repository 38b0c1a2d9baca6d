#!/usr/bin/env bash
# Prepare a GPU benchmark run on the lent device machine, which cannot fetch anything and has neither
# pybullet, open3d nor the ROS wheels: download the few pure/compiled wheels the offline path needs for its
# Python (3.12) into .whl/, and render the bench's hard scene (bench_backends.py --scene hard) into bags with
# ground truth under bench/scenes/gpu/ (both git-ignored; name them in the device call's `carry`). Then, on
# the device, one call: BENCH_COMMIT=<sha> bash bench/run_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY_VERSION=${DEVICE_PYTHON_VERSION:-3.12}
mkdir -p .whl
.venv/bin/python -m pip download -q --disable-pip-version-check --dest .whl --only-binary=:all: \
  --python-version "$PY_VERSION" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "$(grep '^trimesh==' requirements.txt)" "$(grep '^rosbags==' requirements.txt)" "$(grep '^fast-simplification==' requirements.txt)"
rm -f .whl/numpy-*.whl  # the device has numpy already
VIEWS=${VIEWS:-"10 15"}
for views in $VIEWS; do
  for ids in kept shuffled; do
    out=bench/scenes/gpu/views${views}_${ids}
    [ -d "$out/bag" ] && continue
    # shellcheck disable=SC2086  # SCENE is a list of options
    .venv/bin/dprecon-sim-bag --out "$out" --views "$views" ${SCENE:---arc-deg 120 --depth-noise 0.005 --seed 0} \
      $([ "$ids" = shuffled ] && echo --shuffle-ids)
  done
done
du -sh .whl bench/scenes/gpu
