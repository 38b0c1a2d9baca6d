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
