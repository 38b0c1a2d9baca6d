"""Real rclpy processes on a private localhost domain: sim -> node -> subscriber; the ~/reconstruct action
with feedback and cancel; incremental publishing; map save/load; restart; reset during a run; bad input."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from action_msgs.msg import GoalStatus

from dprecon_ros.testing.ros_graph import RosGraph, params, sim_params

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
        # toy-sized geometry stage, slow enough per step to be cancelled mid-run
        *params({"geometry.iterations": 100000, "geometry.rays_per_batch": 64, "geometry.object_resolution": 16}),
        *params({"geometry.background_resolution": 16, "geometry.feature_resolution": 8, "tsdf.object_voxel_m": 0.02}),
        *params({"geometry.cpu_preset": False, "geometry.background_patches": 1, "geometry.patch_size": 4}),
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
        assert result.objects == 8 and result.refitted == 8 and result.duration_s > 0, result
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
    shown = client.marker_state()
    namespaces = {ns for ns, _ in shown}
    assert {"meshes", "boxes", "labels"} <= namespaces
    assert any(ns.startswith("relations/") for ns in namespaces)
    assert {i for ns, i in shown if ns == "boxes"} == {o.id for o in client.objects.objects}
    texts = {m.text for (ns, _), m in shown.items() if ns == "labels"}
    assert any("mug" in t for t in texts)


def test_live_map_shows_the_meshes_fused_as_keyframes_arrived(mapped):
    """~/live_map comes from the volumes fused on arrival: the background and the objects, with colours."""
    _, client, *_ = mapped
    assert client.spin_until(lambda: len(client.live_map_state()) >= 7, 30)
    shown = client.live_map_state()
    assert {ns for ns, _ in shown} == {"live"}
    assert len(shown[("live", 0)].points) > 3 * 500  # the background: floor and walls
    object_ids = {o.id for o in client.objects.objects}
    live_objects = {i for _, i in shown if i != 0}
    assert len(live_objects) >= 6 and live_objects <= object_ids
    for marker in shown.values():
        assert marker.type == marker.TRIANGLE_LIST and len(marker.colors) == len(marker.points) > 0
    assert counters(client.status)["live_map_published"] >= 1


RUN_SUMMARY = re.compile(r"reconstructed: stages (\S+) \(backend (\S+)\), (\d+) objects \((\d+) refitted\), (\d+) relations, ([\d.]+) s")


def test_each_reconstruction_logs_one_summary_line(mapped):
    graph, client, *_ = mapped
    log = graph.procs[0][1]  # the node's

    def summaries() -> list[re.Match]:
        return [m for m in map(RUN_SUMMARY.search, log.read_text().splitlines()) if m]

    assert client.spin_until(lambda: client.status is not None and client.status.runs >= 1, 10)
    assert client.spin_until(lambda: len(summaries()) == client.status.runs, 10), log.read_text()[-3000:]
    stages, backend, objects, refitted, relations, duration = summaries()[0].groups()
    assert (stages, backend, int(objects), int(refitted)) == ("fuse+mesh", "tsdf", 8, 8)
    assert int(relations) == len(client.graph_json["relations"]) and float(duration) > 0


def test_a_goal_with_nothing_new_succeeds_without_republishing(mapped):
    _, client, *_ = mapped
    before = client.markers_count
    result = client.reconstruct(timeout_s=60)
    assert result.success and result.refitted == 0 and "nothing changed" in result.message, result
    assert client.spin_until(lambda: counters(client.status).get("run_unchanged", 0) >= 1, 10)
    assert client.markers_count == before


def test_periodic_ticks_with_nothing_new_run_nothing(mapped):
    _, client, *_ = mapped
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    params_client = AsyncParameterClient(client.node, "dprecon_node")
    assert params_client.wait_for_services(timeout_sec=10)
    runs, markers, unchanged = client.status.runs, client.markers_count, counters(client.status).get("run_unchanged", 0)
    future = params_client.set_parameters([Parameter("reconstruction.period_s", value=0.3)])  # a live change takes effect
    client.executor.spin_until_future_complete(future, timeout_sec=10)
    assert future.result().results[0].successful
    try:
        assert client.spin_until(lambda: counters(client.status).get("run_unchanged", 0) >= unchanged + 3, 20), counters(client.status)
        assert client.status.runs == runs and client.markers_count == markers
    finally:
        future = params_client.set_parameters([Parameter("reconstruction.period_s", value=0.0)])
        client.executor.spin_until_future_complete(future, timeout_sec=10)


def test_a_goal_reports_feedback_and_is_cancelled_within_two_seconds(mapped):
    graph, client, *_ = mapped
    client.feedback.clear()
    objects_before = client.objects
    handle = client.send_reconstruct(stages=["fuse", "geometry", "mesh"])
    assert handle.accepted
    assert client.spin_until(lambda: any(f.stage == "geometry" and f.progress > 0 for f in client.feedback), 120), graph.logs()
    # the fuse stage copies the live map's volumes in milliseconds: its feedback may be throttled away
    assert all(f.stage_count == 3 for f in client.feedback) and "geometry" in {f.stage for f in client.feedback} <= {"fuse", "geometry"}
    t0 = time.monotonic()
    client.cancel(handle)
    status, result = client.wait_result(handle, timeout_s=10)
    assert status == GoalStatus.STATUS_CANCELED and time.monotonic() - t0 < 2.0, (status, result)
    assert not result.success and client.objects is objects_before  # the map was not touched


def test_an_unknown_stage_is_rejected(mapped):
    _, client, *_ = mapped
    assert not client.send_reconstruct(stages=["fuse", "teleport"]).accepted


def test_save_and_load_map_republish_the_same_objects(mapped):
    _, client, _, _, keyframes, tmp = mapped
    saved = client.save_map(str(tmp / "saved"))
    assert saved.success and saved.keyframes == keyframes and saved.objects == 8, saved.message
    before = sorted((o.id, o.label, len(o.mesh.triangles)) for o in client.objects.objects)
    refused = client.load_map(str(tmp))  # a directory that is not a saved map
    assert not refused.success and "not a saved dprecon_ros map" in refused.message
    assert client.reset().success
    assert client.spin_until(lambda: len(client.objects.objects) == 0 and client.status.keyframes == 0, 10)
    loaded = client.load_map(str(tmp / "saved"))
    assert loaded.success and loaded.keyframes == keyframes and loaded.objects == 8, loaded.message
    assert client.spin_until(lambda: len(client.objects.objects) == 8 and client.status.keyframes == keyframes, 10)
    assert sorted((o.id, o.label, len(o.mesh.triangles)) for o in client.objects.objects) == before
    boxes = {o[0] for o in before}
    assert client.spin_until(lambda: {i for ns, i in client.marker_state() if ns == "boxes"} == boxes, 10), client.marker_state().keys()


def test_status_and_export(mapped):
    _, client, _, _, keyframes, tmp = mapped
    assert client.spin_until(lambda: client.status is not None and client.status.runs >= 1 and client.status.stage == "idle", 10)
    s = client.status
    assert s.backend == "tsdf" and list(s.stages) == ["fuse", "mesh"] and s.keyframes == keyframes and s.objects == 8
    assert s.progress == pytest.approx(1.0) and s.map_revision >= 1
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
    assert client.spin_until(lambda: counters(client.status).get("lost_bad_rgb", 0) >= 2, 10), counters(client.status)
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
    assert "read at start-up" in descriptors["compute.device"].description and descriptors["compute.device"].read_only
    results = wait(params.set_parameters([Parameter("reconstruction.stages", value=["fuse", "mesh"])])).results
    assert results[0].successful
    results = wait(params.set_parameters([Parameter("reconstruction.stages", value="fuse")])).results
    assert not results[0].successful  # a list, not a string
    results = wait(params.set_parameters([Parameter("reconstruction.stages", value=[])])).results
    assert results[0].successful
    assert wait(params.get_parameters(["reconstruction.stages"])).values[0].string_array_value == []


def test_restarted_node_resumes_its_keyframes(mapped):
    graph, client, node, node_args, keyframes, tmp = mapped
    assert RosGraph.stop(node) == 0
    assert len(list((tmp / "keyframes").glob("keyframe_*.npz"))) == keyframes
    client.status = None
    restarted = graph.start("dprecon_node", *node_args, name="dprecon_node_restarted")
    assert client.spin_until(lambda: client.status is not None, 30), graph.logs()
    assert client.status.keyframes == keyframes
    result = client.reconstruct(timeout_s=300)
    assert result.success and result.objects == 8, result.message
    assert restarted.poll() is None


def test_reset_during_a_run_leaves_an_empty_published_map(mapped):
    graph, client, *_ = mapped
    assert client.spin_until(lambda: client.objects is not None and len(client.objects.objects) == 8, 30), graph.logs()
    client.feedback.clear()
    handle = client.send_reconstruct(stages=["fuse", "geometry", "mesh"])
    assert client.spin_until(lambda: any(f.stage == "geometry" for f in client.feedback), 120), graph.logs()
    assert client.reset().success
    status, result = client.wait_result(handle, timeout_s=10)
    assert status == GoalStatus.STATUS_ABORTED and not result.success, (status, result)
    # each topic arrives on its own: wait for all of them
    emptied = lambda: not client.objects.objects and not client.graph.nodes and not client.graph_json["objects"]  # noqa: E731
    assert client.spin_until(lambda: emptied() and client.marker_state() == {}, 10), client.marker_state().keys()
    # the goal's result comes after its job was handled: a cancelled run cannot publish its map later
    assert client.spin_until(lambda: client.status.keyframes == 0, 5) and len(client.objects.objects) == 0
