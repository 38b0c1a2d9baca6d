"""Stage `geometry`: DP-Recon stage 1, compositional SDF fields fitted to the keyframes by volume rendering.

Fields start from the fused TSDF (each object's depth-carved visual hull with the TSDF where it observed the
surface, the background as a shell behind its surfaces, all redistanced) and are fitted with the paper's
losses. Each object lives in its canonical cube (its box, grown away from the cameras where its back was
never seen, at 0.8 of the cube's side); the background grid is padded beyond the observed room and closed
by the bounding sphere. The scene normalisation, the fields, the colour network and β are kept in the scene
model: a later run refits only the objects whose observations changed, rendering the others frozen.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging

import numpy as np
import torch

from dprecon_ros.config_fields import with_sizes
from dprecon_ros.core.fields.box import GridBox
from dprecon_ros.core.fields.composite import ColorNetwork, CompositeScene
from dprecon_ros.core.fields.init import background_sdf_init, object_sdf_init
from dprecon_ros.core.fields.pyramid import CANONICAL_FILL, PackedObjects, PyramidSdf, level_shapes
from dprecon_ros.core.fusion.fuse import background_bounds, object_box
from dprecon_ros.core.render.rays import build_ray_pool
from dprecon_ros.core.scene_model import BACKGROUND_ID, SceneModel
from dprecon_ros.core.stages.base import RunContext, Stage, register_stage
from dprecon_ros.core.stages.geometry.config import GeometryConfig
from dprecon_ros.core.stages.geometry.optimise import FitProblem, optimise
from dprecon_ros.core.types import Keyframe, ObjectSeed, SceneNormalisation

log = logging.getLogger("dprecon_ros")
SCENE_RADIUS_MARGIN = 1.1  # the unit sphere holds the scene's bounds with this margin
MIN_GRID_RESOLUTION = 8
BACKGROUND_PAD_CELLS = 2  # the background grid reaches this many cells beyond the truncation band


def grid_box(lo: np.ndarray, hi: np.ndarray, resolution: int, device: torch.device) -> GridBox:
    size = np.maximum(hi - lo, 1e-3)
    voxel = float(size.max()) / (resolution - 1)
    shape = tuple(int(n) for n in np.maximum(np.ceil(size / voxel).astype(int) + 1, 2))
    return GridBox(torch.tensor(lo, dtype=torch.float32, device=device), voxel, shape)


def canonical_cube(lo: np.ndarray, hi: np.ndarray, resolution: int, device: torch.device) -> GridBox:
    """DP-Recon's canonical cube of an object: centred on its box, the box's longest side at 0.8 of the cube."""
    side = float(np.max(hi - lo)) / CANONICAL_FILL
    origin = (lo + hi) / 2 - side / 2
    return GridBox(torch.tensor(origin, dtype=torch.float32, device=device), side / (resolution - 1), (resolution,) * 3)


def grown_box(
    seed: ObjectSeed, keyframes: list[Keyframe], margin: float, growth: float, growth_max_m: float, up: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The object's observed box with a margin, grown on the side facing away from the cameras that saw it:
    its back, never observed, may reach further than the points say. The growth is `growth` of its size
    (at most `growth_max_m`) times how one-sided the views were, the length of the mean unit direction
    from the cameras to the object: views from all round leave no back to grow. Growth is horizontal (axis
    `up` is up): what an object stands on was seen around it and bounds it below."""
    size = seed.hi - seed.lo
    lo, hi = seed.lo - margin * size, seed.hi + margin * size
    centres = np.array([kf.frame.T_world_camera[:3, 3] for kf in keyframes if seed.object_id in kf.instance_to_object.values()])
    if not len(centres) or growth <= 0:
        return lo, hi
    directions = (seed.lo + seed.hi) / 2 - centres
    directions[:, up] = 0.0
    directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-9)
    extend = min(growth * float(np.max(size)), growth_max_m) * directions.mean(axis=0)
    return np.minimum(lo, lo + extend), np.maximum(hi, hi + extend)


