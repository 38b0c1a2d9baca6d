"""The guidance interface and its registry.

A guidance receives a batch of rendered views of one object (normal map and opacity, the per-pixel
visibility weight, the cameras they were rendered from) and the prompt, and returns a scalar loss whose
gradient pulls the renders towards what the prior expects. Models are loaded once per process and kept:
`make_guidance` returns the same instance for the same settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dprecon_ros.core.stages.prior.config import PriorConfig


class GuidanceUnavailable(RuntimeError):
    """The guidance cannot run here (no weights in the local cache, a missing package); the message says why."""


@dataclass
class Prompt:
    text: str
    negative: str = ""


@dataclass
class GuidanceViews:
    """Rendered views of one object (or the background).

    maps: (B, 4, H, W) in [0, 1], camera-space normal (xyz * 0.5 + 0.5, background (0.5, 0.5, 1)) and opacity;
    weight: (B, 1, H, W) the SDS weight per pixel from the visibility grid (0 where the keyframes saw it fully);
    T_world_camera: (B, 4, 4) camera poses in the map frame (OpenCV optical axes: x right, y down, z forward);
    fov_y_rad: (B,) vertical field of view; object_id, label: what was rendered (0 = background).
    """

    maps: torch.Tensor
    weight: torch.Tensor
    T_world_camera: torch.Tensor
    fov_y_rad: torch.Tensor
    object_id: int
    label: str


class Guidance:
    """Base of the guidances: `loss(views, prompt, progress)`, progress the fraction of the prior's steps done
    (what timestep annealing follows)."""

    name = ""
    cfg: PriorConfig

    def configure(self, cfg: PriorConfig) -> None:
        """The run's settings (guidance scale, timesteps, sizes); the loaded model stays."""
        self.cfg = cfg

    def available(self) -> bool:
        return True

    def loss(self, views: GuidanceViews, prompt: Prompt, progress: float) -> torch.Tensor:
        raise NotImplementedError

    def supports_rgb(self) -> bool:
        """Whether `rgb_loss` works (the texture stage's SDS on colour renders)."""
        return False

    def prepare_rgb(self) -> None:
        """Load what `rgb_loss` needs now, raising GuidanceUnavailable with the reason, so a model that cannot
        score colour is found before a stage starts, not in its first step."""

    def rgb_loss(self, images: torch.Tensor, weight: torch.Tensor, prompt: Prompt, progress: float) -> torch.Tensor:
        """SDS on colour renders: images (B, 3, H, W) in [0, 1], weight (B, 1, H, W) per pixel (0 where the
        colour was observed)."""
        raise NotImplementedError(f"{self.name} scores no colour renders")

    def describe(self) -> str:
        """One line for logs and the status: what scores the renders."""
        return self.name


GuidanceFactory = Callable[[PriorConfig, torch.device], Guidance]
GUIDANCES: dict[str, GuidanceFactory] = {}
_loaded: dict[tuple, Guidance] = {}
_loading = threading.Lock()


def register_guidance(name: str, factory: GuidanceFactory) -> None:
    """Register (or replace) a guidance; instances loaded under the old registration are dropped."""
    with _loading:
        GUIDANCES[name] = factory
        for key in [k for k in _loaded if k[0] == name]:
            del _loaded[key]


def make_guidance(cfg: PriorConfig, device: torch.device) -> Guidance:
    """The configured guidance on `device`, loaded once per process and kept (a checkpoint takes seconds to
    load and gigabytes of memory). Raises GuidanceUnavailable with the reason when it cannot run here."""
    from dprecon_ros.core.guidance import stable_diffusion  # noqa: F401  (registers the built-in guidance; imports diffusers lazily)

    if cfg.guidance not in GUIDANCES:
        raise GuidanceUnavailable(f"no guidance named {cfg.guidance!r} (have: {', '.join(sorted(GUIDANCES)) or 'none'})")
    key = (cfg.guidance, cfg.model, cfg.cache_dir, str(device))
    with _loading:
        if key not in _loaded:
            _loaded[key] = GUIDANCES[cfg.guidance](cfg, device)
        guidance = _loaded[key]
    guidance.configure(cfg)  # a kept model with this run's settings
    return guidance


def guidance_available(cfg: PriorConfig) -> bool:
    """Whether the configured guidance could run here (its weights are where `prior.model` says), without
    loading it: part of an object's fingerprint, so weights that appear later refit what ran without them."""
    from dprecon_ros.core.guidance import stable_diffusion  # noqa: F401  (registers the built-in guidance)
    from dprecon_ros.core.guidance.checkpoints import locate_checkpoint

    if cfg.guidance not in GUIDANCES:
        return False
    if cfg.guidance != "stable-diffusion":
        return True
    try:
        locate_checkpoint(cfg.model, cfg.cache_dir)
    except GuidanceUnavailable:
        return False
    return True


def forget_loaded() -> None:
    """Drop the kept guidances (tests; a node that changes its model)."""
    with _loading:
        _loaded.clear()
