#!/usr/bin/env bash
# One device call: the reconstruction benchmark on CUDA at the configured (full) sizes and at the CPU bench's
# small sizes, on the hard scene. Prepare here first with scripts/prepare_device.sh (wheels in .whl/, bags with
# ground truth in bench/scenes/gpu/), then run on the device with carry [".whl", "bench/scenes/gpu"]:
#   BENCH_COMMIT=$(git rev-parse HEAD) bash bench/run_gpu.sh
# Results (JSON and the log) go to $OUT, else bench/results. Each step has its own time limit (T_* seconds),
# most important first, so a slow one still leaves the others' results.
set -uo pipefail
out=${OUT:-bench/results}
frames=${FRAMES:-bench/scenes/gpu}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
bench() { timeout "$1" python3 bench/bench_backends.py --device cuda --frames "$frames" --out "$out" "${@:2}"; echo "[run_gpu] exit $? after: ${*:2}"; }
# the geometry stage at full size runs ~6 steps/s (bench/RESULTS.md): 300 of its 1500 steps give its speed
full=(--size full --set geometry.iterations=300 --samples 3000)
bench "${T_FULL:-120}" "${full[@]}" --views 10 --ids kept
bench "${T_SMALL:-60}" --size small --views 10 --ids kept --repeats 3 --backends neural
bench "${T_MORE:-100}" "${full[@]}" --views 15 --ids kept
bench "${T_MORE:-100}" "${full[@]}" --views 10 --ids shuffled
