#!/usr/bin/env bash
# One device call: the prior stage's SDS step and whole stage with Stable Diffusion 2.1-base's architecture
# (random weights, built on the device from bench/configs/sd21_base), then the reconstruction benchmark on
# CUDA at the configured (full) sizes and at the CPU bench's small sizes, on the hard scene. Prepare here
# first with scripts/prepare_device.sh (wheels in .whl/, bags with ground truth in bench/scenes/gpu/), then
# run on the device with carry [".whl", "bench/scenes/gpu"]:
#   BENCH_COMMIT=$(git rev-parse HEAD) bash bench/run_gpu.sh
# Results (JSON and the log) go to $OUT, else bench/results. Each step has its own time limit (T_* seconds),
# most important first, so a slow one still leaves the others' results. The default limits add up to about
# 620 s, over a device call's 600 s: run the prior alone with PRIOR_ONLY=1, or lower T_MORE.
set -uo pipefail
out=${OUT:-bench/results}
frames=${FRAMES:-bench/scenes/gpu}
mkdir -p "$out"
. "$(dirname "$0")/device_wheels.sh"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
# the prior first (most important): SDS step, UNet share, memory, then the whole prior stage of the 10-view scene;
# on its time limit it still writes what it measured (SIGTERM, then SIGKILL 30 s later)
timeout -k 30 "${T_PRIOR:-240}" python3 bench/bench_prior_gpu.py --frames "$frames/views10_kept" --out "$out"
echo "[run_gpu] exit $? after: bench_prior_gpu.py"
[ "${PRIOR_ONLY:-0}" = 1 ] && exit 0
bench() { timeout "$1" python3 bench/bench_backends.py --device cuda --frames "$frames" --out "$out" "${@:2}"; echo "[run_gpu] exit $? after: ${*:2}"; }
# the geometry stage at full size runs ~6 steps/s (bench/RESULTS.md): 300 of its 1500 steps give its speed
full=(--size full --set geometry.iterations=300 --samples 3000)
bench "${T_FULL:-120}" "${full[@]}" --views 10 --ids kept
bench "${T_SMALL:-60}" --size small --views 10 --ids kept --repeats 3 --backends neural
bench "${T_MORE:-100}" "${full[@]}" --views 15 --ids kept
bench "${T_MORE:-100}" "${full[@]}" --views 10 --ids shuffled
