"""Relations from geometry, on hand-made boxes."""

import json

import numpy as np
import trimesh

from dprecon_ros.core.boxes import oriented_box
from dprecon_ros.core.scene_graph import compute_relations, estimate_floor_height
from dprecon_ros.core.scene_graph_config import SceneGraphConfig
from dprecon_ros.core.types import ObjectReconstruction


def box_object(oid: int, label: str, center, extent, yaw: float = 0.0) -> ObjectReconstruction:
    mesh = trimesh.creation.box(extents=extent)
    c, s = np.cos(yaw), np.sin(yaw)
    mesh.apply_transform(np.array([[c, -s, 0, center[0]], [s, c, 0, center[1]], [0, 0, 1, center[2]], [0, 0, 0, 1]]))
    v = np.asarray(mesh.vertices)
    return ObjectReconstruction(
        oid, label, v, np.asarray(mesh.faces), np.full((len(v), 4), 255, np.uint8), v.mean(axis=0), oriented_box(v), 5
    )


def relations(objects, floor_z=0.0):
    labels = {o.object_id: o.label for o in objects}
    labels[0] = "floor"
    return {(labels[r.subject], r.relation, labels[r.object]) for r in compute_relations(objects, floor_z, SceneGraphConfig())}


def test_on_inside_next_to_and_floor():
    table = box_object(1, "table", (0, 0, 0.35), (1.2, 0.8, 0.7))
    bowl = box_object(2, "bowl", (0.3, 0.1, 0.75), (0.2, 0.2, 0.1))
    apple = box_object(3, "apple", (0.3, 0.1, 0.76), (0.06, 0.06, 0.06))
    cup = box_object(4, "cup", (0.05, 0.1, 0.75), (0.08, 0.08, 0.1))
    chair = box_object(5, "chair", (2.0, 0, 0.45), (0.5, 0.5, 0.9))
    rel = relations([table, bowl, apple, cup, chair])
    assert {
        ("bowl", "on", "table"),
        ("cup", "on", "table"),
        ("apple", "inside", "bowl"),
        ("table", "on", "floor"),
        ("chair", "on", "floor"),
        ("cup", "next_to", "bowl"),
    } <= rel
    assert ("apple", "on", "table") not in rel  # the bowl supports it, not the table
    assert ("chair", "next_to", "table") not in rel  # 1.15 m apart
    assert ("bowl", "on", "floor") not in rel


def test_floating_object_is_not_on_anything():
    table = box_object(1, "table", (0, 0, 0.35), (1.2, 0.8, 0.7))
    lamp = box_object(2, "lamp", (0, 0, 1.5), (0.2, 0.2, 0.2))
    rel = relations([table, lamp])
    assert not any(s == "lamp" and r == "on" for s, r, _ in rel)


def test_oriented_box_recovers_yaw_and_extent():
    obj = box_object(1, "crate", (1, 2, 0.5), (0.6, 0.2, 1.0), yaw=0.5)
    extent = np.sort(obj.box.extent)
    assert np.allclose(extent, [0.2, 0.6, 1.0], atol=1e-6)
    assert np.allclose(obj.box.center, [1, 2, 0.5], atol=1e-6)


def test_floor_height_from_a_ground_plane():
    ground = box_object(0, "background", (0, 0, -0.005), (4, 4, 0.01))
    wall = box_object(0, "background", (2, 0, 1), (0.01, 4, 2))
    merged = trimesh.util.concatenate([trimesh.Trimesh(ground.vertices, ground.faces), trimesh.Trimesh(wall.vertices, wall.faces)])
    sub = merged.subdivide().subdivide()
    v = np.asarray(sub.vertices)
    bg = ObjectReconstruction(0, "background", v, np.asarray(sub.faces), np.full((len(v), 4), 255, np.uint8), v.mean(0), oriented_box(v), 3)
    assert abs(estimate_floor_height(bg) - 0.0) < 0.03


