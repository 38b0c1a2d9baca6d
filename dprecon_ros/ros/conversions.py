"""Core results -> ROS messages (typed objects, scene graph, markers, status). Conversion only, no math."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from builtin_interfaces.msg import Time
from dprecon_msgs.msg import MapObject, MapObjectArray, MapperStatus, SceneGraph, SceneGraphEdge, SceneGraphNode
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from shape_msgs.msg import Mesh
from std_msgs.msg import ColorRGBA, Header, String
from visualization_msgs.msg import Marker, MarkerArray

from dprecon_ros.core.geometry import matrix_to_quat
from dprecon_ros.core.observedness import MARKER_RGB, display_colours, generated_share, has_provenance
from dprecon_ros.core.scene_graph import scene_graph_to_dict
from dprecon_ros.core.types import ObjectReconstruction, OrientedBox, Reconstruction, TriangleMesh
from dprecon_ros.ros.cdr_arrays import ArraySlots, PlainArrays

Arrays = PlainArrays | ArraySlots
PLAIN = PlainArrays()

RELATION_COLOURS = {"on": (0.1, 0.8, 0.1), "inside": (0.9, 0.5, 0.0), "next_to": (0.2, 0.4, 1.0)}


def to_time(stamp: float) -> Time:
    sec = int(np.floor(stamp))
    return Time(sec=sec, nanosec=int(round((stamp - sec) * 1e9)) % 1_000_000_000)


def _point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def _box_pose(box: OrientedBox) -> Pose:
    q = matrix_to_quat(box.rotation)
    return Pose(position=_point(box.center), orientation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))


def _unit_colours(rgba_u8: np.ndarray) -> np.ndarray:
    return rgba_u8.astype(np.float32) / 255.0


def _vertex_observed(obj: ObjectReconstruction, arrays: Arrays):
    """One value per mesh vertex, or empty where provenance is unknown (no visibility grid)."""
    return arrays.floats(obj.vertex_observed) if has_provenance(obj) else PLAIN.floats(np.zeros(0, np.float32))


def object_message(obj: ObjectReconstruction, header: Header, arrays: Arrays = PLAIN) -> MapObject:
    mesh = Mesh(vertices=arrays.points(obj.vertices), triangles=arrays.triangles(obj.faces))
    return MapObject(
        header=header,
        id=obj.object_id,
        label=obj.label,
        box_pose=_box_pose(obj.box),
        box_size=Vector3(x=float(obj.box.extent[0]), y=float(obj.box.extent[1]), z=float(obj.box.extent[2])),
        centroid=_point(obj.centroid),
        mesh=mesh,
        vertex_colors=arrays.colours(_unit_colours(obj.vertex_colors)),
        vertex_observed=_vertex_observed(obj, arrays),
        completeness=float(obj.completeness),
        generated_share=generated_share(obj),
        mesh_uri=obj.mesh_uri,
        texture_observed_share=float(obj.texture_observed_share),
        observation_count=obj.observation_count,
    )


def objects_message(recon: Reconstruction, frame_id: str, arrays: Arrays = PLAIN) -> MapObjectArray:
    """With `arrays` an ArraySlots, publish `arrays.serialize(message)` (the mesh arrays are placeholders)."""
    header = Header(stamp=to_time(recon.stamp), frame_id=frame_id)
    return MapObjectArray(header=header, objects=[object_message(o, header, arrays) for o in recon.objects])


def _node(obj: ObjectReconstruction, kind: str) -> SceneGraphNode:
    return SceneGraphNode(
        id=obj.object_id,
        label=obj.label,
        kind=kind,
        centroid=_point(obj.centroid),
        box_pose=_box_pose(obj.box),
        box_size=Vector3(x=float(obj.box.extent[0]), y=float(obj.box.extent[1]), z=float(obj.box.extent[2])),
        observation_count=obj.observation_count,
    )


def scene_graph_message(recon: Reconstruction, frame_id: str) -> SceneGraph:
    nodes = [_node(o, "object") for o in recon.objects]
    if recon.background is not None:
        nodes.insert(0, _node(recon.background, "background"))
    edges = [
        SceneGraphEdge(subject=r.subject, relation=r.relation, object=r.object, confidence=float(r.confidence))
        for r in recon.scene_graph.relations
    ]
    return SceneGraph(header=Header(stamp=to_time(recon.stamp), frame_id=frame_id), nodes=nodes, edges=edges)


def empty_graph_json(frame_id: str) -> str:
    return json.dumps({"frame_id": frame_id, "stamp": 0.0, "objects": [], "relations": []})


def scene_graph_json(recon: Reconstruction, frame_id: str) -> String:
    graph = scene_graph_to_dict(recon.scene_graph, recon.background, frame_id, recon.stamp)
    graph["backend"] = recon.backend
    graph["prior_status"] = recon.prior_status
    return String(data=json.dumps(graph))


MESH_NAMESPACES = ("meshes", "boxes", "labels")


def object_markers(
    obj: ObjectReconstruction, header: Header, with_box: bool, arrays: Arrays = PLAIN, colours: str = MARKER_RGB
) -> list[Marker]:
    """The object's mesh and, for objects, its box and label. The mesh is a MESH_RESOURCE of its textured GLB
    where one was written (`obj.mesh_uri`, shown with the file's own material and texture), else a TRIANGLE_LIST
    with vertex colours (for a textured object, the texture's), or with observedness for `colours="observed"`."""
    markers = [_mesh_marker(obj, header, arrays, colours)]
    if not with_box:
        return markers
    e = obj.box.extent
    markers.append(
        Marker(
            header=header,
            ns="boxes",
            id=obj.object_id,
            type=Marker.CUBE,
            action=Marker.ADD,
            pose=_box_pose(obj.box),
            scale=Vector3(x=float(max(e[0], 1e-3)), y=float(max(e[1], 1e-3)), z=float(max(e[2], 1e-3))),
            color=ColorRGBA(r=0.2, g=0.6, b=1.0, a=0.15),
        )
    )
    top = obj.box.center + np.array([0.0, 0.0, e[2] / 2 + 0.05])
    markers.append(
        Marker(
            header=header,
            ns="labels",
            id=obj.object_id,
            type=Marker.TEXT_VIEW_FACING,
            action=Marker.ADD,
            pose=Pose(position=_point(top), orientation=Quaternion(w=1.0)),
            scale=Vector3(z=0.06),
            color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
            text=f"{obj.object_id}: {obj.label}",
        )
    )
    return markers


def _mesh_marker(obj: ObjectReconstruction, header: Header, arrays: Arrays, colours: str) -> Marker:
    if obj.mesh_uri and colours == MARKER_RGB:
        # glTF is y-up: RViz2 (since 2025) and Foxglove turn it to z-up on load, so the pose is the identity;
        # colour all zeros: the embedded material, untinted
        return Marker(
            header=header,
            ns="meshes",
            id=obj.object_id,
            type=Marker.MESH_RESOURCE,
            action=Marker.ADD,
            pose=Pose(orientation=Quaternion(w=1.0)),
            scale=Vector3(x=1.0, y=1.0, z=1.0),
            color=ColorRGBA(r=0.0, g=0.0, b=0.0, a=0.0),
            mesh_resource=obj.mesh_uri,
            mesh_use_embedded_materials=True,
        )
    return triangle_list_marker("meshes", obj.object_id, obj.vertices, obj.faces, display_colours(obj, colours), header, arrays)


def triangle_list_marker(
    ns: str, marker_id: int, vertices: np.ndarray, faces: np.ndarray, rgba_u8: np.ndarray, header: Header, arrays: Arrays
) -> Marker:
    """A mesh as a TRIANGLE_LIST marker with per-vertex colours (three points per face)."""
    corners = faces.reshape(-1)
    return Marker(
        header=header,
        ns=ns,
        id=int(marker_id),
        type=Marker.TRIANGLE_LIST,
        action=Marker.ADD,
        pose=Pose(orientation=Quaternion(w=1.0)),
        scale=Vector3(x=1.0, y=1.0, z=1.0),
        color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
        points=arrays.points(vertices[corners]),
        colors=arrays.colours(_unit_colours(rgba_u8[corners])),
    )


LIVE_NAMESPACE = "live"


def live_map_markers(
    meshes: dict[int, TriangleMesh], shown_before: set[int], header: Header, arrays: Arrays
) -> tuple[list[Marker], set[int]]:
    """The live map: one TRIANGLE_LIST per volume (id 0 = background), and DELETE for volumes shown before that
    are gone (merged or forgotten objects) or have no surface any more; also the volumes now shown."""
    shown = {volume_id for volume_id, m in meshes.items() if not m.is_empty}
    markers = [
        triangle_list_marker(LIVE_NAMESPACE, volume_id, m.vertices, m.faces, m.vertex_colors, header, arrays)
        for volume_id, m in sorted(meshes.items())
        if volume_id in shown
    ]
    markers += [Marker(header=header, ns=LIVE_NAMESPACE, id=int(i), action=Marker.DELETE) for i in sorted(shown_before - shown)]
    return markers, shown


def relation_markers(recon: Reconstruction, header: Header) -> list[Marker]:
    by_id = {o.object_id: o for o in recon.objects}
    markers = []
    for k, rel in enumerate(recon.scene_graph.relations):
        a = by_id.get(rel.subject)
        b = by_id.get(rel.object) if rel.object != recon.scene_graph.background_id else None
        if a is None:
            continue
        end = b.centroid if b is not None else np.array([a.centroid[0], a.centroid[1], a.vertices[:, 2].min()])
        r, g, bl = RELATION_COLOURS.get(rel.relation, (0.7, 0.7, 0.7))
        markers.append(
            Marker(
                header=header,
                ns=f"relations/{rel.relation}",
                id=k,
                type=Marker.LINE_LIST,
                action=Marker.ADD,
                pose=Pose(orientation=Quaternion(w=1.0)),
                scale=Vector3(x=0.01),
                color=ColorRGBA(r=r, g=g, b=bl, a=0.9),
                points=[_point(a.centroid), _point(end)],
            )
        )
    return markers


def delete_markers(keys: set[tuple[str, int]], header: Header) -> list[Marker]:
    return [Marker(header=header, ns=ns, id=i, action=Marker.DELETE) for ns, i in sorted(keys)]


@dataclass
class MarkersShown:
    """What the marker topic has shown so far: each object's version, and the relation markers."""

    versions: dict[int, int] = field(default_factory=dict)
    relations: set[tuple[str, int]] = field(default_factory=set)


def marker_update(
    recon: Reconstruction, frame_id: str, shown: MarkersShown | None, arrays: Arrays = PLAIN, colours: str = MARKER_RGB
) -> tuple[MarkerArray, MarkersShown]:
    """Markers that take a viewer from `shown` to `recon`: objects whose version differs are re-sent, objects
    gone are deleted, per-object namespaces keyed by object id so an unchanged mesh is never resent. With
    `shown=None`, a DELETEALL and everything (a snapshot for late subscribers). `colours`: the
    `topics.marker_colors` mode of the meshes."""
    header = Header(stamp=to_time(recon.stamp), frame_id=frame_id)
    full = shown is None
    shown = shown or MarkersShown()
    markers = [Marker(header=header, action=Marker.DELETEALL)] if full else []
    present = {o.object_id: o for o in recon.objects}
    if recon.background is not None:
        present[recon.background.object_id] = recon.background
    gone = set(shown.versions) - set(present)
    markers += delete_markers({(ns, oid) for oid in gone for ns in MESH_NAMESPACES}, header)
    for oid in sorted(present):
        if full or shown.versions.get(oid) != recon.versions.get(oid, -1):
            markers += object_markers(present[oid], header, oid != recon.scene_graph.background_id, arrays, colours)
    relations = relation_markers(recon, header)
    keys = {(m.ns, m.id) for m in relations}
    markers += delete_markers(shown.relations - keys, header)
    now = MarkersShown({oid: recon.versions.get(oid, -1) for oid in present}, keys)
    return MarkerArray(markers=markers + relations), now


class MarkerStream:
    """The ~/markers sequence: incremental updates, and a full snapshot before the oldest of the `history`
    messages a late subscriber replays would be its last, so its replay always ends complete."""

    def __init__(self, history: int) -> None:
        self.history = history
        self.shown: MarkersShown | None = None  # None: the next message is a full snapshot
        self.since_snapshot = 0
        self.colours = MARKER_RGB  # the colour mode of the meshes shown

    def next(self, recon: Reconstruction, frame_id: str, arrays: Arrays = PLAIN, colours: str = MARKER_RGB) -> MarkerArray:
        """`colours`: the `topics.marker_colors` mode; a change resends every mesh (a snapshot), since
        unchanged meshes are otherwise never resent and would keep the old colours."""
        if self.since_snapshot >= self.history - 1 or colours != self.colours:
            self.shown = None
        markers, shown = marker_update(recon, frame_id, self.shown, arrays, colours)
        self.since_snapshot = 0 if self.shown is None else self.since_snapshot + 1
        self.shown, self.colours = shown, colours
        return markers

    def cleared(self) -> None:
        """An empty map was published (a DELETEALL): that is a snapshot of nothing."""
        self.shown, self.since_snapshot = MarkersShown(), 0

    def replace_all(self) -> None:
        """A different map: the next message replaces every marker."""
        self.shown = None


def empty_map_messages(frame_id: str, stamp: Time) -> tuple[MapObjectArray, SceneGraph, MarkerArray]:
    """What the latched topics carry after a reset: no objects, no graph, every marker deleted."""
    header = Header(stamp=stamp, frame_id=frame_id)
    return MapObjectArray(header=header), SceneGraph(header=header), MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])


def status_message(
    stamp: Time,
    stage: str,
    progress: float,
    stage_index: int,
    stage_count: int,
    backend: str,
    stages: list[str],
    keyframes: int,
    recon: Reconstruction | None,
    runs: int,
    counters: dict[str, int],
    last_error: str,
    frames_waiting: int = 0,
) -> MapperStatus:
    return MapperStatus(
        header=Header(stamp=stamp),
        stage=stage,
        progress=float(progress),
        stage_index=stage_index,
        stage_count=stage_count,
        backend=backend,
        stages=list(stages),
        keyframes=keyframes,
        objects=len(recon.objects) if recon else 0,
        runs=runs,
        map_revision=recon.revision if recon else 0,
        last_run_duration_s=float(recon.timings_s.get("total", 0.0)) if recon else 0.0,
        last_run_stamp=to_time(recon.stamp if recon else 0.0),
        frames_waiting=frames_waiting,
        prior=recon.prior_status if recon else "",
        counter_names=list(counters),
        counter_values=[int(v) for v in counters.values()],
        last_error=last_error,
    )
