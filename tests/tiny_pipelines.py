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
# The families tests/engine and tests/api build (see pictor.engine.families for what each serves): every one.
FAMILIES = ("sd", "sd-turbo", "sd-inpaint", "sdxl", "sdxl-turbo", "sdxl-inpaint", "instruct-pix2pix", "flux-schnell",
            "flux-dev", "flux-kontext")
# Builders of models that are not a family of their own: name -> the family Pictor detects them as.
# sd2: SD 2.x (v-prediction, linear projections in the UNet's transformers, upcast attention, a GELU text encoder).
VARIANTS = {"sd2": "sd"}
BUILDS = FAMILIES + tuple(VARIANTS)
# Turbo models share their base's classes: Pictor tells them by name (the folder's or the models file's `family`),
# so a turbo folder's name says turbo (as the builders' callers' folders, named after the family, do).
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


def _clip_text(projection: bool = False, hidden: int = 32, act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
                            num_attention_heads=2, num_hidden_layers=2, vocab_size=CLIP_VOCAB,
                            max_position_embeddings=77, projection_dim=hidden, hidden_act=act)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _vae(flux: bool = False):
    from diffusers import AutoencoderKL

    extra = {"use_quant_conv": False, "use_post_quant_conv": False, "shift_factor": 0.0609,
             "scaling_factor": 1.5035} if flux else {}
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=32, **extra)


def _unet(in_channels: int = 4, xl: bool = False, sd2: bool = False):
    from diffusers import UNet2DConditionModel

    extra = {"addition_embed_type": "text_time", "addition_time_embed_dim": 8,
             "projection_class_embeddings_input_dim": 6 * 8 + 32} if xl else {}
    if xl or sd2:  # SDXL and SD 2.x project into their transformers with linear layers (SD 1.x: 1x1 convolutions)
        extra["use_linear_projection"] = True
    if sd2:
        extra["upcast_attention"] = True
    return UNet2DConditionModel(sample_size=16, in_channels=in_channels, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=(2, 4),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=64 if xl else 32, **extra)


def _sd(name: str):
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
    )

    cls, channels = {"sd": (StableDiffusionPipeline, 4), "sd2": (StableDiffusionPipeline, 4),
                     "sd-turbo": (StableDiffusionPipeline, 4), "sd-inpaint": (StableDiffusionInpaintPipeline, 9),
                     "instruct-pix2pix": (StableDiffusionInstructPix2PixPipeline, 8)}[name]
    v2 = name in ("sd2", "sd-turbo")  # SD-Turbo is distilled from SD 2.1
    if name == "sd-turbo":  # as stabilityai/sd-turbo ships it: Euler, trailing timesteps (1 to 4 steps)
        scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="trailing")
    else:  # SD 2.x (768 px) predicts v; SD 1.x and its inpainting and InstructPix2Pix models predict the noise
        scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                                  steps_offset=1, prediction_type="v_prediction" if name == "sd2" else "epsilon")
    return cls(vae=_vae(), text_encoder=_clip_text(act="gelu" if v2 else "quick_gelu"), tokenizer=clip_tokenizer(),
               unet=_unet(channels, sd2=v2), scheduler=scheduler, safety_checker=None, feature_extractor=None,
               requires_safety_checker=False)


def _sdxl(name: str):
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
    )

    if name == "sdxl-turbo":  # as stabilityai/sdxl-turbo ships it: ancestral Euler on trailing timesteps
        scheduler = EulerAncestralDiscreteScheduler(beta_schedule="scaled_linear", steps_offset=1,
                                                    timestep_spacing="trailing")
    else:
        scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading")
    cls = StableDiffusionXLInpaintPipeline if name == "sdxl-inpaint" else StableDiffusionXLPipeline
    return cls(vae=_vae(), text_encoder=_clip_text(), text_encoder_2=_clip_text(projection=True),
               tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(),
               unet=_unet(9 if name == "sdxl-inpaint" else 4, xl=True), scheduler=scheduler)


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


