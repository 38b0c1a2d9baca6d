"""config/fastdds_camera.xml: Fast DDS accepts it (a profile it cannot parse is ignored with the defaults
left in place, which would silently bring back the 512 KiB segment), and its values fit camera-rate sets."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from dprecon_ros.io.offered_qos import STREAM_DEPTH
from dprecon_ros.testing.ros_env import localhost_ros_env

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "config" / "fastdds_camera.xml"
NS = {"d": "http://www.eprosima.com"}
FASTDDS_DEFAULT_SEGMENT = 512 * 1024
CAMERA_SET_BYTES = 640 * 480 * (3 + 4 + 2)  # rgb8 + 32FC1 depth + 16UC1 mask
CAMERA_HZ = 30.0

# creates a participant and prints the sizes of the shared-memory files it added
PROBE = """
import json, os, sys, time
import rclpy
before = set(os.listdir("/dev/shm"))
rclpy.init()
node = rclpy.create_node("profile_probe")
time.sleep(0.5)
added = {f: os.path.getsize("/dev/shm/" + f) for f in set(os.listdir("/dev/shm")) - before if f.startswith("fastdds_")}
node.destroy_node()
rclpy.shutdown()
print(json.dumps(added))
"""


def shm_descriptor() -> ET.Element:
    root = ET.parse(PROFILE).getroot()
    participant = root.find("d:profiles/d:participant[@is_default_profile='true']", NS)
    transports = [t.text for t in participant.findall("d:rtps/d:userTransports/d:transport_id", NS)]
    for descriptor in root.findall("d:profiles/d:transport_descriptors/d:transport_descriptor", NS):
        if descriptor.findtext("d:type", namespaces=NS) == "SHM" and descriptor.findtext("d:transport_id", namespaces=NS) in transports:
            return descriptor
    raise AssertionError("the default participant has no SHM transport")


def added_segments(profile: Path | None) -> dict[str, int]:
    env = localhost_ros_env()
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_profile_values_fit_camera_rate_sets():
    segment = int(shm_descriptor().findtext("d:segment_size", namespaces=NS))
    assert segment >= 8 * CAMERA_SET_BYTES, "the segment must hold a burst of 640x480 sets"
    writer = ET.parse(PROFILE).getroot().find("d:profiles/d:data_writer[@is_default_profile='true']", NS)
    period = writer.find("d:times/d:heartbeat_period", NS)
    period_s = int(period.findtext("d:sec", namespaces=NS)) + int(period.findtext("d:nanosec", namespaces=NS)) * 1e-9
    assert period_s < STREAM_DEPTH / CAMERA_HZ / 2, "a lost fragment must be repaired before the writer's history drops it"


def test_fastdds_applies_the_profile():
    segment = int(shm_descriptor().findtext("d:segment_size", namespaces=NS))
    with_profile = added_segments(PROFILE)
    assert any(size >= segment for size in with_profile.values()), with_profile
    # the probe can tell: without the profile no segment is that large
    assert all(size < segment for size in added_segments(None).values())
    assert all(size < 2 * FASTDDS_DEFAULT_SEGMENT for size in added_segments(None).values())


def test_the_start_up_log_says_which_profile_and_flags_a_missing_one(tmp_path):
    from dprecon_ros.ros.qos import transport_profile

    assert transport_profile({"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)}) == (f"Fast DDS profile {PROFILE}", False)
    text, wrong = transport_profile({"FASTDDS_DEFAULT_PROFILES_FILE": str(tmp_path / "gone.xml")})
    assert wrong and "does not exist" in text
    text, wrong = transport_profile({})
    assert not wrong and "defaults" in text and "fastdds_camera.xml" in text


def test_the_profile_keeps_udp_for_other_machines():
    root = ET.parse(PROFILE).getroot()
    participant = root.find("d:profiles/d:participant[@is_default_profile='true']", NS)
    assert participant.findtext("d:rtps/d:useBuiltinTransports", namespaces=NS) == "false"  # else the SHM settings are not used
    used = {t.text for t in participant.findall("d:rtps/d:userTransports/d:transport_id", NS)}
    kinds = {
        d.findtext("d:type", namespaces=NS)
        for d in root.findall("d:profiles/d:transport_descriptors/d:transport_descriptor", NS)
        if d.findtext("d:transport_id", namespaces=NS) in used
    }
    assert kinds == {"SHM", "UDPv4"}, kinds
