"""Camera-rate ingestion through a real dprecon_node: a burst of sets at 60 Hz, each colour frame accounted for,
the keyframes the same as selection takes offline; a best-effort camera is reported, not silently unmatched."""

from __future__ import annotations

import time

import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.ingest.assembler import FrameAssembler, lost_total
from dprecon_ros.core.mapping.mapper import Mapper
from dprecon_ros.io.bags import topic_handlers
from dprecon_ros.io.frame_messages import frame_messages, serialize
from dprecon_ros.ros.raw_publishing import RawPublishers
from dprecon_ros.testing.ros_graph import RosGraph

REPEATS = 4  # sets per view: the camera pauses at each view, as a robot does, so most sets are redundant
RATE_HZ = 60.0


def counters(status) -> dict[str, int]:
    return dict(zip(status.counter_names, (int(v) for v in status.counter_values)))


def burst(views):
    """The views with REPEATS sets each, 1/60 s apart, the views 0.5 s apart."""
    frames = []
    for i, view in enumerate(views):
        for k in range(REPEATS):
            f = view.__class__(**{**view.__dict__, "stamp": 100.0 + 0.5 * i + k / RATE_HZ})
            frames.append(f)
    return frames


def offline_keyframes(frames, config: DpreconConfig) -> int:
    """Keyframes that selection takes from the same messages, one at a time, every set decoded."""
    assembler, mapper = FrameAssembler(config), Mapper(config)
    handlers = topic_handlers(config, assembler)
    for frame in frames:
        for topic, _msgtype, msg in frame_messages(frame, config.topics):
            handlers[topic](msg)
            for ready in assembler.pop_frames():
                mapper.add_frame(ready)
    for ready in assembler.pop_frames(flush=True):
        mapper.add_frame(ready)
    return len(mapper.keyframes)


def test_a_burst_at_60_hz_is_accounted_for_and_selects_the_offline_keyframes(small_frames, tmp_path):
    frames = burst(small_frames[0])
    config = DpreconConfig()
    expected = offline_keyframes(frames, config)
    graph = RosGraph(tmp_path)
    try:
        graph.start("dprecon_node", "-p", "reconstruction.period_s:=0.0")
        client = graph.client()
        pubs = RawPublishers(client.node)
        messages = [(topic, msgtype, serialize(msg, msgtype)) for f in frames for topic, msgtype, msg in frame_messages(f, config.topics)]
        for topic, msgtype, _ in messages:
            pubs.prepare(topic, msgtype)
        assert not pubs.wait_for_subscribers(pubs.essential_topics(), 30.0), graph.logs()
        per_set = len(messages) // len(frames)
        start = time.monotonic()
        for n in range(len(frames)):
            for topic, msgtype, data in messages[n * per_set : (n + 1) * per_set]:
                pubs.publish(topic, msgtype, data)
            time.sleep(max(0.0, start + (n + 1) / RATE_HZ - time.monotonic()))
        assert pubs.wait_for_acks(30.0)

        def settled() -> bool:
            s = client.status
            return s is not None and counters(s).get("received_rgb", 0) == len(frames) and s.frames_waiting == 0

        assert client.spin_until(settled, 60), (counters(client.status), graph.logs())
        c = counters(client.status)
        assert lost_total(c) == 0, c
        assert c["received_rgb"] == c["considered"] + c["redundant"] + lost_total(c), c
        assert c["redundant"] >= len(frames) // 2, c  # the repeated sets were never decoded
        assert not any(k.startswith("missed_") for k in c), c  # every message arrived: no gap invented
        assert c["accepted"] == client.status.keyframes == expected, (c, expected)
    finally:
        graph.close()


def test_images_lost_before_the_node_are_counted_missed(tmp_path):
    """The node is stopped (SIGSTOP) while a camera with a one-deep reliable history sends a burst of full-size
    images: the writer overwrites what the node never acknowledged, and shared memory recycles what it never
    read. Whatever got through, every image sent is then either received or counted missed."""
    import signal

    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    burst = 60
    graph = RosGraph(tmp_path)
    try:
        node = graph.start("dprecon_node", "-p", "reconstruction.period_s:=0.0")
        client = graph.client()
        pub = client.node.create_publisher(
            Image, "/camera/color/image_raw", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        )

        def image(n: int) -> Image:
            msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=bytes(640 * 480 * 3))
            msg.header.stamp.sec, msg.header.frame_id = 100 + n, "camera"
            return msg

        got = lambda name: counters(client.status).get(name, 0) if client.status is not None else 0  # noqa: E731
        assert client.spin_until(lambda: pub.get_subscription_count() >= 1 and client.status is not None, 30), graph.logs()
        pub.publish(image(0))
        assert client.spin_until(lambda: got("received_rgb") == 1, 15), graph.logs()
        node.send_signal(signal.SIGSTOP)
        try:
            for n in range(1, burst + 1):
                pub.publish(image(n))
        finally:
            node.send_signal(signal.SIGCONT)
        # the newest image always arrives (reliable): wait for it, then everything is accounted for
        assert client.spin_until(lambda: got("received_rgb") + got("missed_rgb") == burst + 1, 30), counters(client.status)
        assert got("missed_rgb") > 0, counters(client.status)
    finally:
        graph.close()


