"""Stage `geometry`: DP-Recon stage 1, compositional SDF fields fitted to the keyframes by volume rendering.

Fields start from the fused TSDF (each object's depth-carved visual hull with the TSDF in the observed band,
the background as a shell behind its surfaces) and are fitted with the paper's losses. The scene
normalisation, the fields, the colour network and β are kept in the scene model: a later run refits only
the objects whose observations changed, rendering the others frozen.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import torch

from dprecon_ros.core.fields.composite import ColorNetwork, CompositeScene, GridBox, SdfGrid
from dprecon_ros.core.fields.init import background_sdf_init, object_sdf_init
from dprecon_ros.core.fusion.fuse import background_bounds, fuse_background, fuse_object
from dprecon_ros.core.render.rays import build_ray_pool
from dprecon_ros.core.scene_model import BACKGROUND_ID, SceneModel
from dprecon_ros.core.stages.base import RunContext, Stage, register_stage
from dprecon_ros.core.stages.geometry.config import GeometryConfig
from dprecon_ros.core.stages.geometry.optimise import optimise
from dprecon_ros.core.types import SceneNormalisation

log = logging.getLogger("dprecon_ros")
SCENE_RADIUS_MARGIN = 1.1  # the unit sphere holds the scene's bounds with this margin
MIN_GRID_RESOLUTION = 8


def grid_box(lo: np.ndarray, hi: np.ndarray, resolution: int, device: torch.device) -> GridBox:
    size = np.maximum(hi - lo, 1e-3)
    voxel = float(size.max()) / (resolution - 1)
    shape = tuple(int(n) for n in np.maximum(np.ceil(size / voxel).astype(int) + 1, 2))
    return GridBox(torch.tensor(lo, dtype=torch.float32, device=device), voxel, shape)


def normalisation_for(lo: np.ndarray, hi: np.ndarray) -> SceneNormalisation:
    return SceneNormalisation((lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2 * SCENE_RADIUS_MARGIN))


def still_holds(norm: SceneNormalisation | None, lo: np.ndarray, hi: np.ndarray) -> bool:
    """True if the scene's current bounds still lie inside the unit sphere of an earlier normalisation."""
    if norm is None:
        return False
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return bool(np.all(np.linalg.norm(norm.to_scene(corners), axis=1) <= 1.0))


def sized(cfg: GeometryConfig, ctx: RunContext) -> GeometryConfig:
    """The configuration at the run's size: grids shrink on a CPU retry after the device ran out of memory."""
    if not ctx.compute.is_fallback:
        return cfg
    return dataclasses.replace(
        cfg,
        object_resolution=ctx.scaled(cfg.object_resolution, MIN_GRID_RESOLUTION),
        background_resolution=ctx.scaled(cfg.background_resolution, MIN_GRID_RESOLUTION),
        feature_resolution=ctx.scaled(cfg.feature_resolution, MIN_GRID_RESOLUTION),
    )