def sized(cfg: GeometryConfig, ctx: RunContext) -> GeometryConfig:
    """The configuration at the run's size: the CPU preset on a CPU; grids shrink on a CPU retry after the
    device ran out of memory."""
    if ctx.compute.device.type == "cpu" and cfg.cpu_preset:
        log.info(
            "geometry stage on the CPU: sizes from geometry.cpu (%d steps of %d rays); geometry.cpu_preset:=false uses geometry.*",
            cfg.cpu.iterations,
            cfg.cpu.rays_per_batch,
        )
        cfg = with_sizes(cfg, cfg.cpu)
    if not ctx.compute.is_fallback:
        return cfg
    return dataclasses.replace(
        cfg,
        object_resolution=ctx.scaled(cfg.object_resolution, MIN_GRID_RESOLUTION),
        background_resolution=ctx.scaled(cfg.background_resolution, MIN_GRID_RESOLUTION),
        feature_resolution=ctx.scaled(cfg.feature_resolution, MIN_GRID_RESOLUTION),
    )


def intersections(boxes: list[tuple[np.ndarray, np.ndarray]], device: torch.device) -> torch.Tensor:
    """(P, 2, 3) lo/hi of every non-empty pairwise intersection of boxes (where the overlap term samples)."""
    found = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            lo, hi = np.maximum(boxes[i][0], boxes[j][0]), np.minimum(boxes[i][1], boxes[j][1])
            if np.all(hi > lo):
                found.append(np.stack([lo, hi]))
    return torch.as_tensor(np.array(found, dtype=np.float32).reshape(-1, 2, 3), device=device)


def normalisation_for(lo: np.ndarray, hi: np.ndarray) -> SceneNormalisation:
    return SceneNormalisation((lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2 * SCENE_RADIUS_MARGIN))


def still_holds(norm: SceneNormalisation | None, lo: np.ndarray, hi: np.ndarray) -> bool:
    """True if the scene's current bounds still lie inside the unit sphere of an earlier normalisation."""
    if norm is None:
        return False
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return bool(np.all(np.linalg.norm(norm.to_scene(corners), axis=1) <= 1.0))