def build_tiny(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random-weight pipeline `name` (one of BUILDS) to `folder`; returns `folder`."""
    torch.manual_seed(seed)
    folder = Path(folder)
    if name in ("sd", "sd2", "sd-turbo", "sd-inpaint", "instruct-pix2pix"):
        pipe = _sd(name)
    elif name.startswith("sdxl"):
        pipe = _sdxl(name)
    elif name.startswith("flux"):
        pipe = _flux(name)
    else:
        raise ValueError(f"no tiny builder for {name!r}; one of {', '.join(BUILDS)}")
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# ---- single-file checkpoints -------------------------------------------------------------------------------------

_RESNET_TO_LDM = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                  ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_VAE_ATTENTION_TO_LDM = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _unet_to_ldm(state: dict, config: dict) -> dict:
    """A diffusers UNet2DConditionModel's state dict under the original (LDM) names: the inverse of diffusers'
    `convert_ldm_unet_checkpoint` for any number of blocks and layers (the original UNet numbers its input blocks
    conv_in, then each down block's layers and downsampler; its output blocks each up block's layers, the last one
    carrying the upsampler after its resnet and attention)."""
    import re

    per_block = config["layers_per_block"]
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    attention_up = {i for i, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}
    out = {}
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        if module in fixed:
            out[f"{fixed[module]}.{leaf}"] = tensor
            continue
        if found := re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            side, block, kind, layer, rest = found.groups()
            block, layer = int(block), int(layer)
            index = 1 + block * (per_block + 1) + layer if side == "down" else block * (per_block + 1) + layer
            name = "input_blocks" if side == "down" else "output_blocks"
            slot = 0 if kind == "resnets" else 1
        elif found := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            block, rest = int(found[1]), found[2]
            out[f"input_blocks.{1 + block * (per_block + 1) + per_block}.0.op.{rest}"] = tensor
            continue
        elif found := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            block, rest = int(found[1]), found[2]
            slot = 2 if block in attention_up else 1
            out[f"output_blocks.{block * (per_block + 1) + per_block}.{slot}.conv.{rest}"] = tensor
            continue
        elif found := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
            kind, layer, rest = found.groups()
            name, index, slot, kind = "middle_block", 2 * int(layer) + (kind == "attentions"), None, kind
        else:
            raise ValueError(f"no original name for UNet key {key}")
        if kind == "resnets":
            for new, old in _RESNET_TO_LDM:
                rest = re.sub(rf"^{re.escape(new)}\.", f"{old}.", rest)
        prefix = f"{name}.{index}" if slot is None else f"{name}.{index}.{slot}"
        out[f"{prefix}.{rest}"] = tensor
    return out


def _vae_to_ldm(state: dict, config: dict) -> dict:
    """A diffusers AutoencoderKL's state dict under the original names (the inverse of `convert_ldm_vae_checkpoint`;
    the mid-block attention's linear weights become the original's 1x1 convolutions)."""
    import re

    ups = len(config["up_block_types"])
    out = {}
    for key, tensor in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                     lambda m: f"decoder.up.{ups - 1 - int(m[1])}.block.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{ups - 1 - int(m[1])}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if ".mid_block.attentions.0." in new:
            head, _, rest = new.partition(".mid_block.attentions.0.")
            for diffusers_name, ldm_name in _VAE_ATTENTION_TO_LDM:
                if rest.startswith(diffusers_name + "."):
                    rest = ldm_name + rest[len(diffusers_name):]
                    break
            new = f"{head}.mid.attn_1.{rest}"
            if tensor.ndim == 2:
                tensor = tensor[:, :, None, None]
        out[new] = tensor
    return out


def write_single_file(folder: Path, path: Path) -> Path:
    """An SD 1.x-style single-file checkpoint (original LDM key names: `model.diffusion_model.`, `first_stage_model.`,
    `cond_stage_model.transformer.`) of the tiny pipeline in `folder`, as `.safetensors`; returns `path`.

    Test-only, the reverse of what diffusers' `from_single_file` converts: only the weights go in the file, so
    loading it needs the folder (or another of the same architecture) as its `config`.
    """
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    unet = _unet_to_ldm(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"), unet_config)
    vae = _vae_to_ldm(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"), vae_config)
    clip = load_file(folder / "text_encoder" / "model.safetensors")
    checkpoint = {**{f"model.diffusion_model.{k}": v for k, v in unet.items()},
                  **{f"first_stage_model.{k}": v for k, v in vae.items()},
                  **{f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v
                     for k, v in clip.items()}}
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, str(path))
    return Path(path)
