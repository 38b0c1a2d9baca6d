"""Real rclpy processes on a private localhost domain: sim -> node -> subscriber; restart; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ros_graph import RosGraph, sim_params

pytestmark = pytest.mark.ros

VIEWS = 12


def counters(status) -> dict[str, int]:
    return dict(zip(status.counter_names, status.counter_values))


def relation_texts(graph_json: dict) -> set[str]:
    return {r["text"] for r in graph_json["relations"]}


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """The simulator streams a shuffled-id sparse arc into dprecon_node; the test asks for a reconstruction."""
    tmp = tmp_path_factory.mktemp("sim_graph")
    graph = RosGraph(tmp)
    node_args = [
        "-p",
        "topics.image_qos:=reliable",
        "-p",
        "reconstruction.period_s:=0.0",
        "-p",
        f"reconstruction.export_dir:={tmp / 'export'}",
        "-p",
        f"keyframes.persist_dir:={tmp / 'keyframes'}",
    ]
    node = graph.start("dprecon_node", *node_args)
    sim = graph.start("dprecon_sim", *sim_params(VIEWS, sim__shuffle_ids=True, ground_truth_dir=tmp / "gt"))
    client = graph.client()
    try:
        assert sim.wait(timeout=180) == 0, graph.logs()
        keyframes = client.wait_for_keyframes_settled(minimum=VIEWS - 2, settle_s=1.5, timeout_s=60)
        result = client.reconstruct(timeout_s=300)
        assert result.success, result.message + graph.logs()
        assert client.spin_until(lambda: None not in (client.objects, client.graph, client.graph_json, client.markers), 30), graph.logs()
        yield graph, client, node, node_args, keyframes, tmp
    finally:
        graph.close()


def test_subscriber_receives_typed_objects_with_meshes(mapped):
    _, client, *_ = mapped
    objects = client.objects.objects
    labels = sorted(o.label for o in objects)
    assert labels == sorted(["table", "mug", "duck", "teddy", "ball", "tray", "lego", "box"])
    assert len({o.id for o in objects}) == len(objects) and all(o.id > 0 for o in objects)
    for o in objects:
        assert o.header.frame_id == "map"
        assert len(o.mesh.triangles) > 50 and len(o.vertex_colors) == len(o.mesh.vertices)
        assert o.box_size.x > 0 and o.box_size.y > 0 and o.box_size.z > 0 and o.observation_count >= 1
        verts = np.array([[p.x, p.y, p.z] for p in o.mesh.vertices])
        assert np.allclose(verts.mean(axis=0), [o.centroid.x, o.centroid.y, o.centroid.z], atol=1e-3)


def test_scene_graph_json_and_typed_agree(mapped):
    _, client, *_ = mapped
    g, js = client.graph, client.graph_json
    typed_nodes = {(n.id, n.label) for n in g.nodes}
    assert {(o["id"], o["label"]) for o in js["objects"] if o["kind"] == "object"} <= typed_nodes
    assert {(e.subject, e.relation, e.object) for e in g.edges} == {(r["subject"], r["relation"], r["object"]) for r in js["relations"]}
    texts = relation_texts(js)
    assert "mug on table" in texts and "lego inside tray" in texts and "table on floor" in texts


def test_markers_show_meshes_boxes_labels_and_relations(mapped):
    _, client, *_ = mapped
    namespaces = {m.ns for m in client.markers.markers}
    assert {"meshes", "boxes", "labels"} <= namespaces
    assert any(ns.startswith("relations/") for ns in namespaces)
    texts = {m.text for m in client.markers.markers if m.ns == "labels"}
    assert any("mug" in t for t in texts)


def test_status_and_export(mapped):
    _, client, _, _, keyframes, tmp = mapped
    assert client.spin_until(lambda: client.status is not None and client.status.runs >= 1 and client.status.stage == "idle", 10)
    s = client.status
    assert s.backend == "tsdf" and s.keyframes == keyframes and s.objects == 8 and s.progress == pytest.approx(1.0)
    graph = json.loads((tmp / "export" / "scene_graph.json").read_text())
    assert len(list((tmp / "export" / "objects").glob("*.glb"))) == 8 == sum(o["kind"] == "object" for o in graph["objects"])
    answer = client.export(str(tmp / "export2"))
    assert answer.success and any(f.endswith("scene.glb") for f in answer.files)


def test_bad_input_is_counted_and_the_node_keeps_running(mapped):
    graph, client, node, *_ = mapped
    from sensor_msgs.msg import Image

    from dprecon_ros.ros.qos import RELIABLE

    pub = client.node.create_publisher(Image, "/camera/color/image_raw", RELIABLE)
    assert client.spin_until(lambda: pub.get_subscription_count() > 0, 10)
    bad = Image(encoding="yuv422", width=4, height=4, step=8, data=bytes(32))
    short = Image(encoding="rgb8", width=64, height=64, step=192, data=bytes(10))
    for i, msg in enumerate([bad, short]):
        msg.header.stamp.sec = 5000 + i
        pub.publish(msg)
    assert client.spin_until(lambda: counters(client.status).get("bad_rgb", 0) >= 2, 10), counters(client.status)
    assert node.poll() is None


def test_parameters_are_documented_ranged_and_validated(mapped):
    _, client, *_ = mapped
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    params = AsyncParameterClient(client.node, "dprecon_node")
    assert params.wait_for_services(timeout_sec=10)

    def wait(future):
        client.executor.spin_until_future_complete(future, timeout_sec=10)
        return future.result()

    names = wait(params.list_parameters()).result.names
    assert {"sync.tolerance_s", "keyframes.max_keyframes", "reconstruction.backend", "topics.rgb"} <= set(names)
    descriptors = {d.name: d for d in wait(params.describe_parameters(names)).descriptors}
    assert all(descriptors[n].description for n in names if n not in ("use_sim_time", "start_type_description_service"))
    tol = descriptors["sync.tolerance_s"].floating_point_range[0]
    assert (tol.from_value, tol.to_value) == (0.0, 1.0)
    results = wait(params.set_parameters([Parameter("sync.tolerance_s", value=5.0)])).results
    assert not results[0].successful
    results = wait(params.set_parameters([Parameter("scene_graph.next_to_max_distance_m", value=0.3)])).results
    assert results[0].successful
    results = wait(params.set_parameters([Parameter("topics.rgb", value="/other")])).results
    assert not results[0].successful  # read-only: subscriptions are made at start-up


def test_restarted_node_resumes_its_keyframes(mapped):
    graph, client, node, node_args, keyframes, tmp = mapped
    assert RosGraph.stop(node) == 0
    assert len(list((tmp / "keyframes").glob("*.npz"))) == keyframes
    client.status = None
    restarted = graph.start("dprecon_node", *node_args, name="dprecon_node_restarted")
    assert client.spin_until(lambda: client.status is not None, 30), graph.logs()
    assert client.status.keyframes == keyframes
    result = client.reconstruct(timeout_s=300)
    assert result.success and "8 objects" in result.message, result.message
    assert restarted.poll() is None
