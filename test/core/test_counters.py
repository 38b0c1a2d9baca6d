"""Bad-input counters: every occurrence counted, the log line rate-limited per kind, and the README says so."""

from __future__ import annotations

import logging
from pathlib import Path

from dprecon_ros.core.counters import EventCounters

README = Path(__file__).resolve().parents[2] / "README.md"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_every_occurrence_is_counted_and_logged_at_most_once_per_interval():
    handler = Collect()
    logger = logging.getLogger("dprecon_ros")
    logger.addHandler(handler)
    try:
        counters = EventCounters(log_interval_s=3600.0)
        for _ in range(5):
            counters.count("bad_rgb", "bad image")
        counters.count("bad_depth", "bad depth")
    finally:
        logger.removeHandler(handler)
    assert counters.get("bad_rgb") == 5 and counters.snapshot() == {"bad_depth": 1, "bad_rgb": 5}
    assert [m for m in handler.messages if "bad image" in m] == ["bad image [bad_rgb, total 1]"]
    assert [m for m in handler.messages if "bad depth" in m] == ["bad depth [bad_depth, total 1]"]


def test_the_readme_says_how_often_bad_input_is_logged():
    text = README.read_text()
    section = text[text.index("## Ingestion and bad input") :]
    section = section[: section.index("\n## ", 1)]
    interval = EventCounters().log_interval_s
    assert "once per occurrence" not in section
    assert f"at most once every {interval:g} s per kind" in " ".join(section.split()), section
