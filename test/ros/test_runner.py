"""The process entry point: a stop that hangs is ended by the watchdog with every thread's stack in the log, and
Ctrl-C stops a node even when it was started with SIGINT ignored (a background job of a shell)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from dprecon_ros.testing.ros_env import localhost_ros_env

HANGING_NODE = textwrap.dedent(
    """
    import sys, time
    from rclpy.node import Node
    import dprecon_ros.ros.runner as runner

    runner.SHUTDOWN_WATCHDOG_S = 1.0

    class Hanging(Node):
        stop_budget_s = 0.5

        def __init__(self):
            super().__init__("hanging")
            self.create_timer(0.05, lambda: print("spinning", flush=True))

        def stop_work(self):
            time.sleep(3600)  # a stop that never ends

    runner.run_node(Hanging, sys.argv)
    """
)


def test_a_hanging_stop_is_ended_by_the_watchdog_with_the_stacks_logged():
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_NODE], env=localhost_ros_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "spinning"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        waited = time.monotonic() - t0
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert rc != 0 and 1.4 <= waited < 10, (rc, waited, stderr)
    assert "stop_work" in stderr and "Timeout" in stderr, stderr  # where it hung


QUIET_NODE = textwrap.dedent(
    """
    import sys
    from rclpy.node import Node
    import dprecon_ros.ros.runner as runner

    class Quiet(Node):
        def __init__(self):
            super().__init__("quiet")
            self.create_timer(0.05, lambda: print("spinning", flush=True))

    runner.run_node(Quiet, sys.argv)
    """
)


def ignore_sigint() -> None:
    """What a non-interactive shell does to a command it starts with `&`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_stops_a_node_that_was_started_with_sigint_ignored():
    proc = subprocess.Popen(
        [sys.executable, "-c", QUIET_NODE],
        env=localhost_ros_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_sigint,
    )
    try:
        assert proc.stdout.readline().strip() == "spinning"
        with open(f"/proc/{proc.pid}/status") as status:  # started with SIGINT ignored, spinning with it caught
            ignored = int(next(line for line in status if line.startswith("SigIgn:")).split()[1], 16)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
    finally:
        proc.kill()
    assert rc == 0, (rc, proc.stderr.read())
    assert ignored & (1 << (signal.SIGINT - 1)) == 0  # the runner took SIGINT over
