"""Bags: replay into the node on the bag's clock, record live inputs, and reconstruct offline without ROS."""

from __future__ import annotations

import json

import pytest

from dprecon_ros.config import DpreconConfig
from dprecon_ros.io.bags import write_frames
from dprecon_ros.testing.ros_graph import RosGraph, run_tool, sim_params

pytestmark = pytest.mark.ros

LABELS = sorted(["table", "mug", "duck", "teddy", "ball", "tray", "lego", "box"])


@pytest.fixture(scope="module")
def sim_bag(sim_frames, tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "sim_mcap"
    write_frames(path, [f for f, _ in sim_frames[0]], DpreconConfig())
    return path


def check_offline_output(out):
    graph = json.loads((out / "scene_graph.json").read_text())
    objects = [o for o in graph["objects"] if o["kind"] == "object"]
    assert sorted(o["label"] for o in objects) == LABELS
    for o in objects:
        assert (out / o["mesh"]).is_file() and o["mesh"] == f"objects/{o['id']}_{o['label']}.glb"
        assert {"center", "yaw", "extent"} == set(o["box"]) and len(o["centroid"]) == 3
    assert (out / "scene.glb").stat().st_size > 0
    texts = {r["text"] for r in graph["relations"]}
    assert "mug on table" in texts and "lego inside tray" in texts


def test_offline_reconstruct_writes_meshes_and_scene_graph(sim_bag, tmp_path):
    done = run_tool("dprecon-reconstruct", "--bag", str(sim_bag), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "8 objects" in done.stdout or "objects: 8" in done.stdout, done.stdout
    check_offline_output(tmp_path / "out")


def test_offline_reconstruct_reports_a_missing_bag(tmp_path):
    from dprecon_ros.tools.reconstruct import main

    assert main(["--bag", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_replayed_bag_on_sim_time_gives_the_same_map(sim_bag, tmp_path):
    graph = RosGraph(tmp_path)
    try:
        # poses from /tf this time (tf2_msgs built at set-up), the camera frame named by the image headers
        graph.start(
            "dprecon_node",
            "-p",
            "use_sim_time:=true",
            "-p",
            "topics.image_qos:=reliable",
            "-p",
            "reconstruction.period_s:=0.0",
            "-p",
            "topics.pose_source:=tf",
        )
        replay = graph.start("dprecon_replay", "-p", f"bag:={sim_bag}", "-p", "rate:=4.0", "-p", "publish_clock:=true")
        client = graph.client()
        assert replay.wait(timeout=180) == 0, graph.logs()
        assert client.wait_for_keyframes_settled(minimum=10, settle_s=1.5, timeout_s=60) >= 10, graph.logs()
        result = client.reconstruct(timeout_s=300)
        assert result.success, result.message + graph.logs()
        assert client.spin_until(lambda: None not in (client.objects, client.graph_json, client.markers), 30)
        assert sorted(o.label for o in client.objects.objects) == LABELS
        # stamps are the bag's, not the wall clock's: the node ran on /clock
        assert abs(client.objects.header.stamp.sec - 1) < 60
        assert "mug on table" in {r["text"] for r in client.graph_json["relations"]}
        assert len(client.markers.markers) > 8
    finally:
        graph.close()


def test_recorded_live_inputs_reconstruct_offline(tmp_path):
    graph = RosGraph(tmp_path)
    try:
        recorder = graph.start("dprecon_record", "-p", f"output:={tmp_path / 'recorded'}")
        sim = graph.start("dprecon_sim", *sim_params(10))
        assert sim.wait(timeout=180) == 0, graph.logs()
        assert RosGraph.stop(recorder) == 0, graph.logs()
        done = graph.run("dprecon-reconstruct", "--bag", str(tmp_path / "recorded"), "--out", str(tmp_path / "out"), "--quiet")
        assert done.returncode == 0, done.stderr + graph.logs()
        check_offline_output(tmp_path / "out")
    finally:
        graph.close()


def test_offline_reconstruct_with_the_neural_backend(sim_bag, tmp_path):
    import yaml

    tiny = {
        "compute": {"device": "cpu"},
        "tsdf": {"object_voxel_m": 0.02},
        "geometry": {
            "iterations": 2,
            "rays_per_batch": 64,
            "object_resolution": 16,
            "background_resolution": 16,
            "feature_resolution": 8,
            "cpu_preset": False,
            "samples_coarse": 8,
            "samples_fine": 8,
            "background_patches": 1,
            "patch_size": 4,
        },
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    done = run_tool(
        "dprecon-reconstruct",
        "--bag",
        str(sim_bag),
        "--out",
        str(tmp_path / "out"),
        "--backend",
        "neural",
        "--config",
        str(tmp_path / "tiny.yaml"),
    )
    assert done.returncode == 0, done.stderr
    assert "backend neural" in done.stdout and "geometry (2/3)" in done.stderr  # summary, and the progress bar's stage
    graph = json.loads((tmp_path / "out" / "scene_graph.json").read_text())
    assert graph["backend"] == "neural" and sorted(o["label"] for o in graph["objects"] if o["kind"] == "object") == LABELS


def test_offline_reconstruct_resumes_a_saved_map(sim_bag, tmp_path):
    first = run_tool("dprecon-reconstruct", "--bag", str(sim_bag), "--out", str(tmp_path / "a"), "--quiet", "--device", "cpu")
    assert first.returncode == 0, first.stderr
    resumed = run_tool("dprecon-reconstruct", "--resume", str(tmp_path / "a" / "map"), "--out", str(tmp_path / "b"), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "map unchanged" in resumed.stdout
    a = json.loads((tmp_path / "a" / "scene_graph.json").read_text())
    b = json.loads((tmp_path / "b" / "scene_graph.json").read_text())
    assert [(o["id"], o["label"], o["num_faces"]) for o in a["objects"]] == [(o["id"], o["label"], o["num_faces"]) for o in b["objects"]]
    (tmp_path / "a" / "map" / "map.json").write_text('{"format": "dprecon_ros.map", "version": 7}')
    refused = run_tool("dprecon-reconstruct", "--resume", str(tmp_path / "a" / "map"), "--out", str(tmp_path / "c"), "--quiet")
    assert refused.returncode == 2 and "newer" in refused.stderr


def test_the_recorder_stores_resolved_names_and_the_offered_qos(tmp_path):
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability, QosReliability
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    graph = RosGraph(tmp_path)
    try:
        # a relative remap rule, as for any node: the recorder subscribes to /cam/rgb, not to the configured name
        recorder = graph.start("dprecon_record", "-p", f"output:={tmp_path / 'recorded'}", "-r", "camera/color/image_raw:=/cam/rgb")
        client = graph.client()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        rgb = client.node.create_publisher(Image, "/cam/rgb", 10)
        labels = client.node.create_publisher(String, "/camera/instance/labels", latched)
        assert client.spin_until(lambda: rgb.get_subscription_count() > 0 and labels.get_subscription_count() > 0, 60), graph.logs()
        rgb.publish(Image(encoding="rgb8", width=2, height=1, step=6, data=bytes(6)))
        labels.publish(String(data='{"1": "mug"}'))
        assert rgb.wait_for_all_acked(Duration(seconds=10)) and labels.wait_for_all_acked(Duration(seconds=10))
        assert RosGraph.stop(recorder) == 0, graph.logs()
        with Reader(tmp_path / "recorded") as reader:
            connections = {c.topic: c for c in reader.connections}
        assert "/cam/rgb" in connections and "/camera/color/image_raw" not in connections, sorted(connections)
        assert connections["/cam/rgb"].msgcount == 1 and connections["/camera/instance/labels"].msgcount == 1
        rgb_qos = connections["/cam/rgb"].ext.offered_qos_profiles
        labels_qos = connections["/camera/instance/labels"].ext.offered_qos_profiles
        assert [(q.reliability, q.durability) for q in rgb_qos] == [(QosReliability.RELIABLE, QosDurability.VOLATILE)], rgb_qos
        assert [(q.reliability, q.durability) for q in labels_qos] == [(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL)], labels_qos
    finally:
        graph.close()


def test_replay_publishes_transient_local_what_the_bag_recorded_so(sim_bag, tmp_path):
    from rclpy.qos import DurabilityPolicy

    graph = RosGraph(tmp_path)
    try:
        # nothing named latched by parameter: the bag's offered QoS alone decides
        replay = graph.start("dprecon_replay", "-p", f"bag:={sim_bag}", "-p", "latched_topics:=/none", "-p", "wait_for_subscribers_s:=60.0")
        client = graph.client()

        def durability(topic: str):
            infos = [i for i in client.node.get_publishers_info_by_topic(topic) if i.node_name == "dprecon_replay"]
            return infos[0].qos_profile.durability if infos else None

        assert client.spin_until(lambda: durability("/camera/color/image_raw") is not None, 60), graph.logs()
        assert client.spin_until(lambda: durability("/camera/instance/labels") is not None, 10), graph.logs()
        assert durability("/camera/instance/labels") == DurabilityPolicy.TRANSIENT_LOCAL
        assert durability("/camera/color/image_raw") == DurabilityPolicy.VOLATILE
        assert replay.poll() is None  # still waiting for a consumer: nothing was played
    finally:
        graph.close()


def test_replay_started_with_sigint_ignored_stops_at_ctrl_c_during_its_start_delay(sim_bag, tmp_path):
    """As a boot script's `dprecon_replay &` starts it; the start delay is a sleep that only KeyboardInterrupt
    ends early (rclpy's own handler would only shut the context down)."""
    graph = RosGraph(tmp_path)
    try:
        replay = graph.start(
            "dprecon_replay",
            "-p",
            f"bag:={sim_bag}",
            "-p",
            "wait_for_subscribers_s:=0.0",
            "-p",
            "start_delay_s:=120.0",
            ignoring_sigint=True,
        )
        client = graph.client()

        def offered() -> bool:  # publishers are made before the start delay
            return any(i.node_name == "dprecon_replay" for i in client.node.get_publishers_info_by_topic("/camera/color/image_raw"))

        assert client.spin_until(offered, 60), graph.logs()
        assert RosGraph.stop(replay, timeout=10.0) == 0, graph.logs()
    finally:
        graph.close()
