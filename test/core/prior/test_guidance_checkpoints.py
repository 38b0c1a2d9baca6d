"""The stable-diffusion guidance loads a diffusers checkpoint the way real weights load, never downloads, and
says why when it cannot run."""

from __future__ import annotations

import pytest
import torch

from dprecon_ros.core.guidance.base import GuidanceUnavailable, GuidanceViews, Prompt, forget_loaded, make_guidance
from dprecon_ros.core.guidance.checkpoints import locate_checkpoint
from dprecon_ros.core.stages.prior.config import PriorConfig


def tiny_config(path) -> PriorConfig:
    cfg = PriorConfig(model=str(path))
    cfg.latent_size = 16
    return cfg


def views(size: int = 32, batch: int = 2) -> GuidanceViews:
    maps = torch.rand(batch, 4, size, size, requires_grad=True)
    return GuidanceViews(maps, torch.ones(batch, 1, size, size), torch.eye(4).repeat(batch, 1, 1), torch.full((batch,), 0.7), 1, "mug")


def test_a_missing_directory_or_uncached_model_turns_the_prior_off_with_the_reason(tmp_path):
    with pytest.raises(GuidanceUnavailable, match="no checkpoint directory"):
        locate_checkpoint(str(tmp_path / "nowhere"))
    pytest.importorskip("huggingface_hub")
    with pytest.raises(GuidanceUnavailable, match="not in the local Hugging Face cache"):
        locate_checkpoint("stabilityai/stable-diffusion-2-1-base", str(tmp_path / "empty_cache"))
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(GuidanceUnavailable, match="lacks text_encoder, tokenizer, scheduler"):
        locate_checkpoint(str(tmp_path / "partial"))


def test_tiny_checkpoint_loads_once_and_its_sds_loss_reaches_the_maps(tiny_checkpoint):
    forget_loaded()
    cfg = tiny_config(tiny_checkpoint)
    guidance = make_guidance(cfg, torch.device("cpu"))
    assert make_guidance(cfg, torch.device("cpu")) is guidance  # loaded once per process, then kept
    assert guidance.unet.dtype == torch.float32 and guidance.unet.config.sample_size == 16
    v = views()
    loss = guidance.loss(v, Prompt("a 3D model of a mug"), 0.0)
    loss.backward()
    assert torch.isfinite(loss) and v.maps.grad.abs().sum() > 0
    assert set(guidance._embeddings) == {"a 3D model of a mug", ""}  # the empty negative prompt is the unconditional one


def test_an_hf_id_resolves_from_the_local_cache_only(tiny_checkpoint, tmp_path):
    """A checkpoint placed in the Hugging Face cache layout is found by its id, offline."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-sd" / "snapshots" / "0123456789abcdef"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(tiny_checkpoint, target_is_directory=True)
    (cache / "models--someone--tiny-sd" / "refs").mkdir()
    (cache / "models--someone--tiny-sd" / "refs" / "main").write_text("0123456789abcdef")
    assert locate_checkpoint("someone/tiny-sd", str(cache)).resolve() == tiny_checkpoint.resolve()