def test_inputs_hand_over_each_message_with_its_publisher_and_sequence_number(tmp_path):
    """What the inbox counts missed messages from: without it a loss before the node leaves no trace."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    from dprecon_ros.ros.input_node import InputSubscriptions
    from dprecon_ros.ros.qos import image_qos

    graph = RosGraph(tmp_path)
    try:
        client = graph.client()
        got: list[tuple[str, bytes | None, int | None]] = []
        inputs = InputSubscriptions(
            client.node,
            {"rgb": (Image, "probe/image", image_qos("reliable"))},
            lambda stream, msg, source: got.append((stream, *source)),
            lambda stream, topic: SubscriptionEventCallbacks(),
            lambda exc: pytest.fail(f"an input callback failed: {exc!r}"),
        )
        pub = client.node.create_publisher(Image, "probe/image", image_qos("reliable"))
        try:
            assert client.spin_until(lambda: pub.get_subscription_count() == 1, 10)
            for _ in range(5):
                pub.publish(Image())
            assert client.spin_until(lambda: len(got) == 5, 10), got
            publishers = {publisher for _, publisher, _ in got}
            assert len(publishers) == 1 and isinstance(next(iter(publishers)), bytes), got
            assert [seq for *_, seq in got] == [1, 2, 3, 4, 5]
        finally:
            assert inputs.stop(5.0)
            inputs.destroy()
    finally:
        graph.close()


def test_a_failing_input_callback_is_reported_and_the_inputs_go_on(tmp_path):
    """One bad callback must not end the input thread: the node would look alive and take in nothing."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    from dprecon_ros.ros.input_node import InputSubscriptions
    from dprecon_ros.ros.qos import image_qos

    graph = RosGraph(tmp_path)
    try:
        client = graph.client()
        got, errors, topics = [], [], []

        def receive(stream, msg, source):
            if source[1] in (1, 3):
                raise ValueError(f"message {source[1]}")
            got.append(source[1])

        def events(stream, topic):
            topics.append((stream, topic))
            return SubscriptionEventCallbacks()

        inputs = InputSubscriptions(client.node, {"rgb": (Image, "probe/image", image_qos("reliable"))}, receive, events, errors.append)
        pub = client.node.create_publisher(Image, "probe/image", image_qos("reliable"))
        try:
            assert topics == [("rgb", "/probe/image")]  # resolved before any subscription exists
            assert client.spin_until(lambda: pub.get_subscription_count() == 1, 10)
            for _ in range(5):
                pub.publish(Image())
            assert client.spin_until(lambda: len(got) == 3, 10), (got, errors)
            assert got == [2, 4, 5] and [str(e) for e in errors] == ["message 1", "message 3"]
        finally:
            assert inputs.stop(5.0)
            inputs.destroy()
    finally:
        graph.close()


def test_an_input_thread_failing_at_every_wake_slows_down_and_still_stops(tmp_path):
    from rclpy.event_handler import SubscriptionEventCallbacks

    from dprecon_ros.ros import input_node
    from dprecon_ros.ros.input_node import InputSubscriptions
    from dprecon_ros.ros.qos import image_qos

    class BrokenExecutor:
        def spin_once(self, timeout_sec):
            raise RuntimeError("broken")

        def wake(self):
            pass

    graph = RosGraph(tmp_path)
    try:
        client = graph.client()
        errors: list[float] = []
        table = {"rgb": (Image, "probe/broken", image_qos("reliable"))}
        inputs = InputSubscriptions(
            client.node, table, lambda *a: None, lambda s, t: SubscriptionEventCallbacks(), lambda e: errors.append(0)
        )
        real = inputs._executor
        inputs._executor = BrokenExecutor()  # from the thread's next wake on
        try:
            burst = input_node.FAILURE_BURST
            assert client.spin_until(lambda: len(errors) >= burst + 3, 10)
            t0, before = time.monotonic(), len(errors)
            assert client.spin_until(lambda: len(errors) >= before + 3, 10)
            assert time.monotonic() - t0 >= 2 * input_node.SPIN_TIMEOUT_S  # paused after each failure past the burst
        finally:
            assert inputs.stop(1.0)  # a pause ends as soon as the thread is told to stop
            inputs._executor = real
            inputs.destroy()
    finally:
        graph.close()


def test_a_transport_event_during_start_up_is_counted_with_its_topic():
    """The events can fire while the node is still making its subscriptions, before it holds them."""
    from types import SimpleNamespace

    from dprecon_ros.core.counters import EventCounters
    from dprecon_ros.ros.node import DpreconNode

    half_made = SimpleNamespace(counters=EventCounters())  # nothing the node sets after its subscriptions
    events = DpreconNode._transport_events(half_made, "rgb", "/camera/color/image_raw")
    events.incompatible_qos(SimpleNamespace(last_policy_kind="RELIABILITY"))
    events.message_lost(SimpleNamespace(total_count_change=3))
    assert half_made.counters.get("incompatible_qos_rgb") == 1 and half_made.counters.get("transport_lost_rgb") == 3


def test_a_best_effort_camera_is_reported_not_silently_unmatched(tmp_path):
    graph = RosGraph(tmp_path)
    try:
        graph.start("dprecon_node", "-p", "reconstruction.period_s:=0.0")
        client = graph.client()
        client.node.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data)
        assert client.spin_until(lambda: client.status is not None and counters(client.status).get("incompatible_qos_rgb", 0) >= 1, 30), (
            graph.logs()
        )
        assert client.spin_until(lambda: "topics.image_qos:=sensor_data" in graph.logs(), 15), graph.logs()  # the advice
    finally:
        graph.close()
