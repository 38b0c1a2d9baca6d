"""Start ROS processes with their output in a log file, and stop them as Ctrl-C would (demo and tests)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


def start_logged(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> int:
    """SIGINT (nodes shut down cleanly and flush bags), then kill after `timeout_s`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def sigint_ignored(command: list[str]) -> list[str]:
    """`command` started with SIGINT ignored, as a non-interactive shell starts a background job (`cmd &`):
    an ignored signal stays ignored across exec. (A `preexec_fn` would do the same, but is unsafe in a
    process with threads, as the test process is.)"""
    return ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
