#!/usr/bin/env bash
# One device call for the instant map (issue: the instant map): bench/bench_tsdf.py with the project's fusion on
# CUDA, alone (the device machine has no open3d; its figures are set beside nvblox's published ones), on the
# cached 640x480 views of the hard scene. Prepare here with `.venv/bin/python bench/bench_tsdf.py --views 10
# --no-latency` (it renders and caches the views in bench/scenes/) and scripts/prepare_device.sh (the wheels),
# then run with carry [".whl", "bench/scenes/tsdf_hard_640x480_10_<hash>.npz"]:
#   bash bench/run_gpu_tsdf.sh
set -uo pipefail
out=${OUT:-bench/results}
mkdir -p "$out"
. "$(dirname "$0")/device_wheels.sh"
export PYTHONUNBUFFERED=1
# the CPU/CUDA agreement of fusion and meshing first (skipped where no GPU), then the bench
timeout "${T_AGREE:-120}" python3 -m pytest -q -p no:cacheprovider test/core/fusion/test_sparse_fusion.py -k cuda -rs 2>&1 | tail -5
echo "[run_gpu_tsdf] exit ${PIPESTATUS[0]} after: CPU/CUDA agreement of fusion and meshing"
# shellcheck disable=SC2086  # VIEWS and THREADS are lists of words
timeout "${T_TSDF:-240}" python3 bench/bench_tsdf.py --device cuda --no-latency --no-open3d --views ${VIEWS:-10} \
    --threads "${THREADS:-2}" --mesh-repeats "${MESH_REPEATS:-5}" --out "$out"
echo "[run_gpu_tsdf] exit $? after: bench_tsdf on cuda"
