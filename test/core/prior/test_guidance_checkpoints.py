"""The stable-diffusion guidance loads a diffusers checkpoint the way real weights load, never downloads, and
says why when it cannot run."""

from __future__ import annotations

import pytest
import torch

from dprecon_ros.core.guidance.base import GuidanceUnavailable, GuidanceViews, Prompt, forget_loaded, make_guidance
from dprecon_ros.core.guidance.checkpoints import locate_checkpoint
from dprecon_ros.testing.tiny_diffusion import tiny_prior_config


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
    cfg = tiny_prior_config(tiny_checkpoint)
    guidance = make_guidance(cfg, torch.device("cpu"))
    assert make_guidance(cfg, torch.device("cpu")) is guidance  # loaded once per process, then kept
    assert guidance.unet.dtype == torch.float32 and guidance.unet.config.sample_size == 16
    v = views()
    loss = guidance.loss(v, Prompt("a 3D model of a mug"), 0.0)
    loss.backward()
    assert torch.isfinite(loss) and v.maps.grad.abs().sum() > 0
    assert set(guidance._embeddings) == {"a 3D model of a mug", ""}  # the empty negative prompt is the unconditional one


def test_each_run_draws_the_same_noise_from_the_kept_model(tiny_checkpoint):
    forget_loaded()
    cfg, v = tiny_prior_config(tiny_checkpoint), views()
    losses = []
    for _ in range(2):  # two stage runs: each gets the kept guidance, configured anew
        guidance = make_guidance(cfg, torch.device("cpu"))
        losses.append([float(guidance.loss(v, Prompt("a mug"), 0.0)) for _ in range(2)])
    assert losses[0][0] != losses[0][1]  # within a run the draws go on
    assert losses[0] == losses[1]  # a run starts from the configured seed, not where the last one stopped


def test_an_hf_id_resolves_from_the_local_cache_only(tiny_checkpoint, tmp_path):
    """A checkpoint placed in the Hugging Face cache layout is found by its id, offline."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-sd" / "snapshots" / "0123456789abcdef"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(tiny_checkpoint, target_is_directory=True)
    (cache / "models--someone--tiny-sd" / "refs").mkdir()
    (cache / "models--someone--tiny-sd" / "refs" / "main").write_text("0123456789abcdef")
    assert locate_checkpoint("someone/tiny-sd", str(cache)).resolve() == tiny_checkpoint.resolve()


class StubUnet(torch.nn.Module):
    """Noise predictions that say which half of the batch (unconditional, text) and which prompt they saw."""

    def __init__(self, dtype) -> None:
        super().__init__()
        self.dtype, self.seen = dtype, []

    def forward(self, x, t, encoder_hidden_states):
        self.seen.append((x.detach().clone(), t.clone()))
        return type("Out", (), {"sample": encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1).expand_as(x).clone()})()


def test_guidance_applies_cfg_with_the_negative_prompt_and_noises_at_the_drawn_timestep(tiny_checkpoint):
    forget_loaded()
    cfg = tiny_prior_config(tiny_checkpoint)
    guidance = make_guidance(cfg, torch.device("cpu"))
    guidance.unet = StubUnet(torch.float32)
    prompt = Prompt("a mug", "blurry")
    latents, eps = torch.zeros(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    t = torch.tensor([100, 900])
    out = guidance.predict_noise(latents, eps, t, prompt)
    text, negative = guidance.embed("a mug").mean().item(), guidance.embed("blurry").mean().item()
    assert torch.allclose(out, torch.tensor(negative + cfg.guidance_scale * (text - negative)), atol=1e-5)
    x, steps = guidance.unet.seen[-1]
    a = guidance.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.equal(steps, torch.cat([t, t])) and torch.allclose(x[:2], (1 - a).sqrt() * eps, atol=1e-6)  # z = 0: pure noise part
    later = tiny_prior_config(tiny_checkpoint)
    later.guidance_scale = 7.5
    assert make_guidance(later, torch.device("cpu")) is guidance and guidance.cfg.guidance_scale == 7.5  # kept model, new settings
    out = guidance.predict_noise(latents, eps, t, prompt)
    assert torch.allclose(out, torch.tensor(negative + 7.5 * (text - negative)), atol=1e-5)
    guidance.prediction = "v_prediction"  # a v-predicting UNet's output is turned into noise: sqrt(a) v + sqrt(1 - a) x_t
    v = guidance.predict_noise(latents, eps, t, Prompt("a mug", "a mug"))
    assert torch.allclose(v, a.sqrt() * text + (1 - a) * eps, atol=1e-5)
    forget_loaded()


def test_hub_ids_with_dots_are_looked_up_in_the_cache(tmp_path):
    with pytest.raises(GuidanceUnavailable, match="not in the local Hugging Face cache"):
        locate_checkpoint("someone/FLUX.1-dev", str(tmp_path))


def test_the_negative_prompt_is_the_unconditional_branch_of_classifier_free_guidance(tiny_checkpoint):
    forget_loaded()
    cfg, v = tiny_prior_config(tiny_checkpoint), views()
    losses = {}
    for negative in ("", "blurry, dark"):
        guidance = make_guidance(cfg, torch.device("cpu"))  # configured anew: the same noise draws for both
        losses[negative] = float(guidance.loss(v, Prompt("a mug", negative), 0.0))
    assert set(guidance._embeddings) == {"a mug", "", "blurry, dark"}
    assert losses[""] != losses["blurry, dark"]  # the same noise, another unconditional estimate
