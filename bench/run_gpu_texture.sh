#!/usr/bin/env bash
# One device call for the texture stage (issue: textured meshes): the torch rasteriser against nvdiffrast (the
# agreement test; it compiles nvdiffrast's plugin on first use) and the RGB SDS loop without a host sync, then
# bench/bench_texture.py on CUDA on the 20-view hard scene: bake + fill (tsdf meshes), and with a random-weight
# SD 2.1-base checkpoint one RGB SDS step timed in parts (bench/bench_prior_gpu.py), then the full preset with
# RGB SDS on the unseen texels (the prior stage cut to a few steps: only the texture stage's time counts here).
# Prepare with scripts/prepare_device.sh, then run with carry [".whl", "bench/scenes/gpu/views20_kept"]:
#   BENCH_COMMIT=$(git rev-parse HEAD) bash bench/run_gpu_texture.sh
# AGREE=0 skips those two tests, BAKE=0 the bake + fill run, BAKE_ONLY=1 the run with the prior.
set -uo pipefail
out=${OUT:-bench/results}
frames=${FRAMES:-bench/scenes/gpu/views20_kept}
mkdir -p "$out"
. "$(dirname "$0")/device_wheels.sh"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
t0=$(date +%s)
if [ "${AGREE:-1}" = 1 ]; then
  timeout "${T_AGREE:-240}" python3 -m pytest -q -s -p no:cacheprovider test/core/texture/test_rasteriser.py \
      test/core/texture/test_texture_prior.py -k "nvdiffrast or host_wait" -rs 2>&1 | tail -40
  echo "[run_gpu_texture] exit ${PIPESTATUS[0]} after: rasteriser agreement, SDS loop without host syncs ($(( $(date +%s) - t0 )) s, plugin build included)"
else
  echo "[run_gpu_texture] skipped (AGREE=0): rasteriser agreement, SDS loop without host syncs"
fi
if [ "${BAKE:-1}" = 1 ]; then
  timeout "${T_BAKE:-120}" python3 bench/bench_texture.py --frames "$frames" --device cuda --out "$out"
  echo "[run_gpu_texture] exit $? after: bench_texture (tsdf meshes, bake + fill)"
else
  echo "[run_gpu_texture] skipped (BAKE=0): bench_texture (tsdf meshes, bake + fill)"
fi
[ "${BAKE_ONLY:-0}" = 1 ] && exit 0
timeout 120 python3 bench/build_random_checkpoint.py /tmp/sd21_random --device cuda | tail -2
echo "[run_gpu_texture] exit ${PIPESTATUS[0]} after: build_random_checkpoint"
# one RGB SDS step in parts (VAE encoder, UNet; with and without the host waiting each step), before the stage
timeout -k 20 "${T_STEP:-90}" python3 bench/bench_prior_gpu.py --checkpoint /tmp/sd21_random --skip-stage --out "$out" | tail -16
echo "[run_gpu_texture] exit ${PIPESTATUS[0]} after: bench_prior_gpu (SDS steps, geometry and texture)"
# at the limit the run's threads' stacks are printed (SIGUSR1), then it is killed
timeout -s USR1 -k 20 "${T_SDS:-240}" python3 bench/bench_texture.py --log-level "${LOG_LEVEL:-INFO}" --frames "$frames" --device cuda --backend full --prior-model /tmp/sd21_random \
    --no-baseline --set prior.iterations=10 --set geometry.iterations=50 --set geometry.progress_every=10 ${SDS_STEPS:+--set texture.sds_iterations=$SDS_STEPS} --out "$out"
echo "[run_gpu_texture] exit $? after: bench_texture (full preset, RGB SDS with random weights)"
