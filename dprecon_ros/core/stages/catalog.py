"""The built-in stages, registered by name; `make_stages` turns a configured list into instances."""

from __future__ import annotations

from dprecon_ros.config_fields import ConfigError
from dprecon_ros.core.stages.base import STAGES, Stage
from dprecon_ros.core.stages.fuse import FuseStage
from dprecon_ros.core.stages.geometry.stage import GeometryStage
from dprecon_ros.core.stages.mesh import MeshStage
from dprecon_ros.core.stages.prior.stage import PriorStage
from dprecon_ros.core.stages.texture import TextureStage

BUILT_IN = (FuseStage, GeometryStage, PriorStage, MeshStage, TextureStage)


def make_stages(names: list[str]) -> list[Stage]:
    """Instances of the named stages, in order; a ConfigError that says what is unknown."""
    if not names:
        raise ConfigError("the stage list is empty")
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ConfigError(f"stages not available: {', '.join(unknown)} (have: {', '.join(sorted(STAGES))})")
    return [STAGES[n]() for n in names]
