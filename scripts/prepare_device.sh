#!/usr/bin/env bash
# Prepare a GPU benchmark run on the lent device machine, which cannot fetch anything and has neither
# pybullet, open3d nor the ROS wheels: download the few pure/compiled wheels the offline path needs for its
# Python (3.12) into .whl/, and render the simulated scenes into bags with ground truth under
# bench/scenes/ (both git-ignored; name them in the device call's `carry`). Then, on the device:
#   python3 -m pip install -q --no-index --find-links .whl trimesh rosbags fast-simplification
#   PYTHONPATH=. python3 bench/bench_backends.py --size full --device cuda --frames bench/scenes --views 15
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
    out=bench/scenes/views${views}_${ids}
    [ -d "$out/bag" ] && continue
    .venv/bin/dprecon-sim-bag --out "$out" --views "$views" $([ "$ids" = shuffled ] && echo --shuffle-ids)
  done
done
du -sh .whl bench/scenes
