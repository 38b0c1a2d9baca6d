"""A room with a table and household objects from pybullet_data, and its ground-truth meshes.

Every object is an OBJ mesh placed by a scale, a roll-pitch-yaw and a footprint position; the placement
puts the mesh's lowest point on its support, so ground truth and rendering share one transform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from dprecon_ros.core.geometry import make_transform


def pybullet_data_path() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath())


@dataclass
class Part:
    """One mesh of an object: OBJ file (relative to pybullet_data), per-axis scale, offset in the object frame."""

    mesh: str
    scale: tuple[float, float, float]
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rgba: tuple[float, float, float, float] | None = None


@dataclass
class ObjectSpec:
    label: str
    parts: list[Part]
    xy: tuple[float, float]
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    support: str | None = None  # label of the object it stands on; None = floor
    z_offset: float = 0.0


@dataclass
class SceneSpec:
    objects: list[ObjectSpec]
    room_size: tuple[float, float] = (6.0, 6.0)
    wall_height: float = 2.5


def _cube_part(size, offset, rgba=None) -> Part:
    return Part("cube.obj", size, offset, rgba)


def default_scene() -> SceneSpec:
    """A table with a mug, a duck, a teddy, a ball and a tray holding a lego brick; a box on the floor."""
    legs = [(-0.55, -0.35), (-0.55, 0.35), (0.55, -0.35), (0.55, 0.35)]
    table = ObjectSpec(
        "table",
        [_cube_part((1.3, 0.85, 0.05), (0, 0, 0.675), (0.55, 0.38, 0.22, 1))]
        + [_cube_part((0.06, 0.06, 0.65), (x, y, 0.325), (0.35, 0.24, 0.14, 1)) for x, y in legs],
        xy=(0.0, 0.0),
    )
    return SceneSpec(
        [
            table,
            ObjectSpec("mug", [Part("objects/mug.obj", (1.0, 1.0, 1.0), rgba=(0.85, 0.85, 0.9, 1))], (-0.35, -0.15), (0, 0, 0.6), "table"),
            ObjectSpec("duck", [Part("duck.obj", (0.1, 0.1, 0.1))], (-0.05, 0.2), (np.pi / 2, 0, 0.4), "table"),
            ObjectSpec(
                "teddy", [Part("teddy2_VHACD_CHs.obj", (0.25, 0.25, 0.25), rgba=(0.6, 0.4, 0.2, 1))], (0.4, 0.2), (0, 0, -0.5), "table"
            ),
            ObjectSpec("ball", [Part("soccerball.obj", (0.14, 0.14, 0.14))], (0.0, -0.22), (0, 0, 0), "table"),
            ObjectSpec("tray", [Part("tray/tray_textured4.obj", (0.3, 0.3, 0.3))], (0.38, -0.2), (0, 0, 0.3), "table"),
            ObjectSpec(
                "lego", [Part("lego/lego.obj", (0.2, 0.2, 0.2), rgba=(0.9, 0.1, 0.1, 1))], (0.38, -0.2), (np.pi / 2, 0, 0.7), "tray", 0.01
            ),
            ObjectSpec("box", [_cube_part((0.35, 0.35, 0.35), (0, 0, 0), (0.2, 0.45, 0.7, 1))], (0.0, 0.95), (0, 0, 0.2), None),
        ]
    )


def _rpy_matrix(r: float, p: float, y: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


@dataclass
class PlacedObject:
    """An object with its pose: world = T_world_object @ (scale * part vertices + offset)."""

    spec: ObjectSpec
    instance_id: int
    T_world_object: np.ndarray
    mesh: trimesh.Trimesh = field(repr=False)


def _part_mesh(part: Part, data: Path) -> trimesh.Trimesh:
    m = trimesh.load(data / part.mesh, force="mesh", process=False)
    m = trimesh.Trimesh(np.asarray(m.vertices) * np.asarray(part.scale) + np.asarray(part.offset), np.asarray(m.faces), process=False)
    return m


def surface_height(mesh: trimesh.Trimesh, xy: tuple[float, float]) -> float:
    """Height of the highest surface above `xy` (a vertical ray's first hit: a table top, a tray's floor)."""
    tri = np.asarray(mesh.triangles)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    p = np.asarray(xy, dtype=np.float64)
    v0, v1, v2 = (b - a)[:, :2], (c - a)[:, :2], p - a[:, :2]
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    s = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    t = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    hit = ok & (s >= 0) & (t >= 0) & (s + t <= 1)
    if not hit.any():
        return float(mesh.bounds[1, 2])
    z = a[hit, 2] + s[hit] * (b - a)[hit, 2] + t[hit] * (c - a)[hit, 2]
    return float(z.max())


def place_objects(scene: SceneSpec) -> list[PlacedObject]:
    """Resolve supports in order, so each object's lowest point rests on the top of its support."""
    data = pybullet_data_path()
    placed: dict[str, PlacedObject] = {}
    for i, spec in enumerate(scene.objects, start=1):
        local = trimesh.util.concatenate([_part_mesh(p, data) for p in spec.parts])
        R = _rpy_matrix(*spec.rpy)
        rotated = np.asarray(local.vertices) @ R.T
        base_z = 0.0
        if spec.support is not None:
            base_z = surface_height(placed[spec.support].mesh, spec.xy)
        centre_xy = (rotated[:, :2].max(axis=0) + rotated[:, :2].min(axis=0)) / 2
        t = np.array([spec.xy[0] - centre_xy[0], spec.xy[1] - centre_xy[1], base_z + spec.z_offset - rotated[:, 2].min()])
        T = make_transform(R, t)
        world = trimesh.Trimesh(rotated + t, np.asarray(local.faces), process=False)
        placed[spec.label] = PlacedObject(spec, i, T, world)
    return list(placed.values())


def export_ground_truth(objects: list[PlacedObject], directory: str | Path) -> list[Path]:
    """gt/<instance>_<label>.ply per object, in the map frame."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for obj in objects:
        path = out / f"{obj.instance_id}_{obj.spec.label}.ply"
        obj.mesh.export(path)
        paths.append(path)
    return paths
