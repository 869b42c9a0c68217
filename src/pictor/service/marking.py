"""Marks and encoding: the tenant's visible badge, then the invisible watermark naming the artifact, then the output
file's bytes (raster formats, SVG traced from the marked image, GIF from its frames). Before signing: any pixel
changed after it would break the C2PA manifest."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from pictor.governance import watermark
from pictor.governance.badge import BadgeSettings, apply_badge
from pictor.service import animation, vector
from pictor.service.encoding import encode
from pictor.service.masks import keep_outside_mask
from pictor.service.planning import Plan

# Output formats that cannot carry the invisible watermark, and why (their audit entries say so).
UNMARKABLE = {"svg": "an SVG has no pixels to carry it: vectorisation would remove it",
              "gif": "GIF's 256-colour palette quantisation destroys it"}


@dataclass
class Marks:
    """What the governance marks did to one output, for its C2PA manifest and audit entry."""

    actions: list[dict] = field(default_factory=list)
    assertions: list[dict] = field(default_factory=list)
    watermark: dict | None = None  # None: too small to carry one (or a format that cannot: see watermark_reason)
    watermark_reason: str | None = None


def mark(image: Image.Image, plan: Plan, artifact_id: str) -> tuple[Image.Image, Marks]:
    """The governance marks, in order: the tenant's badge, then the invisible watermark naming the artifact.

    Under a hard mask the watermark stays inside the editable area, so the input's own pixels outside
    the mask are still returned byte for byte (the badge excepted: a tenant that asks for it gets it).
    Images under the watermark's minimum size go unmarked, and the audit entry says so.
    """
    marks, badge, times = Marks(), plan.badge, plan.times
    badged = image
    if badge is not None:
        with times.step("badge"):
            badged = apply_badge(image, badge)
        marks.actions.append(badge.action())
    marked = badged
    if plan.job.output_format in UNMARKABLE:
        marks.watermark_reason = UNMARKABLE[plan.job.output_format]
    elif min(image.size) >= watermark.MIN_SIDE:
        payload = watermark.payload_for(artifact_id)
        with times.step("watermark"):
            marked = watermark.embed(badged, payload)
        marks.actions.append({"action": "c2pa.watermarked", "description": "invisible watermark naming the image"})
        marks.assertions.append(watermark.soft_binding(payload))
        marks.watermark = {"alg": watermark.SOFT_BINDING_ALG, "payload": f"{payload:012x}"}
    if plan.mask is not None:
        marked = keep_outside_mask(marked, badged, plan.mask)
    return marked, marks


def encode_output(final: Image.Image, plan: Plan, frames: list[Image.Image] | None,
                  badge: BadgeSettings | None) -> bytes:
    """The output's bytes: raster formats as always, SVG traced from the marked image, GIF from its frames."""
    job = plan.job
    if job.output_format == "svg":
        return vector.svg_bytes(final)
    if job.output_format == "gif" and frames:
        marked = [apply_badge(frame, badge) if badge is not None else frame for frame in frames]
        return animation.gif_bytes(marked, animation.frame_duration(job.frame_duration_ms))
    return encode(final, job.output_format, job.output_compression)
