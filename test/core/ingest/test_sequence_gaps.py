"""Messages sent and never received are counted from the gaps in each publisher's sequence numbers."""

from __future__ import annotations

from types import SimpleNamespace

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.ingest.inbox import Inbox
from dprecon_ros.core.ingest.sequence_gaps import SequenceGaps


def test_a_jump_in_one_publishers_numbers_is_what_went_missing():
    gaps = SequenceGaps()
    assert gaps.missed("rgb", b"cam", 7) == 0  # first seen: what came before is not ours to count
    assert gaps.missed("rgb", b"cam", 8) == 0
    assert gaps.missed("rgb", b"cam", 12) == 3
    assert gaps.missed("depth", b"cam", 20) == 0  # streams and publishers are counted apart
    assert gaps.missed("rgb", b"other", 1) == 0
    assert gaps.missed("rgb", b"other", 3) == 1
    assert gaps.missed("rgb", b"cam", 13) == 0


def test_a_restarted_writer_or_no_numbers_count_nothing():
    gaps = SequenceGaps()
    assert gaps.missed("rgb", b"cam", 50) == 0
    assert gaps.missed("rgb", b"cam", 1) == 0  # numbering started again
    assert gaps.missed("rgb", b"cam", 2) == 0
    assert gaps.missed("rgb", None, 9) == 0 and gaps.missed("rgb", b"cam", None) == 0 and gaps.missed("rgb", b"cam", 0) == 0
    assert gaps.missed("rgb", b"cam", 3) == 0  # the messages without numbers did not move the baseline


def test_publishers_that_come_and_go_are_remembered_within_a_bound():
    gaps = SequenceGaps(max_publishers=4)
    for i in range(100):
        gaps.missed("rgb", i, 1)
    assert len(gaps._last) == 4
    assert gaps.missed("rgb", 99, 5) == 3  # the most recent are the ones kept


def test_the_inbox_counts_missed_messages_per_stream_beside_what_it_received():
    counters = EventCounters()
    inbox = Inbox(span_s=10.0, counters=counters)
    image = SimpleNamespace(data=bytes(10))
    for seq in (1, 2, 5, 6, 10):
        inbox.put("rgb", image, float(seq), b"camera", seq)
    for seq in (1, 3):
        inbox.put("pose", "P", 0.0, b"odometry", seq)
    inbox.put("rgb", image, 11.0)  # no numbers: received, nothing inferred
    c = counters.snapshot()
    assert c["received_rgb"] == 6 and c["missed_rgb"] == 2 + 3
    assert c["received_pose"] == 2 and c["missed_pose"] == 1
    assert "lost_missed_rgb" not in c and not any(k.startswith("lost_") for k in c)  # the received-frame identity stays
