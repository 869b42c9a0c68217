"""GIF output: short animations of one scene whose frames stay consistent.

How the frames are made (a backend whose scene reader finds objects):
1. The first frame is the model's generation (or edit) for the prompt with its motion phrase taken out
   ("a red star moving right on a white background" -> the scene "a red star on a white background").
2. The reader finds the moving object (the one the motion phrase follows, else the first), and the model inpaints
   its area with an empty prompt: the background plate, as the scene would be without it.
3. Each frame is that plate with the model's own object (its pixels, matted against the reader's background model,
   or the colour around the object where the reader has none) at the frame's position along the motion: one grid
   cell left/right/up/down over the animation, or, when the prompt describes no motion, a gentle bob that loops.
   Every frame's position differs from the one before, so every frame asked for is a frame of the GIF (a GIF
   writer merges equal neighbours).
No shape is drawn by Pictor: every pixel is the model's, from the first frame or the plate. The reader then reads
every frame back; the same objects (name and colour) must be found in each, else the output's validation says
which frame lost or gained what.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pictor.engine.scene import FoundObject, ObjectQuery, SceneReader

FRAME_COUNT_DEFAULT = 9
FRAME_DURATION_DEFAULT_MS = 200
MAX_FRAME_DURATION_MS = 655_350  # what a GIF's 16-bit delay in hundredths of a second can hold
MAX_GIF_SIDE = 1024  # Pictor's GIF size limit (16 full frames of 1024x1024 stay small in memory)
ALPHA_RAMP = (12.0, 48.0)  # RGB distance from the background at which an object pixel becomes fully opaque
PLATE_ATTEMPTS = 3  # seeds tried for the background plate before the judge's background fit is used

_MOTION = re.compile(
    r"\s*,?\s*\b(?:that\s+is\s+|which\s+is\s+)?(?:moving|moves|move|sliding|slides|slide|drifting|drifts|going|goes|"
    r"travelling|traveling|flying|flies|floating|floats|rolling|rolls)\s+(?:to\s+the\s+|towards?\s+the\s+|"
    r"towards?\s+)?(?P<direction>left|right|up|upwards|down|downwards)\b", re.IGNORECASE)
_DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "upwards": (0, -1), "down": (0, 1),
               "downwards": (0, 1)}

# (image, editable mask, prompt, seed) -> the model's inpainted image (pixels outside the mask kept)
Inpaint = Callable[[Image.Image, Image.Image, str, int], Awaitable[Image.Image]]


@dataclass
class Motion:
    direction: str  # left / right / up / down, or "bob" when the prompt describes none
    subject: ObjectQuery | None  # the object the motion phrase follows
    scene_prompt: str  # the prompt without its motion phrase: what the first frame shows


@dataclass
class Animation:
    frames: list[Image.Image]
    motion: Motion
    consistent: bool
    problems: list[str] = field(default_factory=list)
    model_calls: int = 0
    plate: str = "model"  # how the background behind the moving object was made: "model" or "background fit"

    def to_dict(self) -> dict:
        return {"frames": len(self.frames), "motion": self.motion.direction, "consistent": self.consistent,
                "problems": self.problems, "plate": self.plate}


def motion_of(prompt: str, reader: SceneReader) -> Motion:
    """The motion a prompt describes, its subject, and the prompt without the motion phrase."""
    match = _MOTION.search(prompt)
    if match is None:
        return Motion("bob", None, prompt)
    direction = match["direction"].lower().removesuffix("wards")
    named = reader.objects_named(prompt[:match.start()])
    subject = named[-1] if named else None
    scene = (prompt[:match.start()] + prompt[match.end():]).strip()
    return Motion(direction, subject, re.sub(r"\s{2,}", " ", scene))


def frame_duration(ms: int | None) -> int:
    """The delay per frame as the GIF stores it: rounded to 10 ms, at most MAX_FRAME_DURATION_MS."""
    value = FRAME_DURATION_DEFAULT_MS if ms is None else ms
    return max(10, min(MAX_FRAME_DURATION_MS, int(round(value / 10.0)) * 10))


def _subject(objects: list[FoundObject], wanted: ObjectQuery | None) -> FoundObject | None:
    if not objects:
        return None
    if wanted is not None:
        for keys in (("name", "colour"), ("name",), ("colour",)):
            if any(key in wanted.said() for key in keys):
                found = next((obj for obj in objects if wanted.matches(obj, keys)), None)
                if found is not None:
                    return found
    return objects[0]


def _offsets(motion: Motion, count: int, box: tuple[int, int, int, int],
             size: tuple[int, int]) -> list[tuple[float, float]]:
    """Where the object is in each frame, relative to the first: sub-pixel, so no two neighbours are equal (a GIF
    writer merges equal neighbouring frames)."""
    width, height = size
    x0, y0, x1, y1 = box
    if motion.direction == "bob":
        # A small loop, up and down with a little sway: no two neighbouring frames share a position (a pure
        # up-and-down sine repeats one at its turning points).
        amplitude = max(2.0, height / 16)
        angles = [2 * math.pi * i / count for i in range(count)]
        return [(amplitude / 4 * (math.cos(a) - 1), -amplitude * math.sin(a)) for a in angles]
    dx, dy = _DIRECTIONS[motion.direction]
    # One grid cell along the motion. An object already near the edge it moves towards starts further back, so the
    # path stays inside the image (a clipped object would read as another shape).
    ahead = {(1, 0): width - x1, (-1, 0): x0, (0, 1): height - y1, (0, -1): y0}[(dx, dy)] - 1
    behind = {(1, 0): x0, (-1, 0): width - x1, (0, 1): y0, (0, -1): height - y1}[(dx, dy)] - 1
    # At least a pixel per frame, so that every frame differs from the one before.
    distance = max(float(count - 1), min((width if dx else height) / 3, ahead + behind))
    start = -min(max(0.0, distance - max(0.0, ahead)), max(0.0, behind))
    steps = [start + distance * i / (count - 1) for i in range(count)]
    return [(dx * step, dy * step) for step in steps]


def _sprite(image: Image.Image, background: np.ndarray, region: np.ndarray) -> Image.Image:
    """The object's own pixels as RGBA: opaque where they stand out from the background model, un-mixed at edges."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    distance = np.linalg.norm(rgb - background, axis=-1)
    low, high = ALPHA_RAMP
    alpha = np.clip((distance - low) / (high - low), 0.0, 1.0) * region
    safe = np.maximum(alpha, 1e-3)[..., None]
    colour = np.clip((rgb - (1 - alpha[..., None]) * background) / safe, 0, 255)
    return Image.fromarray(np.rint(np.concatenate([colour, alpha[..., None] * 255], axis=-1)).astype(np.uint8), "RGBA")


