"""Bags carry the QoS their topics were offered with, as `ros2 bag record` writes it, so `ros2 bag play` (and
dprecon_replay) publish labels and /tf_static transient-local again; topic names are absolute."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from conftest import make_frame
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader

from dprecon_ros.config import DpreconConfig
from dprecon_ros.io.bags import write_frames

LATCHED = {"/camera/instance/labels"}


def written_bag(tmp_path, storage: str):
    path = tmp_path / "bag"
    frames = [make_frame(stamp=1.0 + i, seed=i) for i in range(2)]
    assert write_frames(path, frames, DpreconConfig(), storage) > 0
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_bags_record_the_offered_qos_of_every_topic(tmp_path, storage):
    with Reader(written_bag(tmp_path, storage)) as reader:
        offered = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert "/camera/color/image_raw" in offered and "/camera/instance/labels" in offered and "/tf" in offered
    for topic, profiles in offered.items():
        assert topic.startswith("/"), f"bag topic {topic} is not absolute"
        assert len(profiles) == 1, f"{topic}: offered_qos_profiles {profiles!r}"
        qos = profiles[0]
        assert qos.reliability == QosReliability.RELIABLE and qos.depth > 0, (topic, qos)
        expected = QosDurability.TRANSIENT_LOCAL if topic in LATCHED else QosDurability.VOLATILE
        assert qos.durability == expected, (topic, qos)


def test_the_stored_qos_string_is_the_yaml_ros2_bag_writes(tmp_path):
    bag = written_bag(tmp_path, "sqlite3")
    db = next(bag.glob("*.db3"))
    with sqlite3.connect(db) as con:
        rows = dict(con.execute("SELECT name, offered_qos_profiles FROM topics"))
    labels = yaml.safe_load(rows["/camera/instance/labels"])
    assert isinstance(labels, list) and len(labels) == 1
    profile = labels[0]
    assert profile["durability"] == "transient_local" and profile["reliability"] == "reliable" and profile["history"] == "keep_last"
    assert {"deadline", "lifespan", "liveliness", "liveliness_lease_duration", "avoid_ros_namespace_conventions"} <= set(profile)
    assert yaml.safe_load(rows["/camera/color/image_raw"])[0]["durability"] == "volatile"
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    by_topic = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"] for t in metadata["topics_with_message_count"]}
    assert by_topic["/camera/instance/labels"] and by_topic["/camera/color/image_raw"]
