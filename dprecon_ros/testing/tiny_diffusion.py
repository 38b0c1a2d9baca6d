"""A Stable-Diffusion-architecture checkpoint with random weights, small enough for CPU tests.

Built from configs (no download) and saved with `save_pretrained`, so tests load it through exactly the path
real weights take (`prior.model` pointing at a directory). It scores nothing meaningfully: tests use it for
the plumbing and the SDS arithmetic, never for quality.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

from dprecon_ros.core.stages.prior.config import PriorConfig

SAMPLE_SIZE = 16  # the UNet's latent size: SDS runs at it
SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def tiny_vocab() -> dict[str, int]:
    """Characters, alone and word-final: with no merges CLIP's BPE spells every word out letter by letter."""
    symbols = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*symbols, *(c + "</w>" for c in symbols), *SPECIAL]
    return {token: i for i, token in enumerate(tokens)}


def build_tiny_checkpoint(directory: Path, sample_size: int = SAMPLE_SIZE, seed: int = 0) -> Path:
    """Save a tiny UNet, VAE, CLIP text encoder, tokenizer and DDPM scheduler under `directory`."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    width = 32
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=width,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=8,
        sample_size=sample_size * 2,
    )
    vocab = tiny_vocab()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=width,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab[SPECIAL[0]],
            eos_token_id=vocab[SPECIAL[1]],
            pad_token_id=vocab[SPECIAL[1]],
        )
    )
    tokenizer = CLIPTokenizer(
        vocab=vocab, merges=[], unk_token=SPECIAL[1], bos_token=SPECIAL[0], eos_token=SPECIAL[1], pad_token=SPECIAL[1]
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, clip_sample=False
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory)
    return directory


def tiny_prior_config(checkpoint: Path | str) -> PriorConfig:
    """The prior's config for a checkpoint of `build_tiny_checkpoint`, with latents at its UNet's size."""
    return PriorConfig(model=str(checkpoint), latent_size=SAMPLE_SIZE)