def _floor(size: float = 4.0) -> ObjectReconstruction:
    return box_object(0, "background", (0, 0, -0.05), (size, size, 0.1))


def _y_up(obj: ObjectReconstruction) -> ObjectReconstruction:
    """The object in a y-up map frame (x right, y up, z towards the viewer)."""
    R = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    v = obj.vertices @ R.T
    return ObjectReconstruction(obj.object_id, obj.label, v, obj.faces, obj.vertex_colors, v.mean(axis=0), oriented_box(v), 5)


def named(graph):
    labels = {o.object_id: o.label for o in graph.objects}
    labels[graph.background_id] = graph.background_label
    return {(labels[r.subject], r.relation, labels[r.object]) for r in graph.relations}


def test_up_axis_y_gives_the_relations_of_the_same_scene_z_up():
    from dprecon_ros.core.scene_graph import build_scene_graph

    table = box_object(1, "table", (0, 0, 0.35), (1.2, 0.8, 0.7))
    cup = box_object(2, "cup", (0.05, 0.1, 0.75), (0.08, 0.08, 0.1))
    z_up = named(build_scene_graph([table, cup], _floor(), SceneGraphConfig()))
    assert {("cup", "on", "table"), ("table", "on", "floor")} <= z_up
    y_cfg = SceneGraphConfig(up_axis="y")
    y_up = named(build_scene_graph([_y_up(table), _y_up(cup)], _y_up(_floor()), y_cfg))
    assert y_up == z_up
    assert named(build_scene_graph([_y_up(table), _y_up(cup)], _y_up(_floor()), SceneGraphConfig())) != z_up  # the axis matters


def test_floor_label_names_the_background_support():
    from dprecon_ros.core.scene_graph import build_scene_graph, scene_graph_to_dict

    table = box_object(1, "table", (0, 0, 0.35), (1.2, 0.8, 0.7))
    graph = build_scene_graph([table], _floor(), SceneGraphConfig(floor_label="ground"))
    assert ("table", "on", "ground") in named(graph)
    as_json = scene_graph_to_dict(graph, _floor(), "map", 0.0)
    assert any(r["text"] == "table on ground" for r in as_json["relations"]) and as_json["background_label"] == "ground"


def dense(obj: ObjectReconstruction) -> ObjectReconstruction:
    """The same object meshed finely (fitted meshes have vertices everywhere, not 8 corners)."""
    v, f = trimesh.remesh.subdivide_to_size(obj.vertices, obj.faces, max_edge=0.03)
    return ObjectReconstruction(obj.object_id, obj.label, v, f, np.full((len(v), 4), 255, np.uint8), v.mean(axis=0), obj.box, 5)


def test_an_object_sunk_into_a_closed_support_is_still_on_it_but_not_one_hovering_beyond_the_tolerance():
    """A closed table top (a slab with an underside) and a mug whose fitted bottom sank 4 cm into it: the
    support's top is read around the footprint, up to the tolerated gap above the object's bottom."""
    slab = dense(box_object(1, "table", (0, 0, 0.6), (1.2, 0.8, 0.2)))  # top at 0.7, underside at 0.5
    sunk = dense(box_object(2, "mug", (0.3, 0.1, 0.71), (0.08, 0.08, 0.1)))  # bottom at 0.66
    assert ("mug", "on", "table") in relations([slab, sunk])
    hovering = dense(box_object(2, "mug", (0.3, 0.1, 0.82), (0.08, 0.08, 0.1)))  # bottom at 0.77: 7 cm above
    assert ("mug", "on", "table") not in relations([slab, hovering])