def signature(image: Image.Image, reader: SceneReader) -> Counter:
    """What must stay the same in every frame: the objects' names and colours, as the reader reads them."""
    return Counter(o.label for o in reader.read(image).objects)


def consistency(frames: list[Image.Image], reader: SceneReader) -> list[str]:
    """Each frame whose objects differ from the first frame's, and how (empty: all consistent)."""
    first = signature(frames[0], reader)
    problems = []
    for index, frame in enumerate(frames[1:], start=1):
        seen = signature(frame, reader)
        if seen != first:
            lost = ", ".join((first - seen).elements())
            gained = ", ".join((seen - first).elements())
            problems.append(f"frame {index}: " + "; ".join(p for p in (lost and f"lost {lost}",
                                                                      gained and f"gained {gained}") if p))
    return problems


def surrounding_colour(image: Image.Image, box: tuple[int, int, int, int], pad: int) -> np.ndarray:
    """(H, W, 3): the median colour of a band around `box`, everywhere: the background model of a reader that has
    none of its own."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    outer = np.zeros((height, width), dtype=bool)
    outer[max(0, y0 - 2 * pad):y1 + 2 * pad, max(0, x0 - 2 * pad):x1 + 2 * pad] = True
    outer[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = False
    band = rgb[outer] if outer.any() else rgb.reshape(-1, 3)
    return np.broadcast_to(np.median(band, axis=0), rgb.shape).copy()


async def animate(first: Image.Image, motion: Motion, count: int, seed: int, inpaint: Inpaint,
                  reader: SceneReader) -> Animation:
    """`count` frames starting from `first` (the model's image of the scene), as the module describes."""
    rgb = first.convert("RGB")
    reading = reader.read(rgb)
    subject = _subject(reading.objects, motion.subject)
    if subject is None:  # nothing to move: the scene stands still (and says so)
        return Animation([rgb] * count, motion, False, ["no object found to animate: the frames are the same"], 0,
                         "none")
    width, height = rgb.size
    pad = max(2, round(min(width, height) / 32))
    x0, y0, x1, y1 = subject.box
    region = np.zeros((height, width), dtype=np.float32)
    region[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = 1.0
    background = reading.background if reading.background is not None else surrounding_colour(rgb, subject.box, pad)
    sprite = _sprite(rgb, background, region)
    hole = Image.fromarray((region * 255).astype(np.uint8), "L")
    plate, source, calls = await _plate(rgb, hole, region, background, seed, inpaint, reader)
    premultiplied = sprite.convert("RGBa")
    frames = []
    for dx, dy in _offsets(motion, count, subject.box, (width, height)):
        # Premultiplied while resampling, so the transparent pixels' colours do not bleed into the edges.
        layer = premultiplied.transform((width, height), Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy),
                                        Image.Resampling.BILINEAR).convert("RGBA")
        frames.append(Image.alpha_composite(plate.convert("RGBA"), layer).convert("RGB"))
    problems = consistency(frames, reader)
    return Animation(frames, motion, not problems, problems, calls, source)


async def _plate(image: Image.Image, hole: Image.Image, region: np.ndarray, background: np.ndarray, seed: int,
                 inpaint: Inpaint, reader: SceneReader) -> tuple[Image.Image, str, int]:
    """The scene without the moving object: the model's inpainting of its area with an empty prompt (which the
    embedded model learnt as "background only"), checked by the reader; up to PLATE_ATTEMPTS seeds. If every attempt
    leaves an object in the area, the background model fills it."""
    for attempt in range(PLATE_ATTEMPTS):
        plate = (await inpaint(image, hole, "", seed + attempt)).convert("RGB")
        left = [o for o in reader.read(plate).objects
                if region[min(region.shape[0] - 1, int(o.centroid[1])), min(region.shape[1] - 1, int(o.centroid[0]))]]
        if not left:
            return plate, "model", attempt + 1
    rgb = np.asarray(image, dtype=np.float32)
    filled = np.where(region[..., None] > 0, background, rgb)
    return Image.fromarray(np.rint(filled).astype(np.uint8), "RGB"), "background fit", PLATE_ATTEMPTS


def gif_bytes(frames: list[Image.Image], duration_ms: int) -> bytes:
    """An endlessly looping GIF, one palette shared by all frames (no flicker between them), no dithering."""
    strip = Image.new("RGB", (frames[0].width, frames[0].height * len(frames)))
    for index, frame in enumerate(frames):
        strip.paste(frame.convert("RGB"), (0, index * frames[0].height))
    shared = strip.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    paletted = [frame.convert("RGB").quantize(palette=shared, dither=Image.Dither.NONE) for frame in frames]
    buffer = io.BytesIO()
    paletted[0].save(buffer, "GIF", save_all=True, append_images=paletted[1:], duration=duration_ms, loop=0,
                     disposal=1, optimize=False)
    return buffer.getvalue()
