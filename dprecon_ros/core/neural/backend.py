"""Backend `neural`: DP-Recon stage 1 (compositional SDFs fitted to the keyframes), initialised from TSDF.

Each reconstruction: fuse TSDF volumes (seconds) and turn them into signed-distance grids; fit all fields
together by volume rendering with the paper's losses; extract each object's mesh by marching cubes inside its
box (largest component, simplified). Runs on CUDA for real use and on the CPU at small sizes.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage import measure

from ...config import DpreconConfig, NeuralConfig
from ..boxes import oriented_box
from ..device import resolve_device
from ..meshing import drop_small_components, simplify
from ..scene_graph import BACKGROUND_ID, build_scene_graph
from ..tsdf_backend import ObjectSeed, ProgressFn, TsdfBackend, background_bounds
from ..types import Keyframe, ObjectReconstruction, Reconstruction
from . import losses
from .fields import ColorNetwork, CompositeScene, GridBox, SdfGrid
from .init import background_sdf_init, object_sdf_init
from .observations import RayPool, SceneNormalisation, build_ray_pool
from .renderer import RayBatch, render_rays, sphere_bounds

log = logging.getLogger("dprecon_ros")
SCENE_RADIUS_MARGIN = 1.1  # the unit sphere holds the scene's bounds with this margin
OBJECT_RAY_SHARE = 0.5  # half of each batch comes from object pixels: objects are small in the images


def grid_box(lo: np.ndarray, hi: np.ndarray, resolution: int, device: torch.device) -> GridBox:
    size = np.maximum(hi - lo, 1e-3)
    voxel = float(size.max()) / (resolution - 1)
    shape = tuple(int(n) for n in np.maximum(np.ceil(size / voxel).astype(int) + 1, 2))
    return GridBox(torch.tensor(lo, dtype=torch.float32, device=device), voxel, shape)


class NeuralBackend:
    name = "neural"

    def __init__(self, config: DpreconConfig) -> None:
        self.config = config
        self.device = resolve_device(config.neural.device)
        fusion = copy.deepcopy(config)
        fusion.tsdf.device = str(self.device)
        self.fusion = TsdfBackend(fusion)

    # ------------------------------------------------------------------ build
    def build_scene(self, usable: list[Keyframe], seeds: list[ObjectSeed]) -> tuple[CompositeScene, SceneNormalisation]:
        cfg: NeuralConfig = self.config.neural
        lo, hi = background_bounds(usable)
        center = (lo + hi) / 2
        norm = SceneNormalisation(center, float(np.linalg.norm(hi - lo) / 2 * SCENE_RADIUS_MARGIN))
        min_weight = self.config.mesh.min_weight
        objects = []
        for seed in seeds:
            size = seed.hi - seed.lo
            box = grid_box(
                norm.to_scene(seed.lo - cfg.object_margin * size),
                norm.to_scene(seed.hi + cfg.object_margin * size),
                cfg.object_resolution,
                self.device,
            )
            init = object_sdf_init(
                self.fusion.fuse_object(seed, usable),
                box,
                norm.to_map,
                norm.scale,
                min_weight,
                usable,
                seed.object_id,
                max(cfg.carve_margin_m, box.voxel * norm.scale),
            )
            objects.append(SdfGrid(box, init.to(self.device)))
        scene_lo, scene_hi = norm.to_scene(lo), norm.to_scene(hi)
        bg_box = grid_box(scene_lo, scene_hi, cfg.background_resolution, self.device)
        bg_volume = self.fusion.fuse_background(usable, (lo, hi))
        bg_init = background_sdf_init(bg_volume, bg_box, norm.to_map, norm.scale, min_weight)
        color = ColorNetwork(grid_box(scene_lo, scene_hi, cfg.feature_resolution, self.device), cfg.feature_dim, cfg.hidden_dim)
        mixed = cfg.mixed_precision and self.device.type == "cuda"
        scene = CompositeScene(objects, SdfGrid(bg_box, bg_init.to(self.device)), color, cfg.beta_init, mixed).to(self.device)
        return scene, norm

    # --------------------------------------------------------------- optimise
    def _batch(self, pool: RayPool, generator: torch.Generator) -> torch.Tensor:
        n = self.config.neural.rays_per_batch
        n_obj = min(int(n * OBJECT_RAY_SHARE), len(pool.object_pixels))
        pick_obj = pool.object_pixels[
            torch.randint(0, max(1, len(pool.object_pixels)), (n_obj,), generator=generator, device=pool.field.device)
        ]
        pick_all = torch.randint(0, len(pool), (n - n_obj,), generator=generator, device=pool.field.device)
        return torch.cat([pick_obj, pick_all])

    def loss_terms(
        self, scene: CompositeScene, pool: RayPool, idx: torch.Tensor, metric_depth: bool, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        cfg = self.config.neural
        o, d = pool.origins[idx], pool.directions[idx]
        near, far = sphere_bounds(o, d, min_near=pool.near)
        out = render_rays(
            scene, RayBatch(o, d, near, far), cfg.samples_init, cfg.samples_final, cfg.samples_extra, cfg.sampling_eps, cfg.sampling_iters
        )
        dist, field = pool.distance[idx], pool.field[idx]
        has_depth = torch.isfinite(dist)
        depth_fn = losses.metric_depth_loss if metric_depth else losses.scale_shift_invariant_depth_loss
        normal_l1, normal_cos = losses.normal_losses(out.normal, pool.normal[idx], pool.normal_valid[idx])
        K = scene.num_objects
        # points on observed object surfaces: the background must be empty there; normals vary smoothly there
        on_object = has_depth & (field < K)
        surface = (o + d * torch.nan_to_num(dist)[:, None])[on_object]
        if len(surface):
            offset = F.normalize(torch.randn(surface.shape, generator=generator, device=surface.device), dim=-1) * cfg.smooth_offset
            _, grad_a, values = scene.scene_sdf(surface)
            _, grad_b, _ = scene.scene_sdf(surface + offset)
            smooth = losses.smoothness_loss(grad_a, grad_b)
            background = losses.background_loss(values[:, K])
        else:
            smooth = background = out.rgb.sum() * 0.0
        eik_points = self._box_points(scene, len(idx), generator)
        _, eik_grads = scene.sdfs(eik_points)
        return {
            "rgb": losses.rgb_loss(out.rgb, pool.rgb[idx]),
            "depth": depth_fn(out.distance, torch.nan_to_num(dist), has_depth),
            "normal_l1": normal_l1,
            "normal_cos": normal_cos,
            "mask": losses.mask_loss(out.field_opacity, field),
            "eikonal": losses.eikonal_loss(torch.cat([out.field_grad.reshape(-1, 3), eik_grads.reshape(-1, 3)])),
            "smooth": smooth,
            "overlap": losses.overlap_loss(out.field_sdf[:, :K]) if K else out.rgb.sum() * 0.0,
            "background": background,
        }

    @staticmethod
    def _box_points(scene: CompositeScene, count: int, generator: torch.Generator) -> torch.Tensor:
        """Uniform points in the fields' grids (objects and background), for the eikonal term."""
        per = max(1, count // len(scene.fields))
        pts = []
        for field in scene.fields:
            r = torch.rand((per, 3), generator=generator, device=field.box.origin.device)
            pts.append(field.box.origin + r * (field.box.upper - field.box.origin))
        return torch.cat(pts)

    def weighted_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config.neural
        weights = {
            "rgb": c.w_rgb,
            "depth": c.w_depth,
            "normal_l1": c.w_normal_l1,
            "normal_cos": c.w_normal_cos,
            "mask": c.w_mask,
            "eikonal": c.w_eikonal,
            "smooth": c.w_smooth,
            "overlap": c.w_overlap,
            "background": c.w_background,
        }
        return sum(weights[k] * v for k, v in terms.items())

    def optimise(self, scene: CompositeScene, pool: RayPool, metric_depth: bool, progress: ProgressFn) -> list[dict[str, float]]:
        cfg = self.config.neural
        # Adam moves every cell by about lr per step: tie it to each grid's cell size
        groups = [{"params": [f.values], "lr": cfg.lr_sdf_voxels * f.box.voxel} for f in scene.fields]
        groups += [{"params": [scene.density.log_beta], "lr": cfg.lr_beta}, {"params": scene.color.parameters(), "lr": cfg.lr_color}]
        optimizer = torch.optim.Adam(groups)
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        history = []
        for step in range(cfg.iterations):
            idx = self._batch(pool, generator)
            terms = self.loss_terms(scene, pool, idx, metric_depth, generator)
            loss = self.weighted_loss(terms)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % cfg.progress_every == 0 or step == cfg.iterations - 1:
                history.append(
                    {"step": step, "loss": loss.item(), "beta": scene.density.beta.item(), **{k: v.item() for k, v in terms.items()}}
                )
                progress("neural", (step + 1) / cfg.iterations)
        return history

    # ------------------------------------------------------------------ mesh
    def mesh_field(
        self, scene: CompositeScene, k: int, norm: SceneNormalisation, target_faces: int, min_component_fraction: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        field = scene.fields[k]
        # a positive border closes surfaces that the grid's faces cut
        values = np.pad(field.values.detach()[0].float().cpu().numpy(), 1, constant_values=field.box.voxel)
        if values.min() >= 0:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 4), np.uint8)
        verts, faces, _, _ = measure.marching_cubes(values, level=0.0, allow_degenerate=False)
        scene_pts = field.box.origin.cpu().numpy() + (verts - 1) * field.box.voxel
        v, f = drop_small_components(norm.to_map(scene_pts), faces.astype(np.int64), min_component_fraction)
        v, f = simplify(v, f, target_faces)
        return v, f, self._vertex_colors(scene, k, norm.to_scene(v))

    @torch.no_grad()
    def _vertex_colors(self, scene: CompositeScene, k: int, scene_pts: np.ndarray) -> np.ndarray:
        if len(scene_pts) == 0:
            return np.zeros((0, 4), np.uint8)
        x = torch.as_tensor(scene_pts, dtype=torch.float32, device=self.device)
        _, grad = scene.fields[k](x)
        n = F.normalize(grad, dim=-1)
        rgb = scene.color(x, n, -n).clamp(0, 1).cpu().numpy()
        return np.concatenate([(rgb * 255).astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], axis=1)

    # ------------------------------------------------------------ run it all
    def reconstruct(self, keyframes: list[Keyframe], seeds: list[ObjectSeed], progress: ProgressFn | None = None) -> Reconstruction:
        progress = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        usable = self.fusion.depth_keyframes(keyframes)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        progress("tsdf_init", 0.0)
        scene, norm = self.build_scene(usable, seeds)
        pool = build_ray_pool(usable, [s.object_id for s in seeds], norm, self.device, self.config.frames.min_depth_m)
        timings["init"] = self._lap(t0)
        t0 = time.perf_counter()
        history = self.optimise(scene, pool, metric_depth=bool(torch.isfinite(pool.distance).any()), progress=progress)
        timings["optimise"] = self._lap(t0)
        timings["iteration"] = timings["optimise"] / max(1, self.config.neural.iterations)
        t0 = time.perf_counter()
        progress("meshing", 0.0)
        mesh_cfg = self.config.mesh
        objects = []
        for k, seed in enumerate(seeds):
            v, f, c = self.mesh_field(scene, k, norm, mesh_cfg.target_faces, 1.0)
            if len(f):
                objects.append(
                    ObjectReconstruction(seed.object_id, seed.label, v, f, c, v.mean(axis=0), oriented_box(v), seed.observations)
                )
        v, f, c = self.mesh_field(scene, len(seeds), norm, mesh_cfg.background_target_faces, 0.0)
        background = (
            ObjectReconstruction(BACKGROUND_ID, "background", v, f, c, v.mean(axis=0), oriented_box(v), len(usable)) if len(f) else None
        )
        timings["meshing"] = self._lap(t0)
        t0 = time.perf_counter()
        graph = build_scene_graph(objects, background, self.config.scene_graph)
        timings["scene_graph"] = time.perf_counter() - t0
        if self.device.type == "cuda":
            timings["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if history:
            log.info(
                "neural stage: %d steps, final loss %.4f, beta %.4f",
                self.config.neural.iterations,
                history[-1]["loss"],
                history[-1]["beta"],
            )
        stamp = max((kf.frame.stamp for kf in keyframes), default=0.0)
        return Reconstruction(objects, background, graph, stamp, timings, backend=self.name, history=history)

    def _lap(self, t0: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0