@register_stage
class GeometryStage(Stage):
    name = "geometry"
    # besides its own section it reads fusion (volumes it fuses itself), mesh.min_weight and frames.min_depth_m
    config_sections = ("geometry", "tsdf", "mesh", "frames")

    def run(self, model: SceneModel, ctx: RunContext) -> SceneModel:
        if not ctx.dirty:  # a run that only removed objects: the remaining fields are as they were
            return model
        cfg = sized(ctx.config.geometry, ctx)
        device = ctx.compute.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        lo, hi = background_bounds(ctx.keyframes)
        norm = model.normalisation
        kept = all(model.objects[s.object_id].field is not None for s in ctx.seeds if s.object_id not in ctx.dirty) and still_holds(
            norm, lo, hi
        )
        if not kept:  # fields live in normalised units: a new normalisation refits everything
            norm = normalisation_for(lo, hi)
            ctx.dirty |= {s.object_id for s in ctx.seeds} | {BACKGROUND_ID}
            model.appearance, model.log_beta = None, None
        ctx.progress(0.0)
        scene, trainable = self.build_scene(model, ctx, cfg, norm, (lo, hi))
        pool = build_ray_pool(ctx.keyframes, [s.object_id for s in ctx.seeds], norm, device, ctx.config.frames.min_depth_m)
        metric_depth = bool(torch.isfinite(pool.distance).any())
        history = optimise(cfg, scene, trainable, pool, metric_depth, ctx)
        for k, seed in enumerate(ctx.seeds):
            if k in trainable:
                model.objects[seed.object_id].field = scene.fields[k]
        if model.background is not None and scene.num_objects in trainable:
            model.background.field = scene.fields[scene.num_objects]
        model.normalisation, model.appearance = norm, scene.color
        model.log_beta = float(scene.density.log_beta.detach())
        model.history = history
        ctx.compute.synchronize()
        if device.type == "cuda":
            ctx.timings["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if history:
            log.info("geometry stage: %d steps, final loss %.4f, beta %.4f", cfg.iterations, history[-1]["loss"], history[-1]["beta"])
        return model

    def build_scene(
        self, model: SceneModel, ctx: RunContext, cfg: GeometryConfig, norm: SceneNormalisation, bounds: tuple[np.ndarray, np.ndarray]
    ) -> tuple[CompositeScene, list[int]]:
        """The composite scene of every object's field and the background's; which of them are refitted."""
        device, min_weight = ctx.compute.device, ctx.config.mesh.min_weight
        fields, trainable = [], []
        for k, seed in enumerate(ctx.seeds):
            ctx.check_cancelled()
            state = model.objects[seed.object_id]
            if seed.object_id not in ctx.dirty:
                fields.append(frozen(state.field, device))
                continue
            size = seed.hi - seed.lo
            box = grid_box(
                norm.to_scene(seed.lo - cfg.object_margin * size),
                norm.to_scene(seed.hi + cfg.object_margin * size),
                cfg.object_resolution,
                device,
            )
            volume = (
                state.volume if state.volume is not None else fuse_object(seed, ctx.keyframes, ctx.config.tsdf, device, ctx.compute.scale)
            )
            margin = max(cfg.carve_margin_m, box.voxel * norm.scale)
            init = object_sdf_init(volume, box, norm.to_map, norm.scale, min_weight, ctx.keyframes, seed.object_id, margin)
            fields.append(SdfGrid(box, init.to(device)))
            trainable.append(k)
        lo, hi = bounds
        scene_lo, scene_hi = norm.to_scene(lo), norm.to_scene(hi)
        background = model.background
        if background is not None and BACKGROUND_ID not in ctx.dirty and background.field is not None:
            fields.append(frozen(background.field, device))
        else:
            bg_box = grid_box(scene_lo, scene_hi, cfg.background_resolution, device)
            volume = background.volume if background is not None and background.volume is not None else None
            if volume is None:
                volume = fuse_background(ctx.keyframes, ctx.config.tsdf, device, (lo, hi), ctx.compute.scale)
            fields.append(SdfGrid(bg_box, background_sdf_init(volume, bg_box, norm.to_map, norm.scale, min_weight).to(device)))
            trainable.append(len(ctx.seeds))
        color = (
            model.appearance
            if model.appearance is not None
            else ColorNetwork(grid_box(scene_lo, scene_hi, cfg.feature_resolution, device), cfg.feature_dim, cfg.hidden_dim)
        )
        mixed = cfg.mixed_precision and device.type == "cuda"
        scene = CompositeScene(fields[:-1], fields[-1], color, cfg.beta_init, mixed).to(device)
        if model.log_beta is not None:
            with torch.no_grad():
                scene.density.log_beta.fill_(model.log_beta)
        return scene, trainable


def frozen(field: SdfGrid, device: torch.device) -> SdfGrid:
    """A copy of a kept field that renders but is not optimised (the model's own copy stays untouched)."""
    field = copy.deepcopy(field).to(device)
    field.values.requires_grad_(False)
    return field
