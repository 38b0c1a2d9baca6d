"""Incremental markers: a viewer replaying the updates always shows exactly the current map."""

from __future__ import annotations

import numpy as np
import trimesh
from visualization_msgs.msg import Marker

from dprecon_ros.core.boxes import oriented_box
from dprecon_ros.core.types import ObjectReconstruction, Reconstruction, Relation, SceneGraph
from dprecon_ros.ros.conversions import marker_update
from dprecon_ros.testing.markers import replay_markers


def obj(oid: int, x: float) -> ObjectReconstruction:
    mesh = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    v = np.asarray(mesh.vertices) + [x, 0.0, 0.5]
    return ObjectReconstruction(
        oid, f"thing{oid}", v, np.asarray(mesh.faces), np.full((len(v), 4), 200, np.uint8), v.mean(0), oriented_box(v), 3
    )


def recon(objects, versions, relations=()) -> Reconstruction:
    r = Reconstruction(objects, None, SceneGraph(objects, list(relations)), 1.0)
    r.versions = versions
    return r


def test_updates_send_only_changed_objects_and_delete_what_is_gone():
    a, b, c = obj(1, 0.0), obj(2, 1.0), obj(3, 2.0)
    first, shown = marker_update(recon([a, b], {1: 1, 2: 1}, [Relation(1, "next_to", 2, 1.0)]), "map", None)
    assert first.markers[0].action == Marker.DELETEALL
    second, shown = marker_update(recon([a, c], {1: 1, 3: 1}), "map", shown)  # 2 removed, 3 new, 1 unchanged
    sent = {(m.ns, m.id) for m in second.markers if m.action == Marker.ADD}
    assert ("meshes", 1) not in sent and ("meshes", 3) in sent  # an unchanged mesh is not resent
    assert {(m.ns, m.id) for m in second.markers if m.action == Marker.DELETE} >= {("meshes", 2), ("boxes", 2), ("labels", 2)}
    third, shown = marker_update(recon([a, c], {1: 2, 3: 1}), "map", shown)  # 1 refitted
    assert {m.id for m in third.markers if m.ns == "meshes" and m.action == Marker.ADD} == {1}
    state = replay_markers([first, second, third])
    assert {i for ns, i in state if ns == "meshes"} == {1, 3} and not any(ns.startswith("relations/") for ns, _ in state)


def test_a_late_subscriber_replaying_the_kept_history_always_ends_with_the_whole_map():
    """Runs that refit one object of five at a time: incremental messages leave the others out, so only the
    snapshot cadence makes the last `history` messages enough (more objects than history, so a snapshot one
    message late leaves a replay short)."""
    from dprecon_ros.ros.conversions import MarkerStream

    history = 3
    stream = MarkerStream(history)
    objects = [obj(i, float(i)) for i in range(1, 6)]
    versions = {o.object_id: 1 for o in objects}
    sent = []
    for run in range(15):
        versions[1 + run % 5] += 1
        sent.append(stream.next(recon(objects, dict(versions)), "map"))
        live = replay_markers(sent)
        assert replay_markers(sent[-history:]) == live, f"after run {run}"
        assert {oid for ns, oid in live if ns == "meshes"} == set(versions)


def test_the_default_marker_history_keeps_few_full_maps():
    """Each kept message can carry every mesh (12 MB for the soak's room): 16 of them were most of the node's
    growth in the soak."""
    from dprecon_ros.config import DpreconConfig

    assert DpreconConfig().topics.marker_history <= 4


COMPLETENESS = 0.6
PRIOR_ON = "on: reference"


def observed_obj(oid: int, x: float) -> ObjectReconstruction:
    """A box whose vertices alternate between seen (1) and generated (0)."""
    o = obj(oid, x)
    o.vertex_observed = (np.arange(len(o.vertices)) % 2).astype(np.float32)
    o.completeness = COMPLETENESS
    return o


def test_object_messages_carry_per_vertex_provenance_and_the_generated_share():
    from std_msgs.msg import Header

    from dprecon_ros.ros.conversions import object_message

    seen, unknown = observed_obj(1, 0.0), obj(2, 1.0)
    msg = object_message(seen, Header())
    assert np.array_equal(np.asarray(msg.vertex_observed, np.float32), seen.vertex_observed)
    assert len(msg.vertex_observed) == len(msg.mesh.vertices)
    assert np.isclose(msg.completeness, COMPLETENESS) and np.isclose(msg.generated_share, 1 - COMPLETENESS)
    msg = object_message(unknown, Header())
    assert len(msg.vertex_observed) == 0 and msg.generated_share == 0.0  # unknown: nothing claimed


def test_status_and_json_graph_report_the_prior_of_the_current_map():
    import json

    from builtin_interfaces.msg import Time

    from dprecon_ros.ros.conversions import scene_graph_json, status_message

    r = recon([obj(1, 0.0)], {1: 1})
    r.prior_status = PRIOR_ON

    def status(current: Reconstruction | None):
        return status_message(Time(), "idle", 1.0, 0, 0, "full", ["fuse", "prior"], 3, current, 1, {}, "")

    assert status(r).prior == PRIOR_ON
    assert status(None).prior == ""
    assert json.loads(scene_graph_json(r, "map").data)["prior_status"] == PRIOR_ON


