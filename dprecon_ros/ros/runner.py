"""Process entry point shared by the nodes: `--help`, init, spin until Ctrl-C or shutdown, always clean up.

A node started with an invalid parameter logs one error line (params.declare_config) and exits with
STARTUP_ERROR_EXIT, without a traceback.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from dprecon_ros.ros.params import StartupParameterError
from dprecon_ros.ros.usage import usage, wants_help

STARTUP_ERROR_EXIT = 2  # as for a command-line usage error
EXECUTOR_STOP_TIMEOUT_S = 2.0  # callbacks still running when the node has stopped its work get this long
# A stop that takes this much longer than the node's own waits (`stop_budget_s`) is a bug: every thread's stack goes to stderr (the log) and the process
# leaves with status 1, rather than hang until a launch file escalates to SIGKILL with nothing to show.
SHUTDOWN_WATCHDOG_S = 20.0


def print_help_if_asked(argv: list[str], module: str) -> bool:
    """Print the usage of the node in `module` if -h/--help is among `argv`; whether it did."""
    if not wants_help(argv):
        return False
    print(usage(Path(argv[0]).name if argv else module.rsplit(".", 1)[-1], module))
    return True


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def take_over_stop_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, whatever the process inherited. A process
    started in the background by a shell (`node &`, a boot script) inherits SIGINT ignored, and Python then
    leaves it ignored: launch's Ctrl-C would not reach the node, which would be killed without stopping its
    work or flushing. rclpy's own handler would override the setting but only shuts the context down, which
    neither interrupts a sleep nor lets the node answer its clients while it stops. Call before `rclpy.init`
    with `SignalHandlerOptions.NO`, so that a signal during start-up is not lost either."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def spin_until_interrupted(executor: Executor) -> threading.Thread:
    """Spin in a worker thread while the main thread waits: Ctrl-C (KeyboardInterrupt) and SIGTERM reach the
    main thread at once, with the context still valid (rclpy's own handler would shut it down first, so a
    node could neither answer its clients nor publish while it stops). An exception from a callback,
    SystemExit included, is raised here as it would be from `executor.spin()`."""
    failure: list[BaseException] = []

    def spin() -> None:
        try:
            executor.spin()
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)

    thread = threading.Thread(target=spin, name="executor", daemon=True)
    thread.start()
    thread.join()  # interrupted by a signal's KeyboardInterrupt
    if failure:
        raise failure[0]
    return thread


def exit_quickly(work_finished: bool) -> None:
    """Called once everything is shut down. The interpreter's final garbage collection walks every object
    torch and rclpy created (most of a second here, and Ctrl-C must end a node within 2 s): freeze them
    instead. A node whose work did not finish (a thread still inside torch) must not reach the C++ static
    destructors either ('terminate called without an active exception'): it leaves at once."""
    gc.freeze()
    if not work_finished:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def run_node(make_node: Callable[[], Node], args: list[str] | None = None, make_executor: Callable[[Node], Executor] | None = None) -> None:
    """`SystemExit` from a callback ends the spin normally (the simulator exits that way when done). On
    Ctrl-C or SIGTERM a node with a `stop_work()` method is asked to finish its work (cancel, join, answer)
    before the executor stops and the context shuts down; it returns whether all of it finished."""
    argv = list(args if args is not None else sys.argv)
    if print_help_if_asked(argv, make_node.__module__):
        return
    take_over_stop_signals()
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = make_node()
    except StartupParameterError:
        rclpy.try_shutdown()
        raise SystemExit(STARTUP_ERROR_EXIT) from None
    executor = make_executor(node) if make_executor else rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_interrupted(executor)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        # a second Ctrl-C (or SIGTERM) while stopping must not interrupt the stopping with a traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        faulthandler.dump_traceback_later(SHUTDOWN_WATCHDOG_S + getattr(node, "stop_budget_s", 0.0), exit=True)
        stop_work = getattr(node, "stop_work", None)
        finished = stop_work() if stop_work is not None else True
        executor.shutdown(timeout_sec=EXECUTOR_STOP_TIMEOUT_S)
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
        exit_quickly(finished)
