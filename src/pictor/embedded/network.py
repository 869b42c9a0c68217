"""The embedded model's networks: a small text encoder and a conditional U-Net velocity model.

Both are diffusers `ModelMixin`s, so they save to and load from safetensors folders with the
same code that loads operators' diffusers models. One U-Net serves three tasks through its
inputs: the noisy image, a condition image (the source of an edit, the masked image of an
inpaint, zeros for text-to-image), the inpaint mask, and a task embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

TASKS = ("generate", "edit", "inpaint")


class EmbeddedTextEncoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, vocab_size: int = 256, max_length: int = 40, width: int = 128, layers: int = 2,
                 heads: int = 4, pad_id: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.zeros(1, max_length, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token states (B, L, W), pooled (B, W), and the padding mask (B, L; True = token)."""
        keep = ids != self.config.pad_id
        x = self.embed(ids) + self.position[:, : ids.shape[1]]
        # An all-padding text (unconditional) would give NaN attention: let it see one slot.
        attend = keep.clone()
        attend[:, 0] = True
        x = self.norm(self.encoder(x, src_key_padding_mask=~attend))
        weights = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return x, pooled, keep


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class AttentionBlock(nn.Module):
    """Self-attention over pixels (optional) and cross-attention to the text tokens."""

    def __init__(self, channels: int, context: int, heads: int, self_attention: bool):
        super().__init__()
        self.heads = heads
        self.self_attention = self_attention
        if self_attention:
            self.norm_self = _norm(channels)
            self.qkv = nn.Linear(channels, 3 * channels)
            self.out_self = nn.Linear(channels, channels)
            nn.init.zeros_(self.out_self.weight)
        self.norm_cross = _norm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context, 2 * channels)
        self.out_cross = nn.Linear(channels, channels)
        nn.init.zeros_(self.out_cross.weight)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_keep: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        if self.self_attention:
            h = self.norm_self(x).flatten(2).transpose(1, 2)
            q, k, v = (self._split(t) for t in self.qkv(h).chunk(3, dim=-1))
            h = self._merge(F.scaled_dot_product_attention(q, k, v))
            x = x + self.out_self(h).transpose(1, 2).reshape(b, c, hgt, wid)
        h = self.norm_cross(x).flatten(2).transpose(1, 2)
        q = self._split(self.q(h))
        k, v = (self._split(t) for t in self.kv(context).chunk(2, dim=-1))
        keep = context_keep.clone()
        keep[:, 0] = True  # the unconditional (all-padding) text still has one key
        mask = keep[:, None, None, :]
        h = self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        return x + self.out_cross(h).transpose(1, 2).reshape(b, c, hgt, wid)


class EmbeddedUNet(ModelMixin, ConfigMixin):
    """Predicts the clean image from a noisy one (the sampler derives the flow's velocity).

    The image is pixel-unshuffled by `patch` so the network runs at a fraction of the output
    resolution; coordinate channels give it the absolute positions that prompts talk about.
    """

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (48, 96, 160), patch: int = 2, context_dim: int = 128,
                 heads: int = 4, self_attention_levels: tuple[int, ...] = (2,),
                 cross_attention_levels: tuple[int, ...] = (1, 2), sample_size: int = 64):
        super().__init__()
        self.patch = patch
        image_ch = 3 * patch * patch
        mask_ch = patch * patch
        emb = 4 * channels[0]
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb), nn.SiLU(), nn.Linear(emb, emb))
        self.text_proj = nn.Linear(context_dim, emb)
        self.task_embed = nn.Embedding(len(TASKS), emb)
        self.stem = nn.Conv2d(2 * image_ch + mask_ch + 2, channels[0], 3, padding=1)

        def attention(level: int, ch: int) -> nn.Module:
            if level in cross_attention_levels or level in self_attention_levels:
                return AttentionBlock(ch, context_dim, heads, level in self_attention_levels)
            return nn.Identity()

        self.down_res, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cin = channels[0]
        for level, ch in enumerate(channels):
            self.down_res.append(ResBlock(cin, ch, emb))
            self.down_attn.append(attention(level, ch))
            self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                                   if level < len(channels) - 1 else nn.Identity())
            cin = ch
        self.mid_res1 = ResBlock(cin, cin, emb)
        self.mid_attn = AttentionBlock(cin, context_dim, heads, True)
        self.mid_res2 = ResBlock(cin, cin, emb)
        self.up_res, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(channels))):
            ch = channels[level]
            self.up_res.append(ResBlock(cin + ch, ch, emb))
            self.up_attn.append(attention(level, ch))
            self.upsample.append(nn.Conv2d(ch, channels[level - 1], 3, padding=1) if level > 0 else nn.Identity())
            cin = channels[level - 1] if level > 0 else ch
        self.out_norm = _norm(channels[0])
        self.out = nn.Conv2d(channels[0], image_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def _attend(block: nn.Module, x: torch.Tensor, context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return x if isinstance(block, nn.Identity) else block(x, context, keep)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor,
                task: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor,
                context_keep: torch.Tensor) -> torch.Tensor:
        p = self.patch
        x = torch.cat([F.pixel_unshuffle(noisy, p), F.pixel_unshuffle(condition, p),
                       F.pixel_unshuffle(mask, p)], dim=1)
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(b, 2, h, w)
        x = self.stem(torch.cat([x, grid], dim=1))
        emb = self.time_mlp(timestep_embedding(t, self.config.channels[0]).to(x.dtype))
        emb = F.silu(emb + self.text_proj(pooled) + self.task_embed(task))

        skips = []
        for res, attn, down in zip(self.down_res, self.down_attn, self.downsample):
            x = self._attend(attn, res(x, emb), context, context_keep)
            skips.append(x)
            x = down(x)
        x = self.mid_res2(self.mid_attn(self.mid_res1(x, emb), context, context_keep), emb)
        for res, attn, up in zip(self.up_res, self.up_attn, self.upsample):
            x = self._attend(attn, res(torch.cat([x, skips.pop()], dim=1), emb), context, context_keep)
            if not isinstance(up, nn.Identity):
                x = up(F.interpolate(x, scale_factor=2, mode="nearest"))
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(x))), p)
