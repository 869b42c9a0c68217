"""The visible badge: a label such as "AI-generated" drawn in a corner, when a tenant's settings ask for it.

Drawn before the invisible watermark and the C2PA signature (which records it as an action). The
label scales with the image (its text height is a fraction of the short side) so it reads the same
on a thumbnail and on a poster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageFont

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
CORNERS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class BadgeSettings:
    text: str = "AI-generated"
    corner: Corner = "bottom-right"
    size: float = 0.05  # text height as a fraction of the image's short side
    opacity: float = 0.85  # of the label's plate and text

    def __post_init__(self) -> None:
        if not self.text.strip() or len(self.text) > 64:
            raise ValueError("the badge text must be 1 to 64 characters")
        if self.corner not in CORNERS:
            raise ValueError(f"corner must be one of {CORNERS}")
        if not 0.01 <= self.size <= 0.25:
            raise ValueError("size must be within 0.01..0.25 of the short side")
        if not 0.1 <= self.opacity <= 1.0:
            raise ValueError("opacity must be within 0.1..1")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> BadgeSettings | None:
        """The tenant's badge, or None when it is off (the default)."""
        badge = settings.get("badge")
        return None if not badge else cls(**badge)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def action(self) -> dict[str, Any]:
        """How the C2PA manifest records the badge."""
        return {"action": "c2pa.edited", "description": f"visible badge '{self.text}' added ({self.corner})",
                "parameters": {"org.pictor.badge": self.to_dict()}}


def apply_badge(image: Image.Image, badge: BadgeSettings) -> Image.Image:
    """A copy of `image` (same mode and size) with the label composited in its corner."""
    width, height = image.size
    text_height = max(6, round(badge.size * min(width, height)))
    font = ImageFont.load_default(size=text_height)
    left, top, right, bottom = font.getbbox(badge.text)
    pad, margin = max(2, text_height // 3), max(2, text_height // 2)
    plate_w, plate_h = right - left + 2 * pad, bottom - top + 2 * pad
    x = margin if badge.corner.endswith("left") else width - margin - plate_w
    y = margin if badge.corner.startswith("top") else height - margin - plate_h
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    alpha = round(255 * badge.opacity)
    draw.rounded_rectangle((x, y, x + plate_w, y + plate_h), radius=pad, fill=(20, 20, 20, alpha))
    draw.text((x + pad - left, y + pad - top), badge.text, font=font, fill=(255, 255, 255, alpha))
    # "Over" compositing: on a transparent background the plate stays visible (its alpha adds to the image's).
    badged = Image.alpha_composite(image.convert("RGBA"), layer)
    return badged if image.mode == "RGBA" else badged.convert(image.mode)
