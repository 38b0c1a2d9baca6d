"""`stable-diffusion` guidance: SDS with a Stable Diffusion checkpoint through diffusers.

The UNet, text encoder, tokenizer and scheduler are read from the checkpoint's directory (fp16 on CUDA, fp32 on
the CPU) once per process; text embeddings are kept per prompt. Geometry SDS feeds the rendered maps as latents
directly; the VAE is loaded only when colour renders are scored (the texture stage), which it encodes to latents.
"""

from __future__ import annotations

import logging

import torch

from dprecon_ros.core.guidance import sds
from dprecon_ros.core.guidance.base import Guidance, GuidanceUnavailable, GuidanceViews, Prompt, register_guidance
from dprecon_ros.core.guidance.checkpoints import locate_checkpoint
from dprecon_ros.core.stages.prior.config import PriorConfig

log = logging.getLogger("dprecon_ros")
LATENT_CHANNELS = 4  # normal xyz + opacity
PREDICTIONS = ("epsilon", "v_prediction")  # what the UNet predicts (SD 2.1-base: epsilon; SD 2.1-768: v)


class StableDiffusionGuidance(Guidance):
    name = "stable-diffusion"

    def __init__(self, cfg: PriorConfig, device: torch.device) -> None:
        path = locate_checkpoint(cfg.model, cfg.cache_dir)
        try:
            from diffusers import DDPMScheduler, UNet2DConditionModel
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as exc:
            raise GuidanceUnavailable(f"diffusers/transformers are not installed ({exc})") from exc
        self.device = device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.model = cfg.model
        try:
            self.unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=self.dtype, local_files_only=True)
            self.text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=self.dtype, local_files_only=True)
            self.tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
            scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=True)
        except Exception as exc:  # safetensors, config and version errors alike: the prior is off, with the reason
            raise GuidanceUnavailable(f"cannot load the checkpoint at {path}: {type(exc).__name__}: {exc}") from exc
        if self.unet.config.in_channels != LATENT_CHANNELS:
            raise GuidanceUnavailable(f"{path}: the UNet takes {self.unet.config.in_channels} channels, SDS on normal maps needs 4")
        self.unet.to(device).eval().requires_grad_(False)
        self.text_encoder.to(device).eval().requires_grad_(False)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        self.train_steps = int(scheduler.config.num_train_timesteps)
        self.prediction = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction not in PREDICTIONS:
            raise GuidanceUnavailable(f"{path}: the scheduler's prediction_type {self.prediction!r} is not one of {PREDICTIONS}")
        self.cfg = cfg
        self.path = path
        self._vae = None
        self._embeddings: dict[str, torch.Tensor] = {}
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        log.info("prior: %s loaded from %s (%s on %s)", cfg.model, path, str(self.dtype).removeprefix("torch."), device)

    def configure(self, cfg: PriorConfig) -> None:
        """Also restarts the noise and timestep draws from `prior.seed`: the model is kept across runs, and a run's
        draws must not depend on how many came before it in the process (two runs of one map give one result)."""
        super().configure(cfg)
        self.generator.manual_seed(cfg.seed)

    def describe(self) -> str:
        return f"{self.name} ({self.model})"

    @torch.no_grad()
    def embed(self, text: str) -> torch.Tensor:
        """(1, tokens, width) text embedding, computed once per prompt."""
        if text not in self._embeddings:
            length = min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)
            ids = self.tokenizer([text], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids.to(
                self.device
            )
            self._embeddings[text] = self.text_encoder(ids)[0]
        return self._embeddings[text]

    def loss(self, views: GuidanceViews, prompt: Prompt, progress: float) -> torch.Tensor:
        size = self.cfg.latent_size
        latents = sds.as_latents(views.maps.to(self.device), size)
        weight = sds.latent_weight(views.weight.to(self.device), size)
        batch = len(latents)
        t = sds.draw_timesteps(batch, self.cfg.t_min, self.cfg.t_max, progress, self.train_steps, self.generator, self.device)
        eps = torch.randn(latents.shape, generator=self.generator, device=self.device)
        eps_hat = self.predict_noise(latents.detach(), eps, t, prompt)
        gradient = sds.sds_gradient(eps_hat, eps, t, self.alphas_cumprod, weight)
        return sds.sds_loss(latents, gradient)

    def supports_rgb(self) -> bool:
        return (self.path / "vae").is_dir()

    def prepare_rgb(self) -> None:
        self.vae()

    def vae(self):
        """The checkpoint's VAE, loaded on first use and kept."""
        if self._vae is None:
            from diffusers import AutoencoderKL

            try:
                vae = AutoencoderKL.from_pretrained(self.path, subfolder="vae", torch_dtype=self.dtype, local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - reported as the guidance being unable to score colour
                raise GuidanceUnavailable(f"cannot load the VAE of {self.path}: {type(exc).__name__}: {exc}") from exc
            self._vae = vae.to(self.device).eval().requires_grad_(False)
        return self._vae

    def rgb_loss(self, images: torch.Tensor, weight: torch.Tensor, prompt: Prompt, progress: float) -> torch.Tensor:
        vae = self.vae()
        x = images.to(self.device) * 2.0 - 1.0
        latents = vae.encode(x.to(self.dtype)).latent_dist.mean.float() * float(vae.config.scaling_factor)
        size = latents.shape[-1]
        w = sds.latent_weight(weight.to(self.device).float(), size)
        batch = len(latents)
        t = sds.draw_timesteps(batch, self.cfg.t_min, self.cfg.t_max, progress, self.train_steps, self.generator, self.device)
        eps = torch.randn(latents.shape, generator=self.generator, device=self.device)
        eps_hat = self.predict_noise(latents.detach(), eps, t, prompt)
        return sds.sds_loss(latents, sds.sds_gradient(eps_hat, eps, t, self.alphas_cumprod, w))

    @torch.no_grad()
    def predict_noise(self, latents: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """The UNet's noise estimate with classifier-free guidance (negative prompt as the unconditional one)."""
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents.float() + (1 - a).sqrt() * eps
        batch = len(latents)
        text = self.embed(prompt.text).expand(batch, -1, -1)
        uncond = self.embed(prompt.negative).expand(batch, -1, -1)
        out = self.unet(
            torch.cat([noisy, noisy]).to(self.dtype), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, text])
        ).sample.float()
        if self.prediction == "v_prediction":  # v = sqrt(a) eps - sqrt(1 - a) x0, so eps = sqrt(a) v + sqrt(1 - a) x_t
            both = torch.cat([a, a])
            out = both.sqrt() * out + (1 - both).sqrt() * torch.cat([noisy, noisy])
        eps_uncond, eps_text = out.chunk(2)
        return eps_uncond + self.cfg.guidance_scale * (eps_text - eps_uncond)


register_guidance(StableDiffusionGuidance.name, StableDiffusionGuidance)
