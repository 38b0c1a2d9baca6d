"""The process entry point: a stop that hangs is ended by the watchdog with every thread's stack in the log, and
Ctrl-C stops a node even when it was started with SIGINT ignored (a background job of a shell)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from dprecon_ros.testing.processes import sigint_ignored
from dprecon_ros.testing.ros_env import localhost_ros_env

STOP_TIMEOUT_S = 10.0  # a node stops in under a second here

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
    import signal, sys
    from rclpy.node import Node
    import dprecon_ros.ros.runner as runner

    class Quiet(Node):
        def __init__(self):
            super().__init__("quiet")
            self.create_timer(0.05, lambda: print("spinning", flush=True))

    print("sigint ignored" if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else "sigint default", flush=True)
    runner.run_node(Quiet, sys.argv)
    """
)


def test_ctrl_c_stops_a_node_that_was_started_with_sigint_ignored():
    proc = subprocess.Popen(
        sigint_ignored([sys.executable, "-c", QUIET_NODE]),
        env=localhost_ros_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "sigint ignored"  # as a shell's `&` starts it
        assert proc.stdout.readline().strip() == "spinning"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"SIGINT did not stop the node: {proc.communicate()[1]}") from None
    finally:
        proc.kill()
    assert rc == 0, (rc, proc.stderr.read())
