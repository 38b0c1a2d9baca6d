"""Configuration of the reconstruction pipeline: which stages, when, and where results go."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field

# reconstruction.backend names a stage list; `full` is DP-Recon
PRESETS: dict[str, list[str]] = {
    "tsdf": ["fuse", "mesh"],
    "neural": ["fuse", "geometry", "mesh"],
    "full": ["fuse", "geometry", "prior", "mesh", "texture"],
}


@dataclass
class ReconstructionConfig:
    backend: str = config_field(
        "tsdf",
        "preset stage list: tsdf = fuse+mesh, neural = fuse+geometry+mesh, full = fuse+geometry+prior+mesh+texture (DP-Recon)",
        choices=tuple(PRESETS),
    )
    stages: list[str] = config_field([], "stages to run in order (fuse, geometry, mesh, ...); empty = the backend preset's list")
    period_s: float = config_field(15.0, "seconds between periodic reconstructions; 0 = only on demand", (0.0, 86400.0))
    min_keyframes: int = config_field(3, "a run needs at least this many keyframes", (1, 10000))
    export_dir: str = config_field("", "if set, every run that changed the map exports its meshes and scene graph here")
    max_queued_goals: int = config_field(
        8,
        "~/reconstruct goals held at once, running or waiting for the run before them; more are rejected at once "
        "(each held goal occupies an executor thread, sized from this at start-up)",
        (1, 64),
        live=False,
    )
    cancel_timeout_s: float = config_field(
        1.0,
        "seconds a cancelled run (reset, shutdown) is waited for before the node goes on without it; Ctrl-C must end the node within 2 s",
        (0.1, 600.0),
    )

    def stage_names(self) -> list[str]:
        return list(self.stages) if self.stages else list(PRESETS[self.backend])
