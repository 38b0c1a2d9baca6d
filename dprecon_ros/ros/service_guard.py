"""Requests never end the node: an exception in a service handler becomes an answer (success=false and
what went wrong) and a counted event, instead of propagating out of the executor's spin and killing the
process. Every handler of dprecon_node goes through `guarded`."""

from __future__ import annotations

import traceback
from collections.abc import Callable

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from dprecon_ros.core.counters import EventCounters

# Requests are kept until taken, not dropped at a queue depth: a burst of calls (or goals) while handlers
# are busy would otherwise lose requests, leaving clients waiting for answers that never come.
REQUESTS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
MESSAGE_CHARS = 300  # of an exception's text in an answer: a path 2000 levels deep would fill a screen


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2]} ... {text[-limit // 2 :]}"


def describe(exc: BaseException) -> str:
    return shorten(f"{type(exc).__name__}: {exc}")


def guarded(name: str, handler: Callable, counters: EventCounters, logger) -> Callable:
    """`handler(request, response)`, answering `success=False` with the exception's type and text (counted
    as `service_error`, traceback at debug level) if it raises."""

    def call(request, response):
        try:
            return handler(request, response)
        except Exception as exc:  # any request, however malformed, gets an answer
            answer = type(response)()
            answer.success, answer.message = False, f"{name} failed: {describe(exc)}"
            counters.count("service_error", answer.message)
            logger.debug(traceback.format_exc())
            return answer

    return call
