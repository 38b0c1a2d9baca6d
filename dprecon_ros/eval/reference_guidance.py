"""Reference guidance, for evaluation only: a "prior" that knows the true meshes.

It renders the ground-truth mesh of the object from the very cameras the prior stage used and pulls the
rendered latents towards it, with the same per-pixel visibility weighting and the same loss form as SDS
(the gradient on the latents is strength * weight * (z - z_true)). A benchmark uses it to show what the
prior stage does with a prior that is right, without any weights. It is registered only when a benchmark or
test asks for it (`register_reference_guidance`), never by the node.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import torch

from dprecon_ros.core.guidance import sds
from dprecon_ros.core.guidance.base import Guidance, GuidanceViews, Prompt, register_guidance
from dprecon_ros.core.stages.prior.cameras import pixel_rays
from dprecon_ros.core.stages.prior.config import PriorConfig
from dprecon_ros.core.stages.prior.render import OPENCV_TO_VIEWER
from dprecon_ros.core.types import TriangleMesh

NAME = "reference"


class ReferenceGuidance(Guidance):
    name = NAME

    def __init__(self, cfg: PriorConfig, device: torch.device, meshes: dict[int, TriangleMesh], strength: float) -> None:
        self.cfg, self.device, self.strength = cfg, device, strength
        self.scenes: dict[int, o3d.t.geometry.RaycastingScene] = {}
        for oid, mesh in meshes.items():
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
            self.scenes[oid] = scene

    def describe(self) -> str:
        return f"{NAME} (ground-truth meshes of {len(self.scenes)} objects)"

    def true_maps(self, views: GuidanceViews) -> torch.Tensor | None:
        """(B, 4, H, W) normal map and opacity of the true mesh from the views' cameras, as the stage renders."""
        scene = self.scenes.get(views.object_id)
        if scene is None:
            return None
        B, _, H, _ = views.maps.shape
        origins, dirs = pixel_rays(views.T_world_camera.detach().cpu().float(), views.fov_y_rad.detach().cpu().float(), H)
        rays = np.concatenate([origins.reshape(-1, 3).numpy(), dirs.reshape(-1, 3).numpy()], axis=1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        t = hit["t_hit"].numpy()
        normals = hit["primitive_normals"].numpy().astype(np.float64)
        found = np.isfinite(t)
        d = rays[:, 3:]
        normals = np.where((np.sum(normals * d, axis=1) > 0)[:, None], -normals, normals)  # facing the camera
        R = views.T_world_camera.detach().cpu().numpy().astype(np.float64)
        normals_cam = np.einsum("bpi,bij->bpj", normals.reshape(B, -1, 3), R[:, :3, :3]) * OPENCV_TO_VIEWER.numpy()
        normal = np.where(found.reshape(B, -1, 1), normals_cam, np.array([0.0, 0.0, 1.0]))
        maps = np.concatenate([normal * 0.5 + 0.5, found.reshape(B, -1, 1).astype(np.float64)], axis=2)
        return torch.as_tensor(maps.reshape(B, H, H, 4), dtype=torch.float32).permute(0, 3, 1, 2).to(views.maps.device)

    def loss(self, views: GuidanceViews, prompt: Prompt, progress: float) -> torch.Tensor:
        truth = self.true_maps(views)
        if truth is None:  # no true mesh (the background): nothing to say
            return views.maps.sum() * 0.0
        size = self.cfg.latent_size
        latents = sds.as_latents(views.maps, size)
        target = sds.as_latents(truth, size)
        gradient = self.strength * sds.latent_weight(views.weight, size) * (latents.detach() - target)
        return sds.sds_loss(latents, gradient)


def register_reference_guidance(meshes: dict[int, TriangleMesh], strength: float) -> None:
    """Make `prior.guidance: reference` score against these meshes (object id -> mesh, map frame)."""
    register_guidance(NAME, lambda cfg, device: ReferenceGuidance(cfg, device, meshes, strength))
