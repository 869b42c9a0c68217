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
                 heads: int = 4, pad_id: int = 0, local_window: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.zeros(1, max_length, width))
        if local_window:
            # Each word's state also takes its neighbours' (a convolution over the words): a shape word then carries
            # the colour said beside it ("a gray heart", "a heart in gray"). Its learned positions are a tenth of
            # the words' scale, and attention alone left "a gray heart and a blue square" read nearly as a bag of
            # words (colour binding 0.48). Starts at zero: a model grown from one without it begins unchanged.
            self.local = nn.Conv1d(width, width, local_window, padding=local_window // 2)
            nn.init.zeros_(self.local.weight)
            nn.init.zeros_(self.local.bias)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token states (B, L, W), pooled (B, W), and the padding mask (B, L; True = token)."""
        keep = ids != self.config.pad_id
        x = self.embed(ids) + self.position[:, : ids.shape[1]]
        if self.config.local_window:
            words = x * keep.unsqueeze(-1).to(x.dtype)  # padding contributes nothing to its neighbours
            x = x + self.local(words.transpose(1, 2)).transpose(1, 2)
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
                 heads: int = 6, cells: int = 9, cell_colours: int = 0, cell_forms: int = 0, text_pairs: bool = False):
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
        if cell_colours and text_pairs:
            # Scored apart, colour and form cannot say "a gray heart or a blue square, not a gray square": a cell that
            # may hold either object got one's colour and the other's form half the time (colour binding 0.48), and a
            # term over the cell's own state cannot fix that, since that state averages both objects' words (a
            # low-rank (colour, form) term on it was tried: 0.60). So each word of the text proposes a (colour, form)
            # pair from its own state (its neighbours' words included), and a cell adds the proposals of the words it
            # points at: a sum of products, one per object, instead of a product of sums. The colour side starts at
            # zero, so a model grown from one without this term begins unchanged.
            self.pair_query = nn.Linear(width, width)
            self.pair_key = nn.Linear(width, width)
            self.pair_colour = nn.Linear(width, cell_colours)
            self.pair_form = nn.Linear(width, cell_forms)
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

    def _score(self, x: torch.Tensor, words: torch.Tensor, word_keep: torch.Tensor) -> torch.Tensor:
        """Image states (B, T, width) -> (B, T, codes) logits; a cell's pair scored as its colour's and its form's sum,
        plus (text_pairs) the pairs the words it points at propose. `words` (B, L, width) are the text's states
        after the blocks, `word_keep` (B, L) which of them are words."""
        logits = self.head(x)
        if not self.config.cell_colours:
            return logits
        cells, colours = self.config.cells, self.config.cell_colours
        parts = self.cell_head(x[:, :cells])
        empty, colour, form = parts[..., :1], parts[..., 1:1 + colours], parts[..., 1 + colours:]
        pairs = colour[..., :, None] + form[..., None, :]
        if self.config.text_pairs:
            scores = self.pair_query(x[:, :cells]) @ self.pair_key(words).transpose(1, 2) / math.sqrt(x.shape[-1])
            pointing = scores.masked_fill(~word_keep[:, None], -1e4).softmax(-1)  # (B, cells, L)
            proposed = torch.einsum("bnl,blc,blf->bncf", pointing, self.pair_colour(words), self.pair_form(words))
            pairs = pairs + proposed
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
        out = self.norm(self.blocks(x, src_key_padding_mask=~keep))
        # An all-padding text (unconditional) points at its first slot, as the text encoder lets it see one.
        word_keep = text_keep.clone()
        word_keep[:, 0] = True
        return self._score(out[:, -self.tokens:], out[:, 1:1 + text_keep.shape[1]], word_keep)
