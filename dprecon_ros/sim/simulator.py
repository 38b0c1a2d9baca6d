"""Render a scene along a camera trajectory into Frames (RGB, depth, instance ids, labels, pose).

Options model what real robots deliver: RGB-D noise and dropouts, per-frame shuffled instance ids (a 2D
detector), pose noise, and sparse views on a partial arc so the far sides of objects stay unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dprecon_ros.config_fields import config_field
from dprecon_ros.core.geometry import look_at, make_transform
from dprecon_ros.core.types import CameraIntrinsics, Frame
from dprecon_ros.sim.scene import PlacedObject, SceneSpec, _rpy_matrix, default_scene, place_objects, pybullet_data_path

OPENGL_FROM_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])
MAX_SHUFFLED_ID = 60000


@dataclass
class SimConfig:
    width: int = config_field(320, "image width (px)", (16, 4096))
    height: int = config_field(240, "image height (px)", (16, 4096))
    fov_deg: float = config_field(60.0, "vertical field of view (deg)", (10.0, 150.0))
    near_m: float = config_field(0.05, "renderer near plane (m)", (0.001, 10.0))
    far_m: float = config_field(10.0, "renderer far plane (m)", (0.1, 1000.0))
    num_views: int = config_field(15, "views on the trajectory", (1, 10000))
    arc_deg: float = config_field(140.0, "angular span of the camera arc; under 360 leaves far sides unseen", (0.0, 360.0))
    arc_center_deg: float = config_field(-90.0, "azimuth of the arc's middle (deg, map frame)", (-360.0, 360.0))
    radius_m: float = config_field(1.4, "distance of the camera from the target axis (m)", (0.1, 20.0))
    height_m: float = config_field(1.35, "camera height (m)", (0.0, 10.0))
    height_jitter_m: float = config_field(0.15, "camera height variation along the arc (m)", (0.0, 5.0))
    target_height_m: float = config_field(0.72, "height of the point the camera looks at, above the scene centre (m)", (0.0, 10.0))
    camera_speed_mps: float = config_field(0.4, "camera speed along the arc, sets frame stamps (m/s)", (0.01, 10.0))
    depth_noise_m: float = config_field(0.0, "depth noise sigma at 1 m; grows with z^2 like stereo sensors (m)", (0.0, 1.0))
    depth_dropout: float = config_field(0.0, "fraction of depth pixels without a reading", (0.0, 1.0))
    pose_noise_m: float = config_field(0.0, "pose translation noise sigma (m)", (0.0, 10.0))
    pose_noise_deg: float = config_field(0.0, "pose rotation noise sigma (deg)", (0.0, 180.0))
    shuffle_ids: bool = config_field(False, "give instances new random ids in every frame, like a 2D detector")
    seed: int = config_field(0, "random seed of noise and id shuffling", (0, 2**31 - 1))


class RoomSimulator:
    def __init__(self, config: SimConfig | None = None, scene: SceneSpec | None = None) -> None:
        import pybullet as p

        self.p = p
        self.config = config or SimConfig()
        self.scene = scene or default_scene()
        self.objects: list[PlacedObject] = place_objects(self.scene)
        self.rng = np.random.default_rng(self.config.seed)
        self.client = p.connect(p.DIRECT)
        self._body_to_instance: dict[int, int] = {}
        self._build_world()
        c = self.config
        fy = (c.height / 2) / np.tan(np.radians(c.fov_deg) / 2)
        self.intrinsics = CameraIntrinsics(fy, fy, c.width / 2 - 0.5, c.height / 2 - 0.5, c.width, c.height)
        self._projection = p.computeProjectionMatrixFOV(c.fov_deg, c.width / c.height, c.near_m, c.far_m)

    def close(self) -> None:
        if self.client is not None:
            self.p.disconnect(self.client)
            self.client = None

    def __enter__(self) -> RoomSimulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build_world(self) -> None:
        p, data = self.p, pybullet_data_path()
        p.setAdditionalSearchPath(str(data), physicsClientId=self.client)
        p.loadURDF("plane.urdf", physicsClientId=self.client)
        sx, sy = self.scene.room_size
        h = self.scene.wall_height
        for pos, half in [
            ((sx / 2, 0, h / 2), (0.05, sy / 2, h / 2)),
            ((-sx / 2, 0, h / 2), (0.05, sy / 2, h / 2)),
            ((0, sy / 2, h / 2), (sx / 2, 0.05, h / 2)),
            ((0, -sy / 2, h / 2), (sx / 2, 0.05, h / 2)),
        ]:
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=(0.82, 0.8, 0.74, 1), physicsClientId=self.client)
            p.createMultiBody(0, -1, vis, basePosition=pos, physicsClientId=self.client)
        for obj in self.objects:
            parts = obj.spec.parts
            kwargs = dict(
                shapeTypes=[p.GEOM_MESH] * len(parts),
                fileNames=[str(data / q.mesh) for q in parts],
                meshScales=[list(q.scale) for q in parts],
                visualFramePositions=[list(q.offset) for q in parts],
                physicsClientId=self.client,
            )
            colours = [q.rgba for q in parts]
            if all(c is not None for c in colours):
                kwargs["rgbaColors"] = [list(c) for c in colours]
            vis = p.createVisualShapeArray(**kwargs)
            quat = _matrix_to_xyzw(obj.T_world_object[:3, :3])
            body = p.createMultiBody(
                0, -1, vis, basePosition=list(obj.T_world_object[:3, 3]), baseOrientation=quat, physicsClientId=self.client
            )
            self._body_to_instance[body] = obj.instance_id

    def trajectory(self) -> list[np.ndarray]:
        """T_world_camera poses on an arc around the target (sparse, one side unless arc_deg is 360)."""
        c = self.config
        if c.num_views == 1:
            angles = [np.radians(c.arc_center_deg)]
        else:
            angles = np.radians(c.arc_center_deg + np.linspace(-c.arc_deg / 2, c.arc_deg / 2, c.num_views))
        poses = []
        for k, a in enumerate(angles):
            z = c.height_m + c.height_jitter_m * np.sin(2.3 * k)
            eye = np.array([c.radius_m * np.cos(a), c.radius_m * np.sin(a), z])
            poses.append(look_at(eye, np.array([0.0, 0.0, c.target_height_m])))
        return poses

    def render(self, T_world_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb uint8 HxWx3, depth m HxW float32, instance HxW int32) from a true pose."""
        p, c = self.p, self.config
        view = np.linalg.inv(T_world_camera @ OPENGL_FROM_OPTICAL)
        _, _, rgba, zbuf, seg = p.getCameraImage(
            c.width,
            c.height,
            viewMatrix=view.T.reshape(-1).tolist(),
            projectionMatrix=self._projection,
            renderer=p.ER_TINY_RENDERER,
            shadow=0,
            lightDirection=[0.6, -0.8, 2.0],
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(c.height, c.width, 4)[..., :3].copy()
        zbuf = np.asarray(zbuf, dtype=np.float64).reshape(c.height, c.width)
        depth = (c.far_m * c.near_m / (c.far_m - (c.far_m - c.near_m) * zbuf)).astype(np.float32)
        depth[zbuf >= 1.0] = np.nan
        seg = np.asarray(seg, dtype=np.int64).reshape(c.height, c.width)
        instance = np.zeros(seg.shape, dtype=np.int32)
        for body, inst in self._body_to_instance.items():
            instance[seg == body] = inst
        return rgb, depth, instance

    def _noisy_pose(self, T: np.ndarray) -> np.ndarray:
        c = self.config
        if c.pose_noise_m <= 0 and c.pose_noise_deg <= 0:
            return T
        dR = _rpy_matrix(*np.radians(self.rng.normal(0, c.pose_noise_deg, 3)))
        return make_transform(T[:3, :3] @ dR, T[:3, 3] + self.rng.normal(0, c.pose_noise_m, 3))

    def _noisy_depth(self, depth: np.ndarray) -> np.ndarray:
        c = self.config
        depth = depth.copy()
        if c.depth_noise_m > 0:
            depth += (self.rng.normal(0, 1, depth.shape) * c.depth_noise_m * depth**2).astype(np.float32)
        if c.depth_dropout > 0:
            depth[self.rng.random(depth.shape) < c.depth_dropout] = np.nan
        return depth

    def stamps(self, poses: list[np.ndarray], start_stamp: float) -> list[float]:
        """Frame times for a camera moving at `camera_speed_mps` along the poses."""
        steps = [np.linalg.norm(b[:3, 3] - a[:3, 3]) for a, b in zip(poses[:-1], poses[1:])]
        return list(start_stamp + np.concatenate([[0.0], np.cumsum(steps)]) / self.config.camera_speed_mps)

    def frames(self, start_stamp: float = 1.0) -> list[tuple[Frame, np.ndarray]]:
        """(frame as a robot would report it, true pose) along the trajectory."""
        return [self.frame(T, stamp) for T, stamp in zip(self.trajectory(), self.stamps(self.trajectory(), start_stamp))]

    def frame(self, T_true: np.ndarray, stamp: float) -> tuple[Frame, np.ndarray]:
        """Render one view; the frame carries the (noisy) pose a robot would report."""
        labels = {o.instance_id: o.spec.label for o in self.objects}
        rgb, depth, instance = self.render(T_true)
        frame_labels = {i: labels[i] for i in np.unique(instance) if i != 0}
        if self.config.shuffle_ids:
            ids = list(frame_labels)
            new = self.rng.choice(np.arange(1, MAX_SHUFFLED_ID), size=len(ids), replace=False)
            remap = dict(zip(ids, (int(n) for n in new)))
            shuffled = np.zeros_like(instance)
            for old, nid in remap.items():
                shuffled[instance == old] = nid
            instance = shuffled
            frame_labels = {remap[i]: lab for i, lab in frame_labels.items()}
        frame = Frame(
            stamp=stamp,
            rgb=rgb,
            depth_m=self._noisy_depth(depth),
            instance=instance,
            labels={int(i): v for i, v in frame_labels.items()},
            intrinsics=self.intrinsics,
            T_world_camera=self._noisy_pose(T_true),
        )
        return frame, T_true

    def ground_truth(self) -> dict[str, object]:
        """label -> trimesh of every object, in the map frame."""
        return {o.spec.label: o.mesh for o in self.objects}

    def export_ground_truth(self, directory: str | Path) -> list[Path]:
        from dprecon_ros.sim.scene import export_ground_truth

        return export_ground_truth(self.objects, directory)


def _matrix_to_xyzw(R: np.ndarray) -> list[float]:
    from dprecon_ros.core.geometry import matrix_to_quat

    return list(matrix_to_quat(R))
