"""Stage `fuse`: a TSDF volume per object that must be refitted, and for the background.

Seconds on a CPU, the observed geometry as it was measured; the `mesh` stage meshes it directly (preset
`tsdf`) or the `geometry` stage starts its fields from it.
"""

from __future__ import annotations

import logging

from dprecon_ros.core.fusion.fuse import fuse_background, fuse_object
from dprecon_ros.core.scene_model import BACKGROUND_ID, SceneModel
from dprecon_ros.core.stages.base import RunContext, Stage, register_stage

log = logging.getLogger("dprecon_ros")


@register_stage
class FuseStage(Stage):
    name = "fuse"
    config_sections = ("tsdf",)

    def run(self, model: SceneModel, ctx: RunContext) -> SceneModel:
        cfg, device, scale = ctx.config.tsdf, ctx.compute.device, ctx.compute.scale
        seeds = ctx.dirty_seeds()
        for i, seed in enumerate(seeds):
            ctx.check_cancelled()
            ctx.progress(i / (len(seeds) + 1))
            state = model.objects[seed.object_id]
            state.volume = fuse_object(seed, ctx.keyframes, cfg, device, scale, ctx.check_cancelled)
            state.field = None  # a field fitted to the old observations no longer applies
        if BACKGROUND_ID in ctx.dirty and model.background is not None:
            ctx.check_cancelled()
            ctx.progress(len(seeds) / (len(seeds) + 1))
            model.background.volume = fuse_background(ctx.keyframes, cfg, device, size_scale=scale, check_cancelled=ctx.check_cancelled)
            model.background.field = None
        ctx.compute.synchronize()
        return model
