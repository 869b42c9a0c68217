"""The scene autoencoder: an image of the world as 20 discrete codes, drawn back at any size with crisp edges.

Codes: two per cell of the world's 3x3 grid, one the decoder reads the cell object's colour from and one it
reads the object's form (shape and size, or none) from, and two for the background. The split is made by the
decoder's wiring. Each token is one of 64 codes, the encoder's argmax; the codes are taught as the world's own
vocabulary (see layers.py), and the decoder looks a colour token's code up in a colour table, a form token's
code in a table of distance templates, and draws the background from its two codes.

The decoder does not paint pixels at a fixed size to be resampled (which blurs edges by the resampling
factor). It draws layers: a background field from four corner colours, and for each cell a flat colour and a
signed-distance field of its object. Fields are smooth, so they can be resampled to any output size without
loss; the object's coverage of a pixel is then taken from the resampled distance in that output's own pixels,
which gives edges one output pixel wide at 64 px and at 1024 px alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from torch import nn

GRID = 3  # cells per side: the world's grid
CELLS = GRID * GRID
# Code order: each cell's colour code (cells in row order), each cell's form code, then the background's two.
BACKGROUND_TOKENS = 2
# The decoder's tables are stored at 1/20 of their values, so that the optimiser's steps (about the learning rate
# each) move them as fast as a network's outputs move.
TABLE_SCALE = 20.0


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class SceneAutoencoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, field: int = 96, codes: int = 64, width: int = 192, distance_clip: float = 6.0):
        super().__init__()
        if field % GRID or (field // GRID) % 8:
            raise ValueError("the field side must be three times a multiple of 8")
        cell = field // GRID
        # Each cell is encoded on its own (shared weights), so its tokens say what stands in that cell only.
        self.cell_encoder = nn.Sequential(
            _down(3, 32), _down(32, 64), _down(64, 128), nn.Flatten(),
            nn.Linear(128 * (cell // 8) ** 2, width), nn.SiLU(), nn.Linear(width, 2 * codes))
        # The background needs colours, not detail: it is read from a 4x smaller image.
        self.background_encoder = nn.Sequential(
            nn.AvgPool2d(4), _down(3, 32), _down(32, 64), _down(64, 96), nn.Flatten(),
            nn.Linear(96 * (field // 32) ** 2, width), nn.SiLU(), nn.Linear(width, BACKGROUND_TOKENS * codes))
        self.background_decoder = nn.Sequential(
            nn.Linear(BACKGROUND_TOKENS * codes, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 12))
        # A colour token's code names a colour, a form token's code a distance template (a cell-sized sprite):
        # both are tables learned with the encoder.
        self.palette = nn.Parameter(torch.zeros(codes, 3))
        self.forms = nn.Parameter(torch.randn(codes, cell, cell) * 0.005 - distance_clip / 2 / TABLE_SCALE)

    # ---- tokens ---------------------------------------------------------------------------------------------

    @property
    def codes(self) -> int:
        return int(self.config.codes)

    def _cells(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, F) -> (B * 9, 3, F/3, F/3), cells in row order."""
        b, c, side, _ = image.shape
        cell = side // GRID
        return image.view(b, c, GRID, cell, GRID, cell).permute(0, 2, 4, 1, 3, 5).reshape(b * CELLS, c, cell, cell)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, F) in [-1, 1] -> (B, 20, codes): each token's code logits, in token order."""
        b = image.shape[0]
        cells = self.cell_encoder(self._cells(image)).view(b, CELLS, 2, -1).transpose(1, 2).reshape(b, 2 * CELLS, -1)
        background = self.background_encoder(image).view(b, BACKGROUND_TOKENS, -1)
        return torch.cat([cells, background], 1)

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, F) -> (B, 20) integer codes."""
        return self.logits(image).argmax(-1)

    # ---- layers ---------------------------------------------------------------------------------------------

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """One-hot tokens (B, 20, codes) -> layers: `corners` (B, 3, 2, 2), `colours` (B, 3, 3, 3) per cell,
        `distance` (B, 1, F, F): signed distance to the cell's object edge in field pixels (> 0 inside)."""
        b = tokens.shape[0]
        side = self.config.field
        cell = side // GRID
        corners = self.background_decoder(tokens[:, 2 * CELLS:].reshape(b, -1)).view(b, 3, 2, 2)
        colours = (tokens[:, :CELLS] @ (self.palette * TABLE_SCALE)).view(b, GRID, GRID, 3).permute(0, 3, 1, 2)
        patch = torch.einsum("bct,tyx->bcyx", tokens[:, CELLS:2 * CELLS], self.forms * TABLE_SCALE)
        distance = patch.reshape(b, GRID, GRID, cell, cell).permute(0, 1, 3, 2, 4).reshape(b, 1, side, side)
        return {"corners": corners, "colours": colours, "distance": distance}

    def decode_tokens(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 20) integer codes -> layers."""
        return self.decode(torch.nn.functional.one_hot(tokens, self.codes).to(self.forms.dtype))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decode_tokens(self.tokens(image))


def background_field(corners: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear between the image's four corners, at pixel centres: exact for plain and linear gradients."""
    xs = (torch.arange(width, dtype=corners.dtype, device=corners.device) + 0.5) / width
    ys = (torch.arange(height, dtype=corners.dtype, device=corners.device) + 0.5) / height
    top = corners[:, :, 0, :1, None] * (1 - xs) + corners[:, :, 0, 1:, None] * xs  # (B, 3, 1, W)
    bottom = corners[:, :, 1, :1, None] * (1 - xs) + corners[:, :, 1, 1:, None] * xs
    return top * (1 - ys[:, None]) + bottom * ys[:, None]


def coverage(distance: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The object's share of each output pixel, from the field's signed distance resampled to the output."""
    side = distance.shape[-1]
    if (height, width) != (side, side):
        distance = F.interpolate(distance, size=(height, width), mode="bilinear", align_corners=False)
    scale = math.sqrt(width * height) / side  # output pixels per field pixel
    return (distance * scale + 0.5).clamp(0, 1)


def compose(layers: dict[str, torch.Tensor], width: int, height: int) -> torch.Tensor:
    """(B, 3, H, W) image in [-1, 1]: the cell objects over the background."""
    background = background_field(layers["corners"], width, height)
    colour = F.interpolate(layers["colours"], size=(height, width), mode="nearest")
    alpha = coverage(layers["distance"], width, height)
    return background * (1 - alpha) + colour * alpha


def image_to_field(image: Image.Image, side: int) -> torch.Tensor:
    """A PIL image -> (3, side, side) in [-1, 1]: area-averaged when larger, bicubic when smaller."""
    rgb = image.convert("RGB")
    if rgb.size != (side, side):
        shrinking = rgb.width >= side and rgb.height >= side
        rgb = rgb.resize((side, side), Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)
    array = np.asarray(rgb, dtype=np.float32)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).div(127.5).sub(1.0)
