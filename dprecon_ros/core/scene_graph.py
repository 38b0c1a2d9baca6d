"""Geometric relations between reconstructed objects: on (supported-by), inside, next_to.

Relations are computed from meshes in the map frame (z up, REP-103), the way object-level mapping systems
feed planners: a support test on footprints and vertical gaps, a containment test on boxes, and proximity
between objects standing on the same support.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from dprecon_ros.core.boxes import oriented_box
from dprecon_ros.core.observedness import generated_share, has_provenance
from dprecon_ros.core.scene_graph_config import SceneGraphConfig
from dprecon_ros.core.types import BACKGROUND_ID, ObjectReconstruction, Relation, SceneGraph


def _footprint_overlap(upper: ObjectReconstruction, lower: ObjectReconstruction, grid: int = 12) -> float:
    """Fraction of `upper`'s footprint (box, xy) lying inside `lower`'s footprint (convex hull of its vertices)."""
    b = upper.box
    ax = np.linspace(-0.5, 0.5, grid)
    gx, gy = np.meshgrid(ax * b.extent[0], ax * b.extent[1])
    pts = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1) @ b.rotation.T + b.center
    xy = lower.vertices[:, :2]
    try:
        hull = ConvexHull(xy)
    except (QhullError, ValueError):
        return 0.0
    eq = hull.equations
    inside = (pts[:, :2] @ eq[:, :2].T + eq[:, 2]).max(axis=1) <= HULL_TOLERANCE_M
    return float(inside.mean())


HULL_TOLERANCE_M = 1e-9  # a point on a hull facet counts as inside
SUPPORT_RING_M = 0.05  # the support's top is read this far around an object's footprint too
UP_FACING = 0.7  # a support's top faces up: its faces' normals have at least this z component


def _support_top(lower: ObjectReconstruction, upper: ObjectReconstruction, max_gap_m: float) -> float | None:
    """Height of `lower`'s up-facing surface under `upper`'s footprint and a ring around it (robust top of
    those faces), counting surfaces up to `max_gap_m` above `upper`'s bottom; None if it has none there.

    The ring: the support right beneath an object is never seen, and a closed support mesh may show a dent
    or its underside there. The allowance above the bottom: a reconstructed object may sink into its
    support by as much as the relation tolerates. Only up-facing faces: a leg's foot or an underside is not
    a top (meshes are wound outwards)."""
    faces = lower.faces
    tri = lower.vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(normal, axis=1)
    up = np.unique(faces[normal[:, 2] >= UP_FACING * np.maximum(area, 1e-12)])
    if up.size == 0:
        return None
    local = upper.box.to_local(lower.vertices[up])
    reach = upper.box.extent[:2] / 2 + SUPPORT_RING_M
    near = (np.abs(local[:, 0]) <= reach[0]) & (np.abs(local[:, 1]) <= reach[1])
    z = lower.vertices[up[near], 2] if near.sum() >= 3 else lower.vertices[up, 2]
    below = z[z <= upper.vertices[:, 2].min() + max_gap_m]
    return float(np.percentile(below, 95)) if below.size else None


def _inside_fraction(a: ObjectReconstruction, b: ObjectReconstruction) -> float:
    """Fraction of `a`'s vertices inside the convex hull of `b` (a brick in a tray, a cup in a box)."""
    if not len(a.vertices):
        return 0.0
    try:  # the hull's facets as half-spaces: one matrix product, where a simplex search can take seconds on flat sets
        hull = ConvexHull(b.vertices[:: max(1, len(b.vertices) // 2000)])
    except (QhullError, ValueError):
        return 0.0
    offsets = a.vertices @ hull.equations[:, :3].T + hull.equations[:, 3]
    return float((offsets <= HULL_TOLERANCE_M).all(axis=1).mean())


def _horizontal_gap(a: ObjectReconstruction, b: ObjectReconstruction) -> float:
    """Smallest xy distance between the two vertex sets (subsampled)."""
    va, vb = a.vertices[:: max(1, len(a.vertices) // 400), :2], b.vertices[:: max(1, len(b.vertices) // 400), :2]
    d = np.linalg.norm(va[:, None, :] - vb[None, :, :], axis=2)
    return float(d.min())


def compute_relations(objects: list[ObjectReconstruction], floor_z: float | None, config: SceneGraphConfig) -> list[Relation]:
    objs = [o for o in objects if not o.is_empty]
    relations: list[Relation] = []
    support: dict[int, int] = {}
    for a in objs:
        best = None
        for b in objs:
            if a.object_id == b.object_id or np.prod(a.box.extent) >= np.prod(b.box.extent):
                continue
            if not np.all(np.abs(b.box.to_local(a.centroid[None])[0]) <= b.box.extent / 2):
                continue
            frac = _inside_fraction(a, b)
            if frac >= config.inside_min_fraction and (best is None or frac > best[1]):
                best = (b.object_id, frac)
        if best is not None:
            relations.append(Relation(a.object_id, "inside", best[0], round(best[1], 3)))
            support[a.object_id] = best[0]
    for a in objs:
        if a.object_id in support:
            continue
        a_bottom = float(a.vertices[:, 2].min())
        best = None
        for b in objs:
            if b.object_id == a.object_id or b.box.center[2] >= a.box.center[2]:
                continue
            top = _support_top(b, a, config.on_max_gap_m)
            gap = np.inf if top is None else a_bottom - top
            if -config.on_max_gap_m <= gap <= config.on_max_gap_m:
                overlap = _footprint_overlap(a, b)
                if overlap >= config.on_min_footprint_overlap:
                    conf = overlap * (1.0 - abs(gap) / (config.on_max_gap_m + 1e-9) * 0.5)
                    if best is None or conf > best[1]:
                        best = (b.object_id, conf)
        if best is not None:
            relations.append(Relation(a.object_id, "on", best[0], round(best[1], 3)))
            support[a.object_id] = best[0]
        elif floor_z is not None and abs(a_bottom - floor_z) <= config.on_max_gap_m:
            relations.append(
                Relation(a.object_id, "on", BACKGROUND_ID, round(1.0 - abs(a_bottom - floor_z) / config.on_max_gap_m * 0.5, 3))
            )
            support[a.object_id] = BACKGROUND_ID
    for i, a in enumerate(objs):
        for b in objs[i + 1 :]:
            same_support = support.get(a.object_id, -1) == support.get(b.object_id, -2)
            if not same_support:
                continue
            gap = _horizontal_gap(a, b)
            if gap <= config.next_to_max_distance_m:
                conf = round(1.0 - gap / (config.next_to_max_distance_m + 1e-9) * 0.5, 3)
                relations.append(Relation(a.object_id, "next_to", b.object_id, conf))
                relations.append(Relation(b.object_id, "next_to", a.object_id, conf))
    return relations


def estimate_floor_height(background: ObjectReconstruction, bin_m: float = 0.02, min_up: float = 0.9) -> float | None:
    """Height of the largest up-facing horizontal surface of the background (the floor in a room)."""
    v, f = background.vertices, background.faces
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area = np.linalg.norm(n, axis=1)
    up = (n[:, 2] / np.maximum(area, 1e-12)) >= min_up
    if not up.any():
        return None
    z = v[f[up]].mean(axis=1)[:, 2]
    edges = np.arange(z.min(), z.max() + 2 * bin_m, bin_m)
    hist, edges = np.histogram(z, bins=edges, weights=area[up])
    k = int(np.argmax(hist))
    return float((edges[k] + edges[k + 1]) / 2)


# rotations taking the map's up axis to +z, where the relations are computed
TO_Z_UP = {"z": np.eye(3), "y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])}


def in_z_up(obj: ObjectReconstruction, R: np.ndarray) -> ObjectReconstruction:
    """The object expressed in a frame whose z is the map's up axis (boxes re-fitted about that axis)."""
    v = obj.vertices @ R.T
    return replace(obj, vertices=v, centroid=obj.centroid @ R.T, box=oriented_box(v) if len(v) else obj.box)


def build_scene_graph(objects: list[ObjectReconstruction], background: ObjectReconstruction | None, config: SceneGraphConfig) -> SceneGraph:
    """Relations between the objects, with gravity along -`config.up_axis` of the map frame."""
    R = TO_Z_UP[config.up_axis]
    upright = [in_z_up(o, R) for o in objects] if config.up_axis != "z" else objects
    ground = in_z_up(background, R) if background is not None and config.up_axis != "z" else background
    floor_z = estimate_floor_height(ground) if ground is not None and not ground.is_empty else None
    relations = compute_relations(upright, floor_z, config)
    return SceneGraph(objects=objects, relations=relations, background_id=BACKGROUND_ID, background_label=config.floor_label)


def provenance_fields(obj: ObjectReconstruction | None) -> dict:
    """Completeness (observed share), generated share, and whether per-vertex provenance exists at all:
    without it both shares are 0 and mean "unknown", not "nothing observed"."""
    if obj is None:
        return {"completeness": 0.0, "generated_share": 0.0, "provenance": False, "textured": False, "texture_observed_share": 0.0}
    return {
        "completeness": float(obj.completeness),
        "generated_share": generated_share(obj),
        "provenance": has_provenance(obj),
        "textured": obj.is_textured,
        "texture_observed_share": float(obj.texture_observed_share),  # texels coloured from keyframes; the rest filled or generated
    }


def scene_graph_to_dict(
    graph: SceneGraph, background: ObjectReconstruction | None, frame_id: str, stamp: float, mesh_paths: dict[int, str] | None = None
) -> dict:
    """The JSON twin of the typed scene graph (for agents without the interface package)."""
    mesh_paths = mesh_paths or {}
    labels = {o.object_id: o.label for o in graph.objects}
    labels[graph.background_id] = graph.background_label
    nodes = [
        {
            "id": o.object_id,
            "label": o.label,
            "kind": "object",
            "centroid": [float(v) for v in o.centroid],
            "box": o.box.to_dict(),
            "observation_count": o.observation_count,
            **provenance_fields(o),
            "num_faces": int(len(o.faces)),
            "mesh": mesh_paths.get(o.object_id, ""),
        }
        for o in graph.objects
    ]
    nodes.insert(
        0,
        {
            "id": graph.background_id,
            "label": "background",
            "kind": "background",
            "centroid": [float(v) for v in background.centroid] if background is not None else [0.0, 0.0, 0.0],
            "box": background.box.to_dict() if background is not None else None,
            "observation_count": background.observation_count if background is not None else 0,
            **provenance_fields(background),
            "num_faces": int(len(background.faces)) if background is not None else 0,
            "mesh": mesh_paths.get(graph.background_id, ""),
        },
    )
    return {
        "frame_id": frame_id,
        "stamp": stamp,
        "background_label": graph.background_label,
        "objects": nodes,
        "relations": [
            {
                "subject": r.subject,
                "relation": r.relation,
                "object": r.object,
                "confidence": r.confidence,
                "text": f"{labels.get(r.subject, r.subject)} {r.relation} {labels.get(r.object, r.object)}",
            }
            for r in graph.relations
        ],
    }
