"""Tiny random-weight diffusers pipelines of every family Pictor serves, built offline.

Each builder makes the real diffusers pipeline class with the real component classes, only with
widths of a few channels, and saves it with `save_pretrained`, so the folder is loaded exactly as an
operator's model is. The tokenizers are built here from a few words (no download): CLIP from a tiny
vocab/merges pair, T5 from a `tokenizers` Unigram model. `bench/gpu` reuses the tokenizers for its
full-size random-weight models.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
WORDS = ("a an the red green blue yellow black white cat dog circle square triangle on in of with make it "
         "photo painting small big background").split()
# The families tests/engine and tests/api build (see pictor.engine.families for what each serves).
FAMILIES = ("sd", "sd-inpaint", "sdxl", "instruct-pix2pix", "flux-schnell", "flux-dev", "flux-kontext")
CLIP_VOCAB = 96  # >= the tokenizer's size; the text encoders' embedding rows


def clip_tokenizer(max_length: int = 77):
    """A CLIP BPE tokenizer over single letters plus a few whole words (ids < CLIP_VOCAB)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in LETTERS:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    merges = ["#version: 0.2"]
    for word in ("red", "cat", "dog"):  # a few merges, so BPE really merges something
        vocab.setdefault(word[:2], len(vocab))
        vocab.setdefault(word + "</w>", len(vocab))
        merges += [f"{word[0]} {word[1]}", f"{word[:2]} {word[2]}</w>"]
    with tempfile.TemporaryDirectory() as scratch:  # the class reads its vocabulary from files, once
        folder = Path(scratch)
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("\n".join(merges) + "\n")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def t5_tokenizer(max_length: int = 512):
    """A T5 tokenizer (the fast, `tokenizers`-backed class) from a Unigram model over a few pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", "\u2581", *("\u2581" + w for w in WORDS), *LETTERS]
    model = Tokenizer(models.Unigram([(p, -1.0 - 0.01 * i) for i, p in enumerate(pieces)], unk_id=2))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=max_length)


def _clip_text(projection: bool = False, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
                            num_attention_heads=2, num_hidden_layers=2, vocab_size=CLIP_VOCAB,
                            max_position_embeddings=77, projection_dim=hidden)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _vae(flux: bool = False):
    from diffusers import AutoencoderKL

    extra = {"use_quant_conv": False, "use_post_quant_conv": False, "shift_factor": 0.0609,
             "scaling_factor": 1.5035} if flux else {}
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=32, **extra)


def _unet(in_channels: int = 4, xl: bool = False):
    from diffusers import UNet2DConditionModel

    extra = {"addition_embed_type": "text_time", "addition_time_embed_dim": 8,
             "projection_class_embeddings_input_dim": 6 * 8 + 32} if xl else {}
    return UNet2DConditionModel(sample_size=16, in_channels=in_channels, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=(2, 4),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=64 if xl else 32, **extra)


def _sd(family: str):
    from diffusers import (
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
    )

    cls, channels = {"sd": (StableDiffusionPipeline, 4), "sd-inpaint": (StableDiffusionInpaintPipeline, 9),
                     "instruct-pix2pix": (StableDiffusionInstructPix2PixPipeline, 8)}[family]
    return cls(vae=_vae(), text_encoder=_clip_text(), tokenizer=clip_tokenizer(),
               unet=_unet(channels), scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False,
                                                             set_alpha_to_one=False, steps_offset=1),
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _sdxl():
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=_clip_text(), text_encoder_2=_clip_text(projection=True),
        tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(),
        unet=_unet(xl=True), scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", steps_offset=1,
                                                              timestep_spacing="leading"))


def _flux(family: str):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, guidance_embeds=family != "flux-schnell",
                                         axes_dims_rope=(2, 2, 4))
    t5 = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                                 relative_attention_num_buckets=8, decoder_start_token_id=0))
    shifting = {} if family == "flux-schnell" else {"use_dynamic_shifting": True, "base_shift": 0.5,
                                                    "max_shift": 1.15}
    cls = FluxKontextPipeline if family == "flux-kontext" else FluxPipeline
    return cls(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0 if family == "flux-schnell" else 3.0, **shifting),
               vae=_vae(flux=True), text_encoder=_clip_text(), tokenizer=clip_tokenizer(),
               text_encoder_2=t5, tokenizer_2=t5_tokenizer(), transformer=transformer)


def build_tiny(family: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random-weight pipeline of `family` (one of FAMILIES) to `folder`; returns `folder`."""
    torch.manual_seed(seed)
    folder = Path(folder)
    if family in ("sd", "sd-inpaint", "instruct-pix2pix"):
        pipe = _sd(family)
    elif family == "sdxl":
        pipe = _sdxl()
    elif family.startswith("flux"):
        pipe = _flux(family)
    else:
        raise ValueError(f"no tiny builder for {family!r}; one of {', '.join(FAMILIES)}")
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
