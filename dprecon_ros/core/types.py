"""Small typed objects passed between stages (frames, keyframes, reconstructions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BACKGROUND_ID = 0  # the object id of the background (walls, floor) in every map


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels; pixel centres at integer coordinates."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> CameraIntrinsics:
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    def backproject(self, u: np.ndarray, v: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """Pixels (u right, v down) with z-depth to points in the optical frame, (N, 3)."""
        x = (u - self.cx) / self.fx * depth_m
        y = (v - self.cy) / self.fy * depth_m
        return np.stack([x, y, depth_m], axis=-1)


@dataclass
class Frame:
    """One synchronised observation.

    rgb: (H, W, 3) uint8; depth_m: (H, W) float32 z-depth in metres with NaN where there is no reading, or
    None; instance: (H, W) int32 ids, 0 = background; labels: id -> class name; T_world_camera: 4x4,
    optical frame in the map frame.
    """

    stamp: float
    rgb: np.ndarray
    depth_m: np.ndarray | None
    instance: np.ndarray
    labels: dict[int, str]
    intrinsics: CameraIntrinsics
    T_world_camera: np.ndarray

    @property
    def nbytes(self) -> int:
        n = self.rgb.nbytes + self.instance.nbytes
        return n + (self.depth_m.nbytes if self.depth_m is not None else 0)

    def instance_ids(self) -> list[int]:
        ids = np.unique(self.instance)
        return [int(i) for i in ids if i != 0]


@dataclass
class Keyframe:
    """A frame admitted to the buffer, with its instance ids resolved to stable object ids."""

    index: int
    frame: Frame
    instance_to_object: dict[int, int] = field(default_factory=dict)
    # the voxel keys association took from each instance (not persisted: recomputed when missing); what an
    # object's keys are rebuilt from once keyframes are evicted
    instance_keys: dict[int, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        """The images plus the association keys: both live as long as the keyframe, so both count against
        `keyframes.max_memory_mb`."""
        keys = sum(k.nbytes for k in self.instance_keys.values()) if self.instance_keys else 0
        return self.frame.nbytes + keys

    def object_mask(self, object_id: int) -> np.ndarray:
        inst = [i for i, o in self.instance_to_object.items() if o == object_id]
        if not inst:
            return np.zeros(self.frame.instance.shape, dtype=bool)
        return np.isin(self.frame.instance, inst)

    def background_mask(self) -> np.ndarray:
        """Pixels of no reconstructed object (true background, plus instances too small to keep)."""
        return ~np.isin(self.frame.instance, list(self.instance_to_object.keys()))


@dataclass
class OrientedBox:
    """Gravity-aligned box: centre (m, map frame), yaw about the up axis (rad), full extents (m)."""

    center: np.ndarray
    yaw: float
    extent: np.ndarray

    @property
    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def corners(self) -> np.ndarray:
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return (signs * self.extent / 2) @ self.rotation.T + self.center

    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (points - self.center) @ self.rotation

    def to_dict(self) -> dict:
        return {"center": [float(v) for v in self.center], "yaw": float(self.yaw), "extent": [float(v) for v in self.extent]}


@dataclass
class SceneNormalisation:
    """x_scene = (x_map - center) / scale: the scene inside the unit sphere, as the paper normalises it."""

    center: np.ndarray
    scale: float

    def to_scene(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) - self.center) / self.scale

    def to_map(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) * self.scale + self.center


@dataclass
class ObjectSeed:
    """What association knows of an object before reconstruction: its box (m, map frame) and how often seen."""

    object_id: int
    label: str
    lo: np.ndarray
    hi: np.ndarray
    observations: int


# where a texel's colour came from (TriangleMesh.texel_provenance)
TEXEL_GUTTER = 0  # between charts: dilated from the nearest chart, on no surface
TEXEL_OBSERVED = 1  # baked from keyframes that saw it
TEXEL_FILLED = 2  # unseen, filled smoothly from observed neighbours (no prior)
TEXEL_GENERATED = 3  # unseen, generated by the prior's RGB guidance


def texel_observed_share(provenance: np.ndarray) -> float:
    """Share of the surface's texels (gutters excluded) coloured from keyframes."""
    surface = int(np.count_nonzero(provenance != TEXEL_GUTTER))
    return float(np.count_nonzero(provenance == TEXEL_OBSERVED) / surface) if surface else 0.0


