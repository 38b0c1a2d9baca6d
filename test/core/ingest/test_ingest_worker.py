"""The path from transport callbacks to keyframe selection: inbox, worker, decoding only what selection wants,
and the accounting that says where every colour frame went."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import make_frame

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.geometry import make_transform
from dprecon_ros.core.ingest import assembler as assembler_module
from dprecon_ros.core.ingest.assembler import FrameAssembler, lost_total
from dprecon_ros.core.ingest.inbox import Inbox
from dprecon_ros.core.ingest.worker import IngestWorker
from dprecon_ros.io.frame_messages import frame_messages


def streams(config: DpreconConfig) -> dict[str, str]:
    t = config.topics
    return {t.rgb: "rgb", t.depth: "depth", t.instance: "instance", t.camera_info: "camera_info", t.labels: "labels", t.pose: "pose"}


HANDLERS = {
    "rgb": FrameAssembler.add_rgb,
    "depth": FrameAssembler.add_depth,
    "instance": FrameAssembler.add_instance,
    "camera_info": FrameAssembler.add_camera_info,
    "labels": lambda a, m: a.add_labels(m.data),
    "pose": FrameAssembler.add_pose,
}


def messages(frames, config):
    """(stream, msg, image stamp) in publishing order, as the node's callbacks hand them over."""
    keys = streams(config)
    for frame in frames:
        for topic, _msgtype, msg in frame_messages(frame, config.topics):
            if topic not in keys:  # /tf: the pose topic carries the same pose
                continue
            stream = keys[topic]
            yield stream, msg, frame.stamp if stream in ("rgb", "depth", "instance") else 0.0


def image(stamp: float) -> SimpleNamespace:
    return SimpleNamespace(data=bytes(100), header=SimpleNamespace(stamp=SimpleNamespace(sec=int(stamp), nanosec=0)))


def test_the_inbox_keeps_arrival_order_and_drops_the_oldest_images_beyond_its_span():
    counters = EventCounters()
    inbox = Inbox(span_s=1.0, counters=counters)
    inbox.put("labels", "L", 0.0)
    for t in range(4):  # images at 0, 1, 2, 3 s: a span of 1 s keeps the last two
        inbox.put("rgb", image(t), float(t))
        inbox.put("pose", f"P{t}", 0.0)
    inbox.put("depth", image(3), 3.0)
    got = []
    while (d := inbox.get(0.01)) is not None:
        got.append((d.stream, d.stamp))
        inbox.done(d)
    assert got == [("labels", 0.0), ("pose", 0.0), ("pose", 0.0), ("rgb", 2.0), ("pose", 0.0), ("rgb", 3.0), ("pose", 0.0), ("depth", 3.0)]
    assert counters.get("lost_backlog") == 2 and counters.get("received_rgb") == 4 and counters.get("received_pose") == 4
    assert inbox.nbytes == 0 and inbox.waiting_frames == 0


def test_after_a_clear_the_same_stamps_again_are_not_backlog():
    """A bag replayed after ~/reset goes back in camera time by less than the restart threshold: the inbox
    must take it as a new stream, not as images seconds behind the newest it saw before."""
    counters = EventCounters()
    inbox = Inbox(span_s=1.0, counters=counters, jump_s=30.0)
    for t in range(10):
        inbox.put("rgb", image(t), float(t))
        inbox.done(inbox.get(0.01))
    inbox.clear("reset")
    for t in range(10):
        inbox.put("rgb", image(t), float(t))
        inbox.done(inbox.get(0.01))
    assert counters.get("lost_backlog") == 0 and counters.get("received_rgb") == 20


def test_clearing_the_inbox_counts_each_waiting_colour_image_once():
    counters = EventCounters()
    inbox = Inbox(span_s=10.0, counters=counters)
    for t in range(3):
        inbox.put("rgb", image(t), float(t))
        inbox.put("depth", image(t), float(t))
    assert inbox.waiting_frames == 3 and inbox.nbytes == 600
    inbox.clear("reset")
    assert counters.get("lost_reset") == 3 and inbox.get(0.01) is None and inbox.nbytes == 0


