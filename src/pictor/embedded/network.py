"""The embedded model's networks: a small text encoder and a masked token transformer.

Both are diffusers `ModelMixin`s, so they save to and load from safetensors folders with the same code that
loads operators' diffusers models. The transformer predicts the 11 tokens of an image (one per cell, two for
the background; see layers.scene_tokens), MaskGIT-style (Chang et al. 2022): given the text, a task, the
source image's tokens (edits) and whichever target tokens are already decided, it gives logits for every
target token. One network serves three tasks: text-to-image (no token decided), edit by instruction (the
source's tokens beside), and inpainting (the tokens outside the mask decided).
"""

from __future__ import annotations

import math

import torch
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


class EmbeddedTransformer(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, codes: int = 199, tokens: int = 11, text_width: int = 128, width: int = 192, layers: int = 6,
                 heads: int = 6, cells: int = 9, cell_colours: int = 0, cell_forms: int = 0, cell_pair_rank: int = 0):
        super().__init__()
        self.text_in = nn.Linear(text_width, width)
        self.task = nn.Embedding(len(TASKS), width)
        # One extra index per table: "no source" for the source tokens, "not decided yet" for the target's.
        self.source = nn.Embedding(codes + 1, width)
        self.target = nn.Embedding(codes + 1, width)
        self.position = nn.Parameter(torch.zeros(1, tokens, width))
        self.segment = nn.Parameter(torch.zeros(2, width))  # text, image tokens
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codes)
        if cell_colours:
            # A cell's token (0 empty, else 1 + colour * forms + form) is embedded and scored as its colour and its form
            # apart: a (colour, shape) pair never seen together is then as likely as its parts say.
            if 1 + cell_colours * cell_forms != codes:
                raise ValueError("cell tokens must be 1 + colours * forms")
            self.cell_colour = nn.Embedding(cell_colours + 1, width)  # the last row: empty
            self.cell_form = nn.Embedding(cell_forms, width)
            self.cell_head = nn.Linear(width, 1 + cell_colours + cell_forms)
        if cell_colours and cell_pair_rank:
            # Colour and form scored apart cannot say "red heart or blue square, not red square": a cell that may
            # hold either of two objects got one's colour and the other's form half the time (colour binding 0.48).
            # A low-rank term over (colour, form), read from the cell's state, lets the pair be scored as a pair.
            # Its colour side starts at zero, so the term starts as nothing and the factored scores as they were.
            self.pair_colour = nn.Linear(width, cell_pair_rank * cell_colours)
            self.pair_form = nn.Linear(width, cell_pair_rank * cell_forms)
            nn.init.zeros_(self.pair_colour.weight)
            nn.init.zeros_(self.pair_colour.bias)
        # At the scale of the token embeddings (N(0, 1)): at std 0.02 the cells' positions were drowned by them and
        # the model never tied cell words to cells (bench/results/embedded-position-probe-cpu-2core.md).
        nn.init.normal_(self.position, std=1.0)
        nn.init.normal_(self.segment, std=0.02)

    @property
    def tokens(self) -> int:
        return self.config.tokens

    def _embed(self, tokens: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
        """(B, T) codes, -1 for none -> (B, T, width)."""
        index = torch.where(tokens < 0, self.config.codes, tokens)
        plain = table(index)
        if not self.config.cell_colours:
            return plain
        pairs = self.cell_colour.weight[:-1, None] + self.cell_form.weight[None]
        cell_table = torch.cat([self.cell_colour.weight[-1:], pairs.flatten(0, 1), table.weight[-1:]])
        cells = self.config.cells
        return torch.cat([cell_table[index[:, :cells]], plain[:, cells:]], 1)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, width) -> (B, T, codes) logits; a cell's pair scored as its colour's and its form's sum."""
        logits = self.head(x)
        if not self.config.cell_colours:
            return logits
        cells, colours = self.config.cells, self.config.cell_colours
        parts = self.cell_head(x[:, :cells])
        empty, colour, form = parts[..., :1], parts[..., 1:1 + colours], parts[..., 1 + colours:]
        pairs = colour[..., :, None] + form[..., None, :]
        rank = self.config.cell_pair_rank
        if rank:
            b, forms = x.shape[0], self.config.cell_forms
            by_colour = self.pair_colour(x[:, :cells]).view(b, cells, rank, colours)
            by_form = self.pair_form(x[:, :cells]).view(b, cells, rank, forms)
            pairs = pairs + torch.einsum("bnrc,bnrf->bncf", by_colour, by_form) / math.sqrt(rank)
        pairs = pairs.flatten(-2)
        return torch.cat([torch.cat([empty, pairs], -1), logits[:, cells:]], 1)

    def forward(self, text_states: torch.Tensor, text_keep: torch.Tensor, task: torch.Tensor,
                source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, codes) for every target token.

        `source` and `target` are (B, T) codes with -1 where there is none (no source; not decided yet). A source
        token is added to the target token at its place, so an edit sees each cell's old content where it decides
        the new one, and leaving a cell as it was is the easiest thing to learn."""
        b = text_keep.shape[0]
        text = self.text_in(text_states) + self.segment[0]
        image = self._embed(target, self.target) + self._embed(source, self.source) + self.position + self.segment[1]
        x = torch.cat([self.task(task)[:, None], text, image], 1)
        ones = torch.ones(b, 1 + self.tokens, dtype=torch.bool, device=text_keep.device)
        keep = torch.cat([ones[:, :1], text_keep, ones[:, 1:]], 1)
        return self._score(self.norm(self.blocks(x, src_key_padding_mask=~keep))[:, -self.tokens:])