@register_stage
class GeometryStage(Stage):
    name = "geometry"
    # besides its own section it reads fusion (volumes it fuses itself), mesh.min_weight, frames.min_depth_m and
    # scene_graph.up_axis
    config_sections = ("geometry", "tsdf", "mesh", "frames", "scene_graph")

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
        scene, fit = self.build_scene(model, ctx, cfg, norm, (lo, hi))
        with flushed_denormals(device):
            history = optimise(cfg, scene, fit, ctx)
        for k in fit.trainable_objects:
            model.objects[ctx.seeds[k].object_id].field = scene.objects.unpack(k)
        if model.background is not None and fit.background_trainable:
            model.background.field = scene.background
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
    ) -> tuple[CompositeScene, FitProblem]:
        """The composite scene of every object's field and the background's, and what the fit may move."""
        device, min_weight = ctx.compute.device, ctx.config.mesh.min_weight
        up = "xyz".index(ctx.config.scene_graph.up_axis)
        shapes = level_shapes((cfg.object_resolution,) * 3, cfg.pyramid_levels)
        fields, trainable, boxes = [], [], []
        for k, seed in enumerate(ctx.seeds):
            ctx.check_cancelled()
            state = model.objects[seed.object_id]
            lo, hi = grown_box(seed, ctx.keyframes, cfg.object_margin, cfg.unseen_growth, cfg.unseen_growth_max_m, up)
            boxes.append((norm.to_scene(lo), norm.to_scene(hi)))
            if seed.object_id not in ctx.dirty:
                if [tuple(p.shape) for p in state.field.levels] == shapes:
                    fields.append(frozen(state.field, device))
                    continue
                ctx.dirty.add(seed.object_id)  # a field of another layout (an older map): refit it
            cube = canonical_cube(boxes[-1][0], boxes[-1][1], cfg.object_resolution, device)
            fused = state.volume if state.volume is not None else ctx.fused_volume(seed.object_id, seed)
            volume = fused.to_dense(object_box(seed, ctx.config.tsdf))
            margin = max(cfg.carve_margin_m, cube.voxel * norm.scale)
            # the hull may fill unseen space but not reach below the object's lowest observed point: what it
            # stands on was seen around it
            floor = lo.copy()
            floor[up] = seed.lo[up]
            init = object_sdf_init(
                volume,
                cube,
                norm.to_map,
                norm.scale,
                min_weight,
                ctx.keyframes,
                seed.object_id,
                margin,
                (floor, hi),
                cfg.hull_max_depth_m,
                ctx.config.mesh.min_component_fraction,
                up,
            )
            fields.append(PyramidSdf.from_values(cube, init.to(device), cfg.pyramid_levels))
            trainable.append(k)
        background = model.background
        keep_background = (
            background is not None
            and BACKGROUND_ID not in ctx.dirty
            and background.field is not None
            and len(background.field.levels) == len(level_shapes(background.field.box.shape, cfg.pyramid_levels))
        )
        if keep_background:
            bg_field = frozen(background.field, device)
        else:
            if background is not None:
                ctx.dirty.add(BACKGROUND_ID)
            fused = background.volume if background is not None and background.volume is not None else None
            if fused is None:
                fused = ctx.fused_volume(BACKGROUND_ID)
            pad = ctx.config.tsdf.truncation_voxels * ctx.config.tsdf.background_voxel_m
            volume = fused.to_dense((bounds[0] - pad, bounds[1] + pad)) if fused is not None else None
            bg_box = self.background_box(cfg, norm, bounds, volume.trunc if volume is not None else 0.0, device)
            init = background_sdf_init(volume, bg_box, norm.to_map, norm.scale, min_weight)
            bg_field = PyramidSdf.from_values(bg_box, init.to(device), cfg.pyramid_levels)
        scene_lo, scene_hi = norm.to_scene(bounds[0]), norm.to_scene(bounds[1])
        color = (
            model.appearance
            if model.appearance is not None
            else ColorNetwork(
                grid_box(scene_lo, scene_hi, cfg.feature_resolution, device),
                cfg.feature_dim,
                cfg.hidden_dim,
                torch.Generator().manual_seed(cfg.seed),  # the weights are made on the CPU, then moved
            )
        )
        mixed = cfg.mixed_precision and device.type == "cuda"
        objects = PackedObjects(fields, [k in trainable for k in range(len(fields))]) if fields else None
        scene = CompositeScene(objects, bg_field, color, cfg.beta_init_m / norm.scale, mixed).to(device)
        if model.log_beta is not None:
            with torch.no_grad():
                scene.density.log_beta.fill_(model.log_beta)
        pool = build_ray_pool(ctx.keyframes, [s.object_id for s in ctx.seeds], norm, device, ctx.config.frames.min_depth_m)
        fit = FitProblem(
            pool=pool,
            metric_depth=bool(torch.isfinite(pool.distance).any()),
            trainable_objects=trainable,
            background_trainable=not keep_background,
            overlap_boxes=intersections(boxes, device),
            object_boxes=torch.as_tensor(np.array(boxes, dtype=np.float32).reshape(-1, 2, 3), device=device),
            metres_per_unit=norm.scale,
        )
        return scene, fit

    @staticmethod
    def background_box(
        cfg: GeometryConfig, norm: SceneNormalisation, bounds: tuple[np.ndarray, np.ndarray], trunc_m: float, device: torch.device
    ) -> GridBox:
        """The background grid: the observed room padded by the truncation distance and two cells, so walls
        and floor lie inside it with room behind them."""
        lo, hi = norm.to_scene(bounds[0]), norm.to_scene(bounds[1])
        cell = float(np.max(hi - lo)) / (cfg.background_resolution - 1)
        pad = trunc_m / norm.scale + BACKGROUND_PAD_CELLS * cell
        return grid_box(lo - pad, hi + pad, cfg.background_resolution, device)


def composite_of(model: SceneModel, object_ids: list[int], device: torch.device) -> CompositeScene:
    """The fitted scene held by a model, all fields frozen: for renders of the result (checks, the prior)."""
    fields = [frozen(model.objects[oid].field, device) for oid in object_ids]
    objects = PackedObjects(fields, [False] * len(fields)) if fields else None
    scene = CompositeScene(objects, frozen(model.background.field, device), copy.deepcopy(model.appearance).to(device), 1.0).to(device)
    with torch.no_grad():
        scene.density.log_beta.fill_(model.log_beta)
    return scene.requires_grad_(False)


@contextlib.contextmanager
def flushed_denormals(device: torch.device):
    """Denormal gradients slow CPU steps many times over: flush them while the fit runs, and only then (other
    libraries' native code does not expect it). The flag holds for the calling thread only, not for torch's
    worker threads, so the density also keeps its values out of the denormal range at the source."""
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flush:
            torch.set_flush_denormal(False)


def frozen(field: PyramidSdf, device: torch.device) -> PyramidSdf:
    """A copy of a kept field that renders but is not optimised (the model's own copy stays untouched)."""
    field = copy.deepcopy(field).to(device)
    for p in field.levels:
        p.requires_grad_(False)
    return field
