#!/usr/bin/env bash
# Set up (idempotent), then run the test suite: unit tests and integration tests with real rclpy processes
# on a private localhost ROS domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
