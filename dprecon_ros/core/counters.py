"""Named event counters with a rate-limited log line per kind (bad input must be visible, never fatal)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

log = logging.getLogger("dprecon_ros")


class EventCounters:
    def __init__(self, log_interval_s: float = 5.0) -> None:
        self._counts: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()
        self.log_interval_s = log_interval_s

    def count(self, name: str, message: str = "", level: int = logging.WARNING, amount: int = 1) -> None:
        """Add `amount` to `name`; log `message` at most once per interval per name."""
        now = time.monotonic()
        with self._lock:
            self._counts[name] += amount
            n = self._counts[name]
            due = now - self._last_log.get(name, -1e9) >= self.log_interval_s
            if due:
                self._last_log[name] = now
        if message and due:
            log.log(level, "%s [%s, total %d]", message, name, n)

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))
