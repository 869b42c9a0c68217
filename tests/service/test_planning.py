"""Planning (service/planning): every refusal before any work, and what the model's scene reader makes of a job."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pictor.core import ImageJob, JobKind
from pictor.service.errors import InvalidRequest
from pictor.service.planning import MAX_PROMPT_CHARS, Plan
from pictor.service.search import engine_request

from .conftest import world_png


def plan_of(built, principal, **fields) -> Plan:
    return asyncio.run(built.service.prepare(ImageJob(tenant_id=principal.tenant_id, **fields), principal))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_an_oversized_prompt_is_refused_before_the_policy_reads_it(built, principal):
    audited = len(built.database.audit_entries())
    with pytest.raises(InvalidRequest) as refused:
        plan_of(built, principal, kind=JobKind.GENERATE, prompt="x" * (MAX_PROMPT_CHARS + 1))
    assert (refused.value.param, refused.value.code) == ("prompt", "string_above_max_length")
    assert len(built.database.audit_entries()) == audited  # nothing audited: no policy decision was made


def test_an_instruction_edit_is_confined_to_the_object_the_reader_finds(built, principal):
    plan = plan_of(built, principal, kind=JobKind.EDIT, prompt="make the blue square green", images=(world_png(),),
                   size="128x128")
    assert plan.auto_mask and plan.task == "inpaint"  # the reader's area made it a masked edit
    area = np.asarray(plan.mask) > 0
    assert area[64, 64] and not area[0, 0] and not area[20, 108]  # the square, not the corner or the circle
    assert plan.settings == {"mask_blend_px": 0, "auto_edit_mask": True}  # recorded for replay
    assert plan.reader.name == "embedded-judge" and plan.backend is not None


def test_two_images_and_a_placing_text_are_a_composition(built, principal):
    logo = Image.new("RGB", (30, 20), (250, 214, 40))
    ImageDraw.Draw(logo).rectangle((5, 5, 15, 15), fill=(20, 20, 20))
    plan = plan_of(built, principal, kind=JobKind.EDIT, prompt="put the star logo in the top left",
                   images=(world_png(), png(logo)))
    assert plan.composition is not None and plan.composition["target"]["kind"] == "cell"
    assert plan.composition["target"]["label"] == "top left" and plan.task == "inpaint"


def test_the_model_prompt_is_one_spelling_also_when_it_is_empty(built, principal):
    """A markup 'remove' asks the model for the background alone: an empty prompt, which both the plan and the
    engine request give (the prompt was derived twice, and `or` turned the empty one into the job's)."""
    markup = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    ImageDraw.Draw(markup).ellipse((50, 50, 78, 78), fill=(40, 160, 70, 255))
    plan = plan_of(built, principal, kind=JobKind.EDIT, prompt="remove the blue square", images=(world_png(),),
                   markup=png(markup))
    assert plan.engine_prompt == "" and plan.model_prompt == ""
    assert engine_request(plan, 1).prompt == ""


def test_a_gif_plan_reads_its_motion_with_the_reader(built, principal):
    plan = plan_of(built, principal, kind=JobKind.GENERATE, prompt="a red star moving left on a white background",
                   size="64x64", output_format="gif")
    assert plan.motion is not None and plan.motion.direction == "left"
    assert (plan.motion.subject.name, plan.motion.subject.colour) == ("star", "red")
    assert plan.model_prompt == "a red star on a white background"
