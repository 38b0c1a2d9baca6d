"""Stage `fuse`: a TSDF volume per object that must be refitted, and for the background.

Taken from the live map where it already fused this run's keyframes as they arrived, else fused now; the
observed geometry as it was measured; the `mesh` stage meshes it directly (preset
`tsdf`) or the `geometry` stage starts its fields from it.
"""

from __future__ import annotations

import logging

from dprecon_ros.core.scene_model import BACKGROUND_ID, SceneModel
from dprecon_ros.core.stages.base import RunContext, Stage, register_stage

log = logging.getLogger("dprecon_ros")


@register_stage
class FuseStage(Stage):
    name = "fuse"
    config_sections = ("tsdf",)

    def run(self, model: SceneModel, ctx: RunContext) -> SceneModel:
        seeds = ctx.dirty_seeds()
        for i, seed in enumerate(seeds):
            ctx.check_cancelled()
            ctx.progress(i / (len(seeds) + 1))
            state = model.objects[seed.object_id]
            state.volume = ctx.fused_volume(seed.object_id, seed)
            state.field = None  # a field fitted to the old observations no longer applies
        if BACKGROUND_ID in ctx.dirty and model.background is not None:
            ctx.check_cancelled()
            ctx.progress(len(seeds) / (len(seeds) + 1))
            model.background.volume = ctx.fused_volume(BACKGROUND_ID)
            model.background.field = None
        ctx.compute.synchronize()
        return model