def mesh_colours(markers, oid: int) -> np.ndarray:
    """The (points, 4) colours of an object's mesh marker."""
    (mesh,) = [m for m in markers.markers if m.ns == "meshes" and m.id == oid]
    return np.array([[c.r, c.g, c.b, c.a] for c in mesh.colors])


def test_observed_marker_colours_show_provenance_and_keep_rgb_without_it():
    from dprecon_ros.core.observedness import MARKER_OBSERVED, observed_colours

    seen, unknown = observed_obj(1, 0.0), obj(2, 1.0)
    r = recon([seen, unknown], {1: 1, 2: 1})
    rgb, _ = marker_update(r, "map", None)
    shown, _ = marker_update(r, "map", None, colours=MARKER_OBSERVED)
    expected = observed_colours(seen.vertex_colors, seen.vertex_observed)[seen.faces.reshape(-1)] / 255.0
    assert np.allclose(mesh_colours(shown, 1), expected, atol=1e-6)
    assert not np.allclose(mesh_colours(rgb, 1), expected, atol=1e-6)
    assert np.allclose(mesh_colours(shown, 2), mesh_colours(rgb, 2))  # no provenance: rgb


def test_switching_the_marker_colours_resends_every_mesh():
    """Unchanged meshes are never resent, so a new colour mode must come as a snapshot."""
    from dprecon_ros.core.observedness import MARKER_OBSERVED
    from dprecon_ros.ros.conversions import MarkerStream

    stream = MarkerStream(history=4)
    r = recon([observed_obj(1, 0.0), observed_obj(2, 1.0)], {1: 1, 2: 1})
    stream.next(r, "map")
    unchanged = stream.next(r, "map")
    assert not [m for m in unchanged.markers if m.ns == "meshes"]
    switched = stream.next(r, "map", colours=MARKER_OBSERVED)
    assert switched.markers[0].action == Marker.DELETEALL
    assert {m.id for m in switched.markers if m.ns == "meshes"} == {1, 2}


def test_marker_colours_default_to_rgb_and_reject_unknown_modes():
    import pytest

    from dprecon_ros.config import DpreconConfig
    from dprecon_ros.config_fields import ConfigError, apply_overrides

    config = DpreconConfig()
    assert config.topics.marker_colors == "rgb"
    apply_overrides(config, {"topics": {"marker_colors": "observed"}})
    assert config.topics.marker_colors == "observed"
    with pytest.raises(ConfigError, match="marker_colors"):
        apply_overrides(config, {"topics": {"marker_colors": "rainbow"}})


def textured(oid: int, x: float, tmp_path) -> ObjectReconstruction:
    o = obj(oid, x)
    o.uv = np.tile(np.array([[0.25, 0.75]], np.float32), (len(o.vertices), 1))
    o.texture = np.full((8, 8, 3), 100 + oid, np.uint8)
    return o


def test_textured_objects_with_a_written_glb_are_mesh_resource_markers_and_the_message_says_where(tmp_path):
    from std_msgs.msg import Header

    from dprecon_ros.io.mesh_resources import MeshResources
    from dprecon_ros.ros.conversions import object_message

    a, b, plain = textured(1, 0.0, tmp_path), textured(2, 1.0, tmp_path), obj(3, 2.0)
    r = recon([a, b, plain], {1: 1, 2: 1, 3: 1})
    uris = MeshResources(tmp_path / "res").update(r)
    assert set(uris) == {1, 2} and a.mesh_uri == uris[1] and plain.mesh_uri == ""
    markers, _ = marker_update(r, "map", None)
    meshes = {m.id: m for m in replay_markers([markers]).values() if m.ns == "meshes"}
    assert meshes[1].type == Marker.MESH_RESOURCE and meshes[1].mesh_resource == uris[1] and meshes[1].mesh_use_embedded_materials
    assert (meshes[1].color.r, meshes[1].color.g, meshes[1].color.b, meshes[1].color.a) == (0.0, 0.0, 0.0, 0.0)  # untinted
    assert meshes[3].type == Marker.TRIANGLE_LIST
    observed, _ = marker_update(r, "map", None, colours="observed")  # provenance colours need triangle lists
    assert all(m.type == Marker.TRIANGLE_LIST for m in observed.markers if m.ns == "meshes")
    msg = object_message(a, Header())
    assert msg.mesh_uri == uris[1]
    a.mesh_uri = ""
    assert object_message(a, Header()).mesh_uri == ""


def test_live_map_markers_delete_what_is_gone():
    from std_msgs.msg import Header

    from dprecon_ros.core.types import TriangleMesh
    from dprecon_ros.ros.conversions import PLAIN, live_map_markers

    tri = TriangleMesh(np.eye(3), np.array([[0, 1, 2]]), np.full((3, 4), 200, np.uint8))
    shown, now_shown = live_map_markers({0: tri, 5: tri, 7: TriangleMesh.empty()}, {0, 5, 7, 9}, Header(frame_id="map"), PLAIN)
    assert now_shown == {0, 5}
    adds = {m.id for m in shown if m.action == Marker.ADD}
    deletes = {m.id for m in shown if m.action == Marker.DELETE}
    assert adds == {0, 5} and deletes == {7, 9}  # 9 was merged away, 7 has no surface any more
    assert all(m.ns == "live" for m in shown) and len(next(m for m in shown if m.id == 5).points) == 3