def texel_at(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The texel under each uv (nearest; v = 0 at the first row)."""
    rows, cols = image.shape[:2]
    col = np.clip((uv[:, 0] * cols).astype(np.int64), 0, cols - 1)
    row = np.clip((uv[:, 1] * rows).astype(np.int64), 0, rows - 1)
    return image[row, col]


@dataclass
class TriangleMesh:
    """Vertices (N, 3) in metres in the map frame, faces (M, 3) int64, vertex colours (N, 4) uint8 RGBA; where
    a visibility grid exists, how observed each vertex was (N,) float32 in [0, 1] (provenance). After the
    texture stage: texture coordinates (N, 2) float32 (v = 0 at the texture's first row), the texture (S, S, 3)
    uint8 and where each texel's colour came from (S, S) uint8, one of the TEXEL_* codes."""

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray
    observed: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    texel_provenance: np.ndarray | None = None

    @property
    def is_textured(self) -> bool:
        return self.uv is not None and self.texture is not None

    @classmethod
    def empty(cls) -> TriangleMesh:
        return cls(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 4), np.uint8))

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0


@dataclass
class ObjectReconstruction:
    """One reconstructed object: mesh in the map frame (vertices m, faces, vertex colours uint8 RGBA)."""

    object_id: int
    label: str
    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray
    centroid: np.ndarray
    box: OrientedBox
    observation_count: int
    completeness: float = 0.0  # the observed share of the surface (area); 1 - completeness was generated or inferred
    vertex_observed: np.ndarray | None = None  # (N,) how observed each vertex was, in [0, 1]; None without a visibility grid
    uv: np.ndarray | None = None  # (N, 2) texture coordinates after the texture stage (v = 0 at the first row)
    texture: np.ndarray | None = None  # (S, S, 3) uint8 base colour
    texture_observed_share: float = 0.0  # share of the atlas' chart texels coloured from keyframes (the rest filled or generated)
    texel_provenance: np.ndarray | None = None  # (S, S) uint8 TEXEL_* codes: where each texel's colour came from
    mesh_uri: str = ""  # where the exported (textured) GLB is, once a writer put it somewhere viewers can read

    @property
    def is_textured(self) -> bool:
        return self.uv is not None and self.texture is not None

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0


@dataclass
class Relation:
    subject: int
    relation: str
    object: int
    confidence: float


@dataclass
class SceneGraph:
    objects: list[ObjectReconstruction]
    relations: list[Relation]
    background_id: int = 0
    background_label: str = "floor"  # what relations call the background support ("mug on floor")


@dataclass
class Reconstruction:
    """The map after a run: what is published and exported.

    `changed` and `removed` name the objects (0 = background) whose geometry differs from the previous
    reconstruction, so publishers send only those.
    """

    objects: list[ObjectReconstruction]
    background: ObjectReconstruction | None
    scene_graph: SceneGraph
    stamp: float
    timings_s: dict[str, float] = field(default_factory=dict)
    backend: str = "tsdf"
    history: list[dict[str, float]] = field(default_factory=list)  # optimisation log of iterative stages
    stages: list[str] = field(default_factory=list)
    changed: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)
    revision: int = 0
    versions: dict[int, int] = field(default_factory=dict)  # object id (0 = background) -> refit count
    prior_status: str = ""  # "on: <guidance>", "off: <why>", or "" when the stage list has no prior

    @classmethod
    def empty(cls, stamp: float = 0.0, backend: str = "") -> Reconstruction:
        return cls([], None, SceneGraph([], []), stamp, backend=backend)
