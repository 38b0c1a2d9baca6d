"""Forward the core's Python logging to the node's rclpy logger, so one log stream carries both."""

from __future__ import annotations

import logging


class RclpyLogHandler(logging.Handler):
    def __init__(self, ros_logger) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(text)
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(text)
        elif record.levelno >= logging.INFO:
            self.ros_logger.info(text)
        else:
            self.ros_logger.debug(text)


def bridge_core_logging(ros_logger) -> logging.Handler:
    core = logging.getLogger("dprecon_ros")
    handler = RclpyLogHandler(ros_logger)
    core.addHandler(handler)
    core.setLevel(logging.DEBUG)
    core.propagate = False
    return handler
