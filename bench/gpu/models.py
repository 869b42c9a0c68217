"""Random-weight pipelines with the real architectures of SD-Turbo, SDXL(-Turbo) and FLUX.1-schnell.

The configs are the published ones (layer counts, widths, heads, text encoders, VAEs), so a forward
pass costs what the real model's costs; the weights are random, so the images are noise, which is all a
latency benchmark needs. Tokenizers are the tiny offline ones from tests/tiny_pipelines.py (their ids
fit the real vocabularies; prompts are padded to the real lengths, 77 CLIP and 256 T5 tokens).
Modules are built on the GPU directly in bf16 (FLUX alone is 12B parameters).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from tiny_pipelines import clip_tokenizer, t5_tokenizer  # noqa: E402

WORKLOADS = {  # name -> (family, side, steps, guidance)
    "sd-turbo": ("sd-turbo", 512, 1, 0.0),
    "sdxl-turbo": ("sdxl-turbo", 512, 4, 0.0),
    "sdxl": ("sdxl", 1024, 30, 5.0),
    "flux-schnell": ("flux-schnell", 1024, 4, 0.0),
}
# The FLOP bound on one H200, seconds per image at batch 1 (the project's performance reference,
# shared/reference/performance.md).
FLOP_BOUND_S = {"sd-turbo": 0.0042, "sdxl-turbo": 0.011, "sdxl": 0.53, "flux-schnell": 0.36}
DEVICE = "cuda"
SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}


@contextmanager
def weights():
    """Modules made on DEVICE in bf16 (schedulers and tokenizers stay outside: their tables are fp32 CPU)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(DEVICE):
            yield
    finally:
        torch.set_default_dtype(previous)


def _clip(hidden: int, layers: int, heads: int, act: str, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, hidden_act=act,
                            max_position_embeddings=77, projection_dim=projection or hidden, bos_token_id=0,
                            eos_token_id=1, pad_token_id=1)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _vae(latents: int = 4, scaling: float = 0.18215, flux: bool = False):
    from diffusers import AutoencoderKL

    extra = {"use_quant_conv": False, "use_post_quant_conv": False, "shift_factor": 0.1159} if flux else {}
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latents,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=2, scaling_factor=scaling, force_upcast=False, **extra)


def sd_turbo():
    """SD 2.1 architecture (OpenCLIP ViT-H text encoder, penultimate layer), as SD-Turbo."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    with weights():
        unet = UNet2DConditionModel(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                                    use_linear_projection=True)
        vae, text_encoder = _vae(), _clip(1024, 23, 16, "gelu")
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet,
                                   scheduler=EulerDiscreteScheduler(**SD_BETAS, timestep_spacing="trailing"),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def sdxl(turbo: bool = False):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    with weights():
        unet = UNet2DConditionModel(sample_size=64 if turbo else 128, block_out_channels=(320, 640, 1280),
                                    layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                                    attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                                    use_linear_projection=True, addition_embed_type="text_time",
                                    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
        vae, clip_l, clip_g = _vae(scaling=0.13025), _clip(768, 12, 12, "quick_gelu"), _clip(1280, 32, 20, "gelu", 1280)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(), unet=unet,
        scheduler=EulerDiscreteScheduler(**SD_BETAS, timestep_spacing="trailing" if turbo else "leading"))


def flux_schnell():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    with weights():
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                     num_heads=64, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32))
        vae, clip_l = _vae(16, 0.3611, flux=True), _clip(768, 12, 12, "quick_gelu")
        transformer = FluxTransformer2DModel()  # its defaults are FLUX.1's: 19 double and 38 single blocks
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=vae, text_encoder=clip_l,
                        tokenizer=clip_tokenizer(), text_encoder_2=t5, tokenizer_2=t5_tokenizer(max_length=256),
                        transformer=transformer)


def make(name: str):
    """The random-weight bf16 pipeline of workload `name`, its modules on DEVICE."""
    torch.manual_seed(0)
    return {"sd-turbo": sd_turbo, "sdxl-turbo": lambda: sdxl(turbo=True), "sdxl": sdxl,
            "flux-schnell": flux_schnell}[name]()


def build(name: str, folder: Path) -> Path:
    """Save a random-weight bf16 pipeline of workload `name` to `folder`."""
    pipe = make(name)
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe
    torch.cuda.empty_cache()
    return folder
