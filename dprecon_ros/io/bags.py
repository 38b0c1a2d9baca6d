"""Write frames to a rosbag2 (mcap) and read any rosbag2 (mcap or sqlite3) back into the core."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos
from rosbags.rosbag2 import StoragePlugin, Writer

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.ingest.assembler import FrameAssembler
from dprecon_ros.core.types import Frame
from dprecon_ros.io.frame_messages import TYPESTORE, frame_messages, serialize
from dprecon_ros.io.offered_qos import LATCHED, STREAM

log = logging.getLogger("dprecon_ros")

GLOBAL_TOPICS = ("/tf", "/tf_static")


def absolute(topic: str) -> str:
    """A topic name as a bag stores it: relative config names resolve in the root namespace, as ros2 bag
    records a node's inputs when neither is namespaced."""
    return topic if topic.startswith("/") else f"/{topic}"


class BagWriter:
    """rosbag2 writer that adds a connection the first time a topic is written, with the QoS profiles its
    publishers offered (what `ros2 bag play` publishes with)."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(Path(path), version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, object] = {}

    def has_topic(self, topic: str) -> bool:
        return absolute(topic) in self._connections

    def write_cdr(self, topic: str, msgtype: str, stamp_ns: int, data: bytes, offered: Sequence[Qos] = (STREAM,)) -> None:
        """`offered` is recorded with the topic's first message; later values are ignored."""
        topic = absolute(topic)
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=list(offered))
        self._writer.write(self._connections[topic], stamp_ns, data)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_frames(path: str | Path, frames: Iterable[Frame], config: DpreconConfig, storage: str = "mcap") -> int:
    """Record frames as the standard input topics; returns the number of messages written."""
    n = 0
    with BagWriter(path, storage) as writer:
        for frame in frames:
            stamp_ns = int(round(frame.stamp * 1e9))
            for topic, msgtype, msg in frame_messages(frame, config.topics):
                offered = LATCHED if topic == config.topics.labels else STREAM
                writer.write_cdr(topic, msgtype, stamp_ns, serialize(msg, msgtype), (offered,))
                n += 1
    return n


def topic_handlers(config: DpreconConfig, assembler: FrameAssembler) -> dict[str, Callable[[object], None]]:
    """Topic (as configured) -> assembler input."""
    t = config.topics
    table: dict[str, Callable[[object], None]] = {
        t.rgb: assembler.add_rgb,
        t.camera_info: assembler.add_camera_info,
        t.instance: assembler.add_instance,
        "/tf": assembler.add_tf,
        "/tf_static": lambda m: assembler.add_tf(m, static=True),
    }
    if t.depth:
        table[t.depth] = assembler.add_depth
    if t.labels:
        table[t.labels] = lambda m: assembler.add_labels(m.data)
    if t.pose_source == "pose":
        table[t.pose] = assembler.add_pose
    elif t.pose_source == "odometry":
        table[t.pose] = assembler.add_odometry
    return table


def read_frames(path: str | Path, config: DpreconConfig, assembler: FrameAssembler | None = None) -> Iterator[Frame]:
    """Synchronised frames from a bag, in recording order, through the same assembler the node uses."""
    assembler = assembler or FrameAssembler(config)
    handlers = {absolute(topic): handler for topic, handler in topic_handlers(config, assembler).items()}  # as bags name them
    with AnyReader([Path(path)], default_typestore=TYPESTORE) as reader:
        connections = [c for c in reader.connections if c.topic in handlers]
        missing = sorted(set(handlers) - {c.topic for c in reader.connections} - set(GLOBAL_TOPICS))
        if missing:
            log.warning("bag %s has no messages on %s", path, ", ".join(missing))
        for connection, _, raw in reader.messages(connections=connections):
            handlers[connection.topic](reader.deserialize(raw, connection.msgtype))
            yield from assembler.pop_frames()
    yield from assembler.pop_frames(flush=True)
