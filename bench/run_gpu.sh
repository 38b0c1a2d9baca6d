#!/usr/bin/env bash
# One device call: the reconstruction benchmark on CUDA at the configured (full) sizes and at the CPU bench's
# small sizes, on the hard scene rendered beforehand on a machine with pybullet:
#   for s in "10 kept" "15 kept" "10 shuffled"; do set -- $s; dprecon-sim-bag --out .gpubench/frames/views$1_$2 \
#       --views $1 --arc-deg 120 --depth-noise 0.005 --seed 0 $([ $2 = shuffled ] && echo --shuffle-ids); done
# The GPU image has torch, scipy, scikit-image and PyYAML; trimesh and rosbags (with its needs) travel as wheels in
# .whl (see bench/RESULTS.md). Results (JSON and the log) go to $OUT, else bench/results.
#   BENCH_COMMIT=$(git rev-parse HEAD) bash bench/run_gpu.sh
set -uo pipefail
out=${OUT:-bench/results}
frames=${FRAMES:-.gpubench/frames}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
bench() { timeout "$1" python3 bench/bench_backends.py --device cuda --frames "$frames" --out "$out" "${@:2}"; echo "[run_gpu] exit $? after: ${*:2}"; }
# most important first; each step has its own time limit, so a slow one still leaves the others' results
bench "${T_FULL:-120}" --size full --views 10 --ids kept
bench "${T_SMALL:-50}" --size small --views 10 --ids kept --repeats 3 --backends neural
bench "${T_MORE:-80}" --size full --views 15 --ids kept
bench "${T_MORE:-80}" --size full --views 10 --ids shuffled
bench "${T_REPEAT:-150}" --size full --views 10 --ids kept --repeats 3 --backends neural