def moving(i: int, step: float) -> np.ndarray:
    return make_transform(np.eye(3), [i * step, 0.0, 0.0])


def test_a_set_close_to_a_keyframe_is_never_decoded(monkeypatch):
    config = DpreconConfig()
    decoded = []
    for stream, decode in list(assembler_module._DECODERS.items()):
        monkeypatch.setitem(assembler_module._DECODERS, stream, lambda m, s=stream, d=decode: decoded.append(s) or d(m))
    a = FrameAssembler(config)
    kept = []
    a.wanted = lambda T: not any(np.allclose(T, k) for k in kept)
    frames = [make_frame(stamp=10 + i, T=moving(i // 3, 0.5)) for i in range(6)]  # three sets per pose
    for stream, msg, _ in messages(frames, config):
        HANDLERS[stream](a, msg)
        for frame in a.pop_frames():
            kept.append(frame.T_world_camera)
    out = a.pop_frames(flush=True)
    assert len(kept) + len(out) == 2 and a.counters.get("redundant") == 4
    assert decoded.count("rgb") == 2 and decoded.count("depth") == 2 and decoded.count("instance") == 2


def wait_resolved(worker: IngestWorker, timeout_s: float) -> None:
    """Until no colour frame is waiting anywhere on the worker's path (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while worker.waiting_frames and time.monotonic() < deadline:
        time.sleep(0.02)


class SlowSelection:
    """Keyframe selection that takes `delay_s` a frame: slower than the camera, as on a loaded robot."""

    def __init__(self, mapper, delay_s: float) -> None:
        self.mapper, self.delay_s = mapper, delay_s

    def __call__(self, frame):
        time.sleep(self.delay_s)
        return self.mapper.add_frame(frame)


@pytest.fixture
def walk():
    """40 sets at 30 Hz along a line: a keyframe every 0.12 m means most sets are redundant."""
    return [make_frame(stamp=100 + i / 30, T=moving(i, 0.02), seed=i) for i in range(40)]


def run_worker(config, frames, delay_s: float, start_after_burst: bool = False):
    from dprecon_ros.core.mapping.mapper import Mapper

    counters = EventCounters()
    assembler = FrameAssembler(config, counters)
    mapper = Mapper(config, counters)
    assembler.wanted = mapper.keyframes.is_novel_pose
    inbox = Inbox(config.sync.inbox_s, counters)
    worker = IngestWorker(inbox, lambda: assembler, HANDLERS, SlowSelection(mapper, delay_s), threading.Lock(), counters)
    if not start_after_burst:
        worker.start()
    for stream, msg, stamp in messages(frames, config):  # the whole burst at once, as fast as callbacks run
        inbox.put(stream, msg, stamp)
    if start_after_burst:  # a worker stalled for the whole burst: what the inbox drops is then known
        worker.start()
    deadline = time.monotonic() + 30
    while (worker.waiting_frames or len(inbox)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.stop(5.0)
    return mapper, counters.snapshot(), worker


def test_a_burst_faster_than_selection_loses_nothing_selection_needed(walk):
    config = DpreconConfig()
    config.keyframes.blur_threshold = 0.0
    mapper, counts, worker = run_worker(config, walk, delay_s=0.05)

    # the same frames straight through the assembler and selection, one at a time, nothing skipped
    from dprecon_ros.core.mapping.mapper import Mapper

    reference = Mapper(config)
    direct = FrameAssembler(config)
    for stream, msg, _ in messages(walk, config):
        HANDLERS[stream](direct, msg)
        for frame in direct.pop_frames():
            reference.add_frame(frame)
    expected = [kf.frame.stamp for kf in reference.keyframes.snapshot()]
    assert len(expected) >= 5
    assert [kf.frame.stamp for kf in mapper.keyframes.snapshot()] == expected
    assert lost_total(counts) == 0 and counts["accepted"] == len(expected)
    assert counts["received_rgb"] == 40 and counts["redundant"] > 20  # most sets were never decoded
    # every colour frame is accounted for
    assert counts["received_rgb"] == counts["considered"] + counts.get("redundant", 0) + lost_total(counts)
    assert worker.waiting_frames == 0


def test_counters_add_up_when_sets_are_lost_for_different_reasons(walk):
    config = DpreconConfig()
    config.keyframes.blur_threshold = 0.0
    config.sync.inbox_s = 0.45  # under 14 sets of camera time, and the worker is stalled for the whole burst of 40
    frames = list(walk)
    frames[26].depth_m = np.full_like(frames[26].depth_m, np.nan)  # the first set the inbox keeps: invalid depth
    mapper, counts, _ = run_worker(config, frames, delay_s=0.0, start_after_burst=True)
    assert counts["lost_backlog"] == 26 and counts["lost_invalid_depth"] == 1, counts
    assert counts["accepted"] == len(mapper.keyframes) == 3  # sets 27, 33 and 39: 0.12 m apart
    assert counts["received_rgb"] == 40
    assert counts["received_rgb"] == counts["considered"] + counts["redundant"] + lost_total(counts), counts


def test_a_stream_that_stops_leaves_no_frame_waiting(walk):
    """The last set's mask never comes and nothing newer arrives to show it hopeless: the quiet resolves it."""
    config = DpreconConfig()
    config.keyframes.blur_threshold = 0.0
    from dprecon_ros.core.mapping.mapper import Mapper

    counters = EventCounters()
    assembler, mapper = FrameAssembler(config, counters), Mapper(config, counters)
    inbox = Inbox(config.sync.inbox_s, counters)
    worker = IngestWorker(inbox, lambda: assembler, HANDLERS, mapper.add_frame, threading.Lock(), counters, idle_flush_s=lambda: 0.3)
    worker.start()
    try:
        for stream, msg, stamp in messages(walk[:3], config):
            if not (stream == "instance" and stamp == walk[2].stamp):
                inbox.put(stream, msg, stamp)
        wait_resolved(worker, 10)
        c = counters.snapshot()
        assert worker.waiting_frames == 0 and c["lost_unmatched_instance"] == 1, c
        assert c["received_rgb"] == c["considered"] + c.get("redundant", 0) + lost_total(c) == 3, c
    finally:
        assert worker.stop(5.0)


def test_a_camera_faster_than_decoding_loses_nothing_because_redundant_sets_are_not_decoded(walk, monkeypatch):
    """Decoding a set takes 90 ms, the camera sends one every 33 ms and the inbox holds 0.4 s: only skipping the
    redundant sets before decoding keeps up."""
    config = DpreconConfig()
    config.keyframes.blur_threshold = 0.0
    config.sync.inbox_s = 0.4
    for stream, decode in list(assembler_module._DECODERS.items()):
        monkeypatch.setitem(assembler_module._DECODERS, stream, lambda m, d=decode: time.sleep(0.03) or d(m))
    from dprecon_ros.core.mapping.mapper import Mapper

    counters = EventCounters()
    assembler, mapper = FrameAssembler(config, counters), Mapper(config, counters)
    assembler.wanted = mapper.keyframes.is_novel_pose
    inbox = Inbox(config.sync.inbox_s, counters)
    worker = IngestWorker(inbox, lambda: assembler, HANDLERS, mapper.add_frame, threading.Lock(), counters)
    worker.start()
    try:
        start, by_frame = time.monotonic(), {}
        for stream, msg, stamp in messages(walk, config):
            by_frame.setdefault(stamp, []).append((stream, msg, stamp))
        for n, stamp in enumerate(sorted(by_frame)):  # one set every 1/30 s of wall time, as a camera sends them
            time.sleep(max(0.0, start + n / 30 - time.monotonic()))
            for stream, msg, image_stamp in by_frame.get(stamp, []):
                inbox.put(stream, msg, image_stamp)
        wait_resolved(worker, 20)
    finally:
        assert worker.stop(5.0)
    c = counters.snapshot()
    assert lost_total(c) == 0 and c["accepted"] == len(mapper.keyframes) >= 5, c


def test_a_reset_counts_the_frames_it_discards():
    config = DpreconConfig()
    a = FrameAssembler(config)
    frames = [make_frame(stamp=10 + i / 30, T=moving(i, 0.02)) for i in range(3)]
    for stream, msg, _ in messages(frames, config):
        if stream != "pose":  # no pose yet: the sets wait
            HANDLERS[stream](a, msg)
    a.pop_frames()
    assert a.waiting_frames == 3
    a.reset()
    assert a.counters.get("lost_reset") == 3 and a.waiting_frames == 0


def test_one_image_with_a_stamp_from_another_clock_does_not_empty_the_inbox():
    counters = EventCounters()
    inbox = Inbox(span_s=1.0, counters=counters)
    for t in range(10):
        inbox.put("rgb", image(100 + t / 10), 100 + t / 10)
    inbox.put("instance", image(90), 90.0)  # a segmenter 10 s behind (the assembler counts it late)
    inbox.put("instance", image(0), 0.0)  # or on another clock altogether
    assert counters.get("lost_backlog") == 0 and inbox.waiting_frames == 10


def test_small_messages_are_bounded_too():
    counters = EventCounters()
    inbox = Inbox(span_s=1.0, counters=counters, max_messages=100)
    for i in range(1000):
        inbox.put("pose", f"P{i}", 0.0)
    assert len(inbox) == 100 and counters.get("dropped_backlog_pose") == 900
    assert inbox.get(0.01).msg == "P900"  # the newest were kept


def test_a_frame_whose_set_fails_or_whose_selection_fails_is_still_accounted_for(walk, monkeypatch):
    config = DpreconConfig()
    config.keyframes.blur_threshold = 0.0
    from dprecon_ros.core.mapping.mapper import Mapper

    calls = {"decode": 0}
    decode = assembler_module._DECODERS["rgb"]

    def failing(msg):
        calls["decode"] += 1
        if calls["decode"] == 2:
            raise MemoryError("no memory for this one")
        return decode(msg)

    monkeypatch.setitem(assembler_module._DECODERS, "rgb", failing)
    counters = EventCounters()
    assembler, mapper = FrameAssembler(config, counters), Mapper(config, counters)
    assembler.wanted = mapper.keyframes.is_novel_pose

    def selection(frame):
        if frame.stamp == walk[12].stamp:
            raise RuntimeError("association failed")
        return mapper.add_frame(frame)

    inbox = Inbox(config.sync.inbox_s, counters)
    worker = IngestWorker(inbox, lambda: assembler, HANDLERS, selection, threading.Lock(), counters, idle_flush_s=lambda: 0.2)
    worker.start()
    try:
        for stream, msg, stamp in messages(walk, config):
            inbox.put(stream, msg, stamp)
        wait_resolved(worker, 20)
    finally:
        assert worker.stop(5.0)
    c = counters.snapshot()
    assert c["lost_set_error"] == 1 and c.get("selection_error", 0) <= 1, c
    assert c["received_rgb"] == c["considered"] + c["redundant"] + lost_total(c) == 40, c


def test_a_colour_image_the_worker_holds_is_still_waiting():
    counters = EventCounters()
    inbox = Inbox(span_s=1.0, counters=counters)
    inbox.put("rgb", image(1), 1.0)
    delivery = inbox.get(0.01)
    assert inbox.waiting_frames == 1  # taken, not yet through the assembler
    inbox.done(delivery)
    assert inbox.waiting_frames == 0
