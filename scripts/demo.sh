#!/usr/bin/env bash
# Set up (idempotent), then run the simulated room end to end through the ROS graph:
# dprecon_sim -> dprecon_node -> meshes + scene graph in out/demo, and a summary with F-scores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dprecon-demo --out out/demo "$@"
