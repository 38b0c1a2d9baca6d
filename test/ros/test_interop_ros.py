"""What another ROS 2 node meets: labels from volatile and transient-local publishers, relative input names
under a namespace, start-up parameter errors, and `--help`."""

from __future__ import annotations

import re
import subprocess

import pytest

from dprecon_ros.testing.ros_graph import RosGraph, run_tool

pytestmark = pytest.mark.ros

START_TIMEOUT_S = 60
NODE_EXECUTABLES = ("dprecon_node", "dprecon_sim", "dprecon_record", "dprecon_replay")


def counters(status) -> dict[str, int]:
    return dict(zip(status.counter_names, status.counter_values))


@pytest.fixture(scope="module")
def running_node(tmp_path_factory):
    graph = RosGraph(tmp_path_factory.mktemp("interop"))
    node = graph.start("dprecon_node", "-p", "reconstruction.period_s:=0.0")
    client = graph.client()
    try:
        assert client.spin_until(lambda: client.status is not None, START_TIMEOUT_S), graph.logs()
        yield graph, client, node
    finally:
        graph.close()


def labels_qos(kind: str):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    if kind == "default":
        return 10  # what a typical segmentation node passes: reliable, volatile, keep last 10
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.mark.parametrize("kind", ["default", "transient_local"])
def test_labels_from_volatile_and_transient_local_publishers_reach_the_node(running_node, kind):
    graph, client, node = running_node
    from std_msgs.msg import String

    pub = client.node.create_publisher(String, "/camera/instance/labels", labels_qos(kind))
    try:
        assert client.spin_until(lambda: pub.get_subscription_count() > 0, 15), f"{kind} labels publisher never matched"
        before = counters(client.status).get("bad_labels", 0)
        pub.publish(String(data="not json"))  # counted on arrival: proof that the message got in
        assert client.spin_until(lambda: counters(client.status).get("bad_labels", 0) == before + 1, 15), counters(client.status)
        assert node.poll() is None
    finally:
        client.node.destroy_publisher(pub)


def dprecon_subscriptions(client, topic: str, namespace: str) -> list:
    return [
        i
        for i in client.node.get_subscriptions_info_by_topic(topic)
        if i.node_name == "dprecon_node_inputs" and i.node_namespace == namespace  # the node's inner input node
    ]


def test_inputs_resolve_under_the_namespace_and_the_log_names_them(tmp_path):
    graph = RosGraph(tmp_path)
    try:
        remap = ["-r", "camera/color/image_raw:=/cam/rgb"]  # a relative rule: expanded in the node's namespace
        node = graph.start(
            "dprecon_node", "-r", "__ns:=/robot1", *remap, "-p", "topics.pose_source:=tf", "-p", "reconstruction.period_s:=0.0"
        )
        client = graph.client()
        expected = [
            "/robot1/camera/color/camera_info",
            "/robot1/camera/depth/image_raw",
            "/robot1/camera/instance/image_raw",
            "/robot1/camera/instance/labels",
            "/cam/rgb",
            "/tf",  # tf stays global, as everywhere in ROS
            "/tf_static",
        ]
        assert client.spin_until(lambda: all(dprecon_subscriptions(client, t, "/robot1") for t in expected), START_TIMEOUT_S), (
            {t: bool(dprecon_subscriptions(client, t, "/robot1")) for t in expected},
            graph.logs(),
        )
        assert not dprecon_subscriptions(client, "/camera/instance/image_raw", "/robot1")
        log = graph.procs[0][1]
        assert client.spin_until(lambda: "dprecon_node ready" in log.read_text(), 15), graph.logs()
        ready = next(line for line in log.read_text().splitlines() if "dprecon_node ready" in line)
        for name in ("/cam/rgb", "/robot1/camera/instance/image_raw", "/robot1/camera/depth/image_raw", "/tf"):
            assert re.search(rf"={re.escape(name)}\b", ready), ready
        assert node.poll() is None
    finally:
        graph.close()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("sync.tolerance_s:=5.0", ["sync.tolerance_s", "5.0", "[0.0, 1.0]"]),
        ("topics.image_qos:=bogus", ["topics.image_qos", "bogus", "sensor_data", "reliable"]),
        ("sync.tolerance_s:=abc", ["sync.tolerance_s", "abc", "number"]),
    ],
    ids=["out_of_range", "invalid_choice", "wrong_type"],
)
def test_a_bad_parameter_at_start_up_is_one_error_line_and_a_failed_exit(override, expected):
    done = run_tool("dprecon_node", "--ros-args", "-p", override, timeout=START_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output
    for text in expected:
        assert text in errors[0], errors[0]


@pytest.mark.parametrize(
    "executable, flag", [("dprecon_node", "--help"), ("dprecon_node", "-h"), *((e, "--help") for e in NODE_EXECUTABLES[1:])]
)
def test_help_prints_the_parameters_and_exits_without_starting(executable, flag):
    try:
        done = run_tool(executable, flag, timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{executable} {flag} started the node instead of printing usage")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.startswith(f"usage: {executable}") and "--ros-args" in out and "--params-file" in out, out
    if executable == "dprecon_node":
        assert "sync.tolerance_s" in out and "max stamp difference" in out and "[0.0, 1.0]" in out, out
        assert "topics.image_qos" in out and "sensor_data" in out
    assert "ready" not in out + done.stderr


def test_the_node_starts_with_the_shipped_parameters_file(tmp_path):
    """config/dprecon.yaml holds an empty list (reconstruction.stages: []), which rclpy hands over unset."""
    import time
    from pathlib import Path

    graph = RosGraph(tmp_path)
    try:
        config = Path(__file__).resolve().parents[2] / "config" / "dprecon.yaml"
        node = graph.start("dprecon_node", "--params-file", str(config))
        deadline = time.monotonic() + START_TIMEOUT_S
        while "dprecon_node ready" not in graph.logs() and node.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "dprecon_node ready" in graph.logs() and node.poll() is None, graph.logs()
        assert "ERROR" not in graph.logs(), graph.logs()
    finally:
        graph.close()
