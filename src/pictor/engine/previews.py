"""Cheap previews: a linear map from a model's latents to RGB, fitted to that model's own VAE.

A preview every few steps must cost nothing next to a denoising step, so it never runs the VAE
decoder: each latent pixel's channels go through a (channels + 1) x 3 matrix. The matrix is not a
table of published numbers per family but a least-squares fit, made once at load, between smooth
random colour fields and what the model's VAE encoder makes of them (scaled and shifted the way
the pipeline holds its latents). So any VAE, a fine-tuned one or a random test one, gets a projection
that matches it, through the same code path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FIT_IMAGES = 12
FIT_LATENT_SIDE = 16  # latent pixels per side of each fitting image


@torch.no_grad()
def fit_latent_rgb(vae, vae_scale_factor: int) -> torch.Tensor:
    """(channels + 1, 3), float32 on the CPU: latents as the pipeline holds them -> RGB in [-1, 1]."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(FIT_IMAGES, 3, 4, 4, generator=generator) * 2 - 1
    side = FIT_LATENT_SIDE * vae_scale_factor
    images = F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    parameter = next(vae.parameters())
    latents = vae.encode(images.to(parameter.device, parameter.dtype)).latent_dist.mode().float().cpu()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    latents = (latents - shift) * vae.config.scaling_factor
    targets = F.avg_pool2d(images, vae_scale_factor)
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    y = targets.permute(0, 2, 3, 1).reshape(-1, 3)
    return torch.linalg.lstsq(x, y).solution


def latents_to_previews(latents: torch.Tensor, projection: torch.Tensor) -> list[Image.Image]:
    """One RGB image per row of (batch, channels, h, w) latents, at latent resolution."""
    flat = latents.detach().float().cpu().permute(0, 2, 3, 1)
    rgb = flat @ projection[:-1] + projection[-1]
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return [Image.fromarray(np.ascontiguousarray(row), "RGB") for row in pixels]
