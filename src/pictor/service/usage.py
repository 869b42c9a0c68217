"""What a request used, in the units upstream reports: text tokens, and image tokens (one per 32x32 tile, an
estimate documented as such); plus what it cost beyond its returned images (`compute`)."""

from __future__ import annotations

import math
import re

from PIL import Image

from pictor.service.planning import Plan


def text_tokens(prompt: str) -> int:
    return len(re.findall(r"\w+", prompt))


def image_tokens(width: int, height: int) -> int:
    """One token per 32x32 tile: an estimate in the units upstream reports, documented as such."""
    return math.ceil(width / 32) * math.ceil(height / 32)


def request_usage(plan: Plan, sources: list[Image.Image]) -> dict:
    """The usage block of a response: the prompt and input images in, the returned images out."""
    text = text_tokens(plan.job.prompt)
    inputs = sum(image_tokens(*s.size) for s in sources)
    output = image_tokens(plan.width, plan.height) * plan.job.n
    return {"input_tokens": text + inputs, "output_tokens": output, "total_tokens": text + inputs + output,
            "input_tokens_details": {"text_tokens": text, "image_tokens": inputs},
            "output_tokens_details": {"image_tokens": output, "text_tokens": 0}}


def add_compute(usage: dict, plan: Plan, runs: int, steps_run: int, validation_ms: float, made: int) -> None:
    """What the request cost beyond its returned images, and how (`compute`). Compute is denoising steps actually
    run (result-cache hits run none): candidates not returned, refinements and GIF plates count in `output_tokens`
    in proportion to their steps (one image at the tier's steps = one image's tokens)."""
    per_image = image_tokens(plan.width, plan.height)
    extra = max(0, math.ceil(per_image * steps_run / plan.steps) - per_image * plan.job.n)
    usage["output_tokens"] += extra
    usage["total_tokens"] += extra
    usage["output_tokens_details"]["image_tokens"] += extra
    usage["compute"] = {"model_runs": runs, "steps_per_run": plan.steps, "denoising_steps": steps_run,
                        "candidates": made, "validation_ms": round(validation_ms, 1)}
    if plan.search is not None and plan.search.budgeted:
        usage["compute"]["search"] = plan.search.to_dict()
