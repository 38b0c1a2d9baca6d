#!/usr/bin/env bash
# Prepare a GPU benchmark run on the lent device machine, which cannot fetch anything and has neither
# pybullet, open3d, diffusers nor the ROS wheels: download the few pure/compiled wheels the offline path and
# the prior bench (bench/bench_prior_gpu.py) need for its Python (3.12) into .whl/, and render the bench's
# hard scene (bench_backends.py --scene hard) into bags with ground truth under bench/scenes/gpu/ (both
# git-ignored; name them in the device call's `carry`, which holds 64 MiB in all with the working tree).
# Then, on the device, one call: BENCH_COMMIT=<sha> bash bench/run_gpu.sh (the geometry stage); or, carrying
# [".whl", "bench/scenes/gpu/views20_kept", "bench/scenes/tsdf_hard_640x480_10_<hash>.npz"], the texture stage
# and the instant map: bash bench/run_gpu_tsdf.sh; AGREE=0 BAKE=0 bash bench/run_gpu_texture.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY_VERSION=${DEVICE_PYTHON_VERSION:-3.12}
mkdir -p .whl
.venv/bin/python -m pip download -q --disable-pip-version-check --dest .whl --only-binary=:all: \
  --python-version "$PY_VERSION" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "$(grep '^trimesh==' requirements.txt)" "$(grep '^rosbags==' requirements.txt)" "$(grep '^fast-simplification==' requirements.txt)" \
  "$(grep '^xatlas==' requirements.txt)"
rm -f .whl/numpy-*.whl  # the device has numpy already
# diffusers (pure Python) for the prior bench: the device has its other dependencies (torch, transformers,
# huggingface_hub, safetensors) but not importlib_metadata (nor, perhaps, the zipp that one needs); Pillow,
# which diffusers imports, is not in the device's listed packages, so it travels too (7 MB; a copy on
# /tmp/site shadows the device's harmlessly). --no-deps: resolving would fetch what the device already has.
# Versions as pinned here (requirements.txt, the venv).
venv_version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
DIFFUSERS=$(grep -m1 '^diffusers==' requirements.txt || echo diffusers==0.42.1)
.venv/bin/python -m pip download -q --disable-pip-version-check --dest .whl --no-deps --only-binary=:all: \
  --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  "$DIFFUSERS" "importlib_metadata==$(venv_version importlib_metadata)" "zipp==$(venv_version zipp)" \
  "pillow==$(venv_version pillow)"
# the texture stage's CUDA rasteriser (pure Python; its plugin compiles on the device with nvcc and ninja), and
# pytest for the rasteriser agreement test (bench/run_gpu_texture.sh)
.venv/bin/python -m pip download -q --disable-pip-version-check --dest .whl --no-deps --only-binary=:all: \
  --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  diffrp-nvdiffrast==0.3.3.1 "pytest==$(venv_version pytest)" "pluggy==$(venv_version pluggy)" \
  "iniconfig==$(venv_version iniconfig)" "packaging==$(venv_version packaging)" "pygments==$(venv_version pygments)"
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
# 20 views of the same scene, for the texture bench: every other one a keyframe, the rest held out
out=bench/scenes/gpu/views20_kept
# shellcheck disable=SC2086
[ -d "$out/bag" ] || .venv/bin/dprecon-sim-bag --out "$out" --views 20 ${SCENE:---arc-deg 120 --depth-noise 0.005 --seed 0}
# the instant map's CUDA bench (bench/run_gpu_tsdf.sh): the 10 views at 640x480 bench_tsdf.py caches (10 MB)
.venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); import bench_tsdf; bench_tsdf.load_views('hard', 10, 640, 480)"
du -sh .whl bench/scenes/gpu bench/scenes/tsdf_hard_640x480_10_*.npz
carried_mib=$(du -scm .whl bench/scenes/gpu/views20_kept bench/scenes/tsdf_hard_640x480_10_*.npz | tail -1 | cut -f1)
[ "$carried_mib" -lt 60 ] || echo "prepare_device: the wheels and the texture and instant-map scenes are ${carried_mib} MiB; a device call carries 64 MiB with the tree" >&2