def test_a_chair_under_a_legged_table_stands_on_the_floor_not_on_the_table():
    """Legs reach the floor next to the chair: their feet face down and are no top to stand on."""
    parts = [trimesh.creation.box(extents=(1.2, 0.8, 0.05))]
    parts[0].apply_translation((0, 0, 0.675))
    for x in (-0.55, 0.55):
        for y in (-0.35, 0.35):
            leg = trimesh.creation.box(extents=(0.05, 0.05, 0.65))
            leg.apply_translation((x, y, 0.325))
            parts.append(leg)
    mesh = trimesh.util.concatenate(parts)
    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=0.03)
    table = ObjectReconstruction(1, "table", v, f, np.full((len(v), 4), 255, np.uint8), v.mean(axis=0), oriented_box(v), 5)
    chair = dense(box_object(2, "chair", (0.3, 0.1, 0.45), (0.4, 0.4, 0.9)))  # through the top, 5 cm from a leg
    rel = relations([table, chair])
    assert ("chair", "on", "floor") in rel and ("chair", "on", "table") not in rel


def test_the_support_is_read_around_a_dent_beneath_the_object():
    """Right under an object its support is never seen: a fitted table top may be dented there. The top
    around the footprint still counts."""
    parts = []
    for x0, x1, y0, y1 in ((-0.6, 0.25, -0.4, 0.4), (0.35, 0.6, -0.4, 0.4), (0.25, 0.35, -0.4, 0.05), (0.25, 0.35, 0.15, 0.4)):
        block = trimesh.creation.box(extents=(x1 - x0, y1 - y0, 0.2))
        block.apply_translation(((x0 + x1) / 2, (y0 + y1) / 2, 0.6))  # top at 0.7 around a 10 cm hole at (0.3, 0.1)
        parts.append(block)
    dent = trimesh.creation.box(extents=(0.1, 0.1, 0.05))
    dent.apply_translation((0.3, 0.1, 0.525))  # the dent's floor at 0.55
    mesh = trimesh.util.concatenate([*parts, dent])
    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=0.03)
    table = ObjectReconstruction(1, "table", v, f, np.full((len(v), 4), 255, np.uint8), v.mean(axis=0), oriented_box(v), 5)
    mug = dense(box_object(2, "mug", (0.3, 0.1, 0.72), (0.08, 0.08, 0.1)))  # bottom at 0.67, sunk 3 cm
    assert ("mug", "on", "table") in relations([table, mug])


CUP_OBSERVED_SHARE = 0.7


def with_provenance(obj: ObjectReconstruction, completeness: float) -> ObjectReconstruction:
    """The object as the prior stage reports it: per-vertex observedness and its observed share."""
    obj.vertex_observed = np.linspace(0.0, 1.0, len(obj.vertices), dtype=np.float32)
    obj.completeness = completeness
    return obj


def test_the_json_graph_says_per_object_how_much_was_generated_and_whether_that_is_known():
    """Without provenance (tsdf, neural) both shares are 0 and `provenance` is false: unknown, not unseen."""
    from dprecon_ros.core.scene_graph import build_scene_graph, scene_graph_to_dict

    table = box_object(1, "table", (0, 0, 0.35), (1.2, 0.8, 0.7))
    cup = with_provenance(box_object(2, "cup", (0.05, 0.1, 0.75), (0.08, 0.08, 0.1)), CUP_OBSERVED_SHARE)
    floor = with_provenance(_floor(), 1.0)
    as_json = scene_graph_to_dict(build_scene_graph([table, cup], floor, SceneGraphConfig()), floor, "map", 0.0)
    nodes = {n["label"]: n for n in as_json["objects"]}
    assert nodes["cup"]["provenance"] is True
    assert np.isclose(nodes["cup"]["completeness"], CUP_OBSERVED_SHARE) and np.isclose(
        nodes["cup"]["generated_share"], 1 - CUP_OBSERVED_SHARE
    )
    assert nodes["table"]["provenance"] is False and nodes["table"]["generated_share"] == 0.0 and nodes["table"]["completeness"] == 0.0
    assert nodes["background"]["provenance"] is True and nodes["background"]["generated_share"] == 0.0
    assert json.loads(json.dumps(as_json)) == as_json  # plain JSON types, no numpy scalars
