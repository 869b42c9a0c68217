"""Operators' diffusers models through `pictor serve --model NAME=PATH --models FILE` and the official SDK."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
from PIL import Image, ImageStat
from tiny_pipelines import build_tiny

from pictor.engine.embedded_scene import EmbeddedSceneReader
from pictor.engine.scene import NO_UNDERSTANDING

from .helpers import Server, alpha_mask, decode, png_bytes, run_cli, scene, start_server

PROMPT = "a red cat on a blue background"
# An operator's own output scorer, as an operator would write it: a module on the server's PYTHONPATH, named by
# the models file's `validator`. It scores how red an image is, for prompts that ask for red.
# Written with numpy, as most are: its scores are numpy floats, which the answer's JSON writes as plain numbers.
REDNESS_SCORER = """
import numpy as np

from pictor.service.validation import Verdict


def redness(image):
    red, green, blue = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return np.clip((red - (green + blue) / 2) / 100, 0.0, 1.0)


class RednessScorer:
    name = "redness"

    def can_score(self, prompt, task):
        return task in ("generate", "variation") and "red" in prompt.split()

    def score(self, image, prompt, task):
        if not self.can_score(prompt, task):
            return Verdict("unavailable", reason="only generation prompts that ask for red are scored")
        value = redness(image)
        if value >= 0.5:
            return Verdict("passed", value, confidence=value)
        return Verdict("failed", value, ["the image is not red enough"], confidence=value)
"""


# An operator's own scene reader, as an operator would write it for their model: it finds solid boxes that stand out
# from the image's corner colour and names them "box" with the nearest basic colour name.
BOX_READER = """
import re

import numpy as np
from PIL import Image
from scipy import ndimage

from pictor.engine.scene import FoundObject, ObjectQuery, SceneReader, SceneReading, grid_cell

COLOURS = {"red": (220, 30, 30), "blue": (35, 90, 225), "green": (40, 170, 60), "white": (246, 246, 246)}
PHRASE = re.compile(r"\\b(?:(red|blue|green)\\s+)?box\\b")


class BoxReader(SceneReader):
    name = "box-reader"
    palette = COLOURS

    def read(self, image):
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        background = rgb[0, 0]
        labels, count = ndimage.label(np.linalg.norm(rgb - background, axis=-1) > 40)
        objects = []
        for index, found in enumerate(ndimage.find_objects(labels), start=1):
            ys, xs = found
            box = (xs.start, ys.start, xs.stop, ys.stop)
            mean = rgb[labels == index].mean(axis=0)
            colour = min(COLOURS, key=lambda name: float(np.linalg.norm(np.array(COLOURS[name]) - mean)))
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            objects.append(FoundObject("box", box, centre, grid_cell(centre, image.size), colour,
                                       area=int((labels == index).sum())))
        return SceneReading(objects, np.broadcast_to(background, rgb.shape).copy())

    def objects_named(self, text):
        return [ObjectQuery("box", match[1]) for match in PHRASE.finditer(text.lower())]

    def edit_region(self, image, instruction):
        named = self.objects_named(instruction)
        found = [o for o in self.read(image).objects if named and named[0].matches(o)]
        if not found:
            return None
        x0, y0, x1, y1 = found[0].box
        area = Image.new("L", image.size, 0)
        area.paste(255, (max(0, x0 - 1), max(0, y0 - 1), x1 + 1, y1 + 1))
        return area
"""


def boxes_picture(boxes: dict[tuple[int, int, int, int], tuple[int, int, int]], side: int = 64) -> Image.Image:
    picture = Image.new("RGB", (side, side), (246, 246, 246))
    for box, colour in boxes.items():
        picture.paste(colour, box)
    return picture


def redness(image: Image.Image) -> float:
    """What REDNESS_SCORER computes, for checking its verdicts on the returned images."""
    red, green, blue = ImageStat.Stat(image.convert("RGB")).mean
    return max(0.0, min(1.0, (red - (green + blue) / 2) / 100))


def with_pythonpath(folder: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)}


@pytest.fixture(scope="module")
def models_server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("operator-models")
    sd = build_tiny("sd", root / "weights" / "sd")
    ip2p = build_tiny("instruct-pix2pix", root / "weights" / "ip2p")
    for name, folder in (("flux-schnell", "flux"), ("sdxl", "sdxl"), ("sd-inpaint", "sd-inpaint"),
                         ("flux-kontext", "kontext")):
        build_tiny(name, root / "weights" / folder)
    (root / "scorers").mkdir()
    (root / "scorers" / "redness_scorer.py").write_text(REDNESS_SCORER)
    (root / "scorers" / "box_reader.py").write_text(BOX_READER)
    (root / "models.toml").write_text(
        '[[model]]\nname = "tiny-turbo"\npath = "weights/sd"\nfamily = "sd-turbo"\n\n'
        '[[model]]\nname = "tiny-flux"\npath = "weights/flux"\n\n'
        '[[model]]\nname = "tiny-xl"\npath = "weights/sdxl"\n\n'
        '[[model]]\nname = "tiny-inpaint"\npath = "weights/sd-inpaint"\n\n'
        '[[model]]\nname = "tiny-kontext"\npath = "weights/kontext"\n\n'
        '[[model]]\nname = "tiny-scored"\npath = "weights/sd"\nvalidator = "redness_scorer:RednessScorer"\n\n'
        '[[model]]\nname = "tiny-reading"\npath = "weights/sd"\nscene_reader = "box_reader:BoxReader"\n')
    running = start_server(root, with_pythonpath(root / "scorers"),
                           extra_args=("--model", f"tiny-sd={sd}", "--model", f"tiny-ip2p={ip2p}",
                                       "--models", str(root / "models.toml")))
    running.root = root  # type: ignore[attr-defined]
    yield running
    running.stop()
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="module")
def sdk(models_server: Server) -> openai.OpenAI:
    return models_server.client()


def test_models_are_listed_with_their_capabilities(sdk):
    cards = {model.id: model.model_extra for model in sdk.models.list().data}
    assert {"pictor-embedded", "tiny-sd", "tiny-ip2p", "tiny-turbo", "tiny-flux"} <= set(cards)
    assert cards["tiny-sd"]["family"] == "sd"
    assert set(cards["tiny-sd"]["capabilities"]["tasks"]) == {"generate", "variation", "inpaint"}
    assert cards["tiny-ip2p"]["capabilities"]["tasks"] == ["edit"]
    assert cards["tiny-turbo"]["family"] == "sd-turbo" and cards["tiny-turbo"]["capabilities"]["default_steps"] == 1
    assert cards["tiny-flux"]["family"] == "flux-schnell"
    assert cards["tiny-xl"]["family"] == "sdxl" and cards["tiny-inpaint"]["family"] == "sd-inpaint"
    assert cards["tiny-inpaint"]["capabilities"]["tasks"] == ["inpaint"]
    assert cards["tiny-kontext"]["family"] == "flux-kontext"
    assert set(cards["tiny-kontext"]["capabilities"]["tasks"]) == {"generate", "edit", "inpaint"}
    assert cards["tiny-sd"]["capabilities"]["transparent_background"] is False
    assert len(cards["tiny-sd"]["weights_sha256"]) == 64
    assert cards["tiny-turbo"]["weights_sha256"] == cards["tiny-sd"]["weights_sha256"]  # the same folder


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-turbo", "tiny-flux", "tiny-xl"])
def test_generate_with_a_seed_reproduces(models_server, sdk, model):
    first = sdk.images.generate(model=model, prompt=PROMPT, n=2, size="64x48", quality="low", extra_body={"seed": 5})
    again = sdk.images.generate(model=model, prompt=PROMPT, size="64x48", quality="low", extra_body={"seed": 5})
    assert [decode(item.b64_json).size for item in first.data] == [(64, 48), (64, 48)]
    hashes = [models_server.model_output_hash(item.model_extra["id"]) for item in (*first.data, *again.data)]
    assert hashes[0] == hashes[2] and hashes[0] != hashes[1]


def test_masked_edit_keeps_every_pixel_outside_the_mask(sdk):
    picture = scene(64, 64, seed=3)
    mask = png_bytes(alpha_mask(64, 64, (16, 16, 48, 48)))
    result = sdk.images.edit(model="tiny-sd", image=png_bytes(picture), mask=mask, prompt=PROMPT, quality="low",
                             extra_body={"seed": 2})
    made = np.asarray(decode(result.data[0].b64_json).convert("RGB"), dtype=np.int16)
    original = np.asarray(picture, dtype=np.int16)
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    # The invisible watermark moves pixels by a level or two; the mask's inside is the model's own.
    assert np.abs(made - original)[outside].mean() < 1.0
    assert np.abs(made - original)[~outside].mean() > 10


def test_masked_edit_on_a_dedicated_inpainting_model_keeps_the_outside_byte_for_byte(sdk):
    """SD inpainting (a 9-channel UNet): the PNG's pixels outside the mask are the input's, byte for byte (the
    invisible watermark stays inside the editable area)."""
    picture = scene(64, 64, seed=4)
    mask = png_bytes(alpha_mask(64, 64, (8, 24, 40, 56)))
    result = sdk.images.edit(model="tiny-inpaint", image=png_bytes(picture), mask=mask, prompt=PROMPT, quality="low",
                             extra_body={"seed": 3})
    made = decode(result.data[0].b64_json)
    assert made.format == "PNG" and made.mode == "RGB" and made.size == (64, 64)
    made_px, original = np.asarray(made), np.asarray(picture)
    outside = np.ones((64, 64), bool)
    outside[24:56, 8:40] = False
    assert np.array_equal(made_px[outside], original[outside])
    assert np.abs(made_px.astype(np.int16) - original)[~outside].mean() > 10  # the inside is the model's own
    with pytest.raises(openai.BadRequestError, match="cannot do generate"):  # it only inpaints
        sdk.images.generate(model="tiny-inpaint", prompt=PROMPT, size="64x64")


def test_instruction_edit_on_flux_kontext_reproduces_for_a_seed(models_server, sdk):
    picture = png_bytes(scene(48, 32, seed=5))
    first, again, other = (sdk.images.edit(model="tiny-kontext", image=picture, prompt="make it blue",
                                           quality="low", extra_body={"seed": seed}) for seed in (4, 4, 5))
    assert decode(first.data[0].b64_json).size == (48, 32)
    hashes = [models_server.model_output_hash(r.data[0].model_extra["id"]) for r in (first, again, other)]
    assert hashes[0] == hashes[1] != hashes[2]
    assert first.data[0].model_extra["validation"]["status"] == "unavailable"


def test_instruction_edit_on_instruct_pix2pix_and_variation_on_sd(sdk):
    edited = sdk.images.edit(model="tiny-ip2p", image=png_bytes(scene(48, 32)), prompt="make it blue", quality="low")
    assert decode(edited.data[0].b64_json).size == (48, 32)
    varied = sdk.images.create_variation(model="tiny-sd", image=png_bytes(scene(32, 32)), size="256x256")
    assert decode(varied.data[0].b64_json).size == (256, 256)


@pytest.mark.parametrize("call, message, code", [
    (lambda c: c.images.edit(model="tiny-sd", image=png_bytes(scene(32, 32)), prompt="make it blue"),
     "cannot do edit (send a mask to edit inside it); it can do: generate, inpaint, variation", "unsupported_task"),
    (lambda c: c.images.generate(model="tiny-ip2p", prompt=PROMPT, size="64x64"),
     "cannot do generate; it can do: edit", "unsupported_task"),
    (lambda c: c.images.generate(model="tiny-sd", prompt=PROMPT, size="64x64", background="transparent"),
     "cannot make a transparent background", "unsupported_background"),
])
def test_a_request_the_model_cannot_do_is_a_400_and_stores_nothing(models_server, sdk, call, message, code):
    before = models_server.state()
    with pytest.raises(openai.BadRequestError) as refused:
        call(sdk)
    error = refused.value.body
    assert refused.value.status_code == 400 and message in error["message"] and error["code"] == code
    assert error["param"] in ("model", "background")
    assert models_server.state() == before


def test_an_unknown_model_is_a_404(sdk):
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.images.generate(model="no-such-model", prompt=PROMPT, size="64x64")
    assert missing.value.body["code"] == "model_not_found"


def test_streamed_generation_sends_linear_previews(sdk):
    events = list(sdk.images.generate(model="tiny-sd", prompt=PROMPT, size="64x64", quality="low", stream=True,
                                      partial_images=2, extra_body={"seed": 9}))
    kinds = [event.type for event in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert all(decode(event.b64_json).size == (64, 64) for event in events)


def test_pictor_models_lists_them_without_loading(models_server):
    root = models_server.root
    listed = run_cli("models", "--model", f"x={root / 'weights' / 'ip2p'}", "--models", str(root / "models.toml"))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.startswith("x  instruct-pix2pix  StableDiffusionInstructPix2PixPipeline  tasks: edit")
               for line in lines)
    assert any(line.startswith("tiny-turbo  sd-turbo") for line in lines), lines
    broken = run_cli("models", "--model", "no-equals-sign")
    assert broken.returncode == 2 and "NAME=PATH" in broken.stderr


# ---- output validation: operators' own scorers --------------------------------------------------------------------


def test_a_model_without_a_validator_says_validation_is_unavailable(sdk):
    result = sdk.images.generate(model="tiny-sd", prompt=PROMPT, size="64x64", quality="low", complexity="high",
                                 extra_body={"seed": 31})
    validation = result.data[0].model_extra["validation"]
    assert validation["status"] == "unavailable" and validation["score"] is None
    assert validation["validator"] == "none" and validation["reason"] == "no output scorer is configured for this model"
    # complexity=high cannot tell candidates apart without a scorer: one image at the tier's steps
    assert validation["candidates"] == 1 and result.usage.model_extra["compute"]["candidates"] == 1


def test_the_operators_validator_scores_and_complexity_high_searches(sdk):
    """The models file's `validator` (a module on the server's PYTHONPATH) scores the model's images: its name,
    verdict and score are the image's `validation`, and complexity=high searches, since the scorer can score."""
    plain = sdk.images.generate(model="tiny-scored", prompt="a red cat", size="64x64", quality="low",
                                extra_body={"seed": 40})
    validation = plain.data[0].model_extra["validation"]
    assert validation["validator"] == "redness" and validation["candidates"] == 1
    assert validation["status"] == ("passed" if validation["score"] >= 0.5 else "failed")
    # The scorer read the model's image (the returned one differs from it only by the watermark's level or two).
    assert abs(validation["score"] - redness(decode(plain.data[0].b64_json))) < 0.02
    searched = sdk.images.generate(model="tiny-scored", prompt="a red cat", size="64x64", quality="low",
                                   complexity="high", extra_body={"seed": 40})
    validation, compute = searched.data[0].model_extra["validation"], searched.usage.model_extra["compute"]
    scores = validation["candidate_scores"]
    assert validation["validator"] == "redness" and validation["search"]["early_stop"]
    assert compute["candidates"] == validation["candidates"] == len(scores) > 1, validation
    # Repairs repaint a wrong object the embedded world's judge found: not for another scorer, whose budget all
    # goes to candidates (3x the tier's steps in thirds: up to nine).
    assert validation["search"]["repairs"] == validation["search"]["repairs_tried"] == 0
    assert compute["model_runs"] == len(scores) <= 9
    assert validation["score"] == max(scores) == scores[validation["chosen"]]
    assert all(score < 0.5 for score in scores[:-1])  # the search stopped only at a pass, or at the budget
    assert abs(validation["score"] - redness(decode(searched.data[0].b64_json))) < 0.02
    # A prompt the scorer cannot score: its own `unavailable`, and one image even at complexity=high.
    blue = sdk.images.generate(model="tiny-scored", prompt="a blue dog", size="64x64", quality="low",
                               complexity="high", extra_body={"seed": 41})
    validation = blue.data[0].model_extra["validation"]
    assert validation["status"] == "unavailable" and validation["validator"] == "redness"
    assert validation["reason"] == "only generation prompts that ask for red are scored"
    assert validation["candidates"] == 1


def test_a_validator_that_cannot_be_imported_stops_the_server_at_start(tmp_path, models_server):
    (tmp_path / "models.toml").write_text(f'[[model]]\nname = "broken"\npath = "{models_server.root}/weights/sd"\n'
                                          'validator = "no_such_scorers:Scorer"\n')
    with pytest.raises(RuntimeError) as failed:
        start_server(tmp_path, extra_args=("--models", str(tmp_path / "models.toml")))
    assert "model broken: validator 'no_such_scorers:Scorer': cannot import module 'no_such_scorers'" in \
        str(failed.value)


def test_validator_references_are_made_once_and_a_failing_scorer_is_reported(tmp_path, monkeypatch):
    """In-process (service/validation.validator_for): classes, factories and ready objects; made once per reference;
    a scorer that raises or answers something else gives `unavailable` with the reason; one that cannot be made is a
    `validator_error`."""
    from pictor.service import validation

    (tmp_path / "op_scorers_for_test.py").write_text(
        "from pictor.service.validation import Verdict\n"
        "made = []\n"
        "class Good:\n    name = 'good'\n    def __init__(self): made.append(self)\n"
        "    def score(self, image, prompt, task): return Verdict('passed', 1.0)\n"
        "class Raises:\n    name = 'raises'\n    def score(self, image, prompt, task): raise OSError('no GPU')\n"
        "class Wrong:\n    name = 'wrong'\n    def score(self, image, prompt, task): return 0.5\n"
        "def factory():\n    return Good()\n"
        "ready = Good()\n"
        "def broken():\n    raise RuntimeError('weights missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    image = Image.new("RGB", (8, 8))
    first = validation.validator_for(NO_UNDERSTANDING, "op_scorers_for_test:Good")
    judge = EmbeddedSceneReader()
    assert validation.validator_for(judge, "op_scorers_for_test:Good") is first  # cached, and it wins over the judge
    verdict = first.score(image, "x", "generate")
    assert (verdict.status, verdict.validator) == ("passed", "good") and validation.can_score(first, "x", "edit")
    assert validation.validator_for(NO_UNDERSTANDING, "op_scorers_for_test:factory").name == "good"
    assert validation.validator_for(NO_UNDERSTANDING, "op_scorers_for_test:ready").scorer is not None
    raised = validation.validator_for(NO_UNDERSTANDING, "op_scorers_for_test:Raises").score(image, "x", "generate")
    assert raised.status == "unavailable" and raised.reason == "the validator failed: OSError: no GPU"
    wrong = validation.validator_for(NO_UNDERSTANDING, "op_scorers_for_test:Wrong").score(image, "x", "generate")
    assert wrong.status == "unavailable" and "returned float, not a Verdict" in wrong.reason
    with pytest.raises(validation.ValidatorLoadError, match="could not be made: weights missing") as failed:
        validation.validator_for(NO_UNDERSTANDING, "op_scorers_for_test:broken")
    assert failed.value.code == "validator_error"
    assert isinstance(validation.validator_for(NO_UNDERSTANDING), validation.UnavailableValidator)
    assert validation.validator_for(judge) is judge  # a reader that scores is the model's validator


# ---- an operator's scene reader (engine/scene.py), plugged in through the models file -------------------------------

RED_BOX, BLUE_BOX = (36, 8, 60, 30), (4, 40, 20, 60)


def test_an_operators_scene_reader_places_a_reference_on_the_object_it_finds(models_server, sdk):
    picture = boxes_picture({RED_BOX: (220, 30, 30), BLUE_BOX: (35, 90, 225)})
    reference = Image.new("RGB", (20, 10), (250, 214, 40))
    result = sdk.images.edit(model="tiny-reading", image=[png_bytes(picture), png_bytes(reference)],
                             prompt="put the logo on the red box", quality="low", extra_body={"seed": 3})
    entry = models_server.audit_entry(result.data[0].model_extra["id"])
    composition = entry["parameters"]["composition"]
    assert composition["target"]["kind"] == "object" and composition["target"]["label"].startswith("red box")
    assert tuple(composition["target"]["box"]) == RED_BOX
    x0, y0, x1, y1 = composition["placed_box"]
    assert RED_BOX[0] <= x0 and RED_BOX[1] <= y0 and x1 <= RED_BOX[2] and y1 <= RED_BOX[3]
    made = np.asarray(decode(result.data[0].b64_json).convert("RGB"), dtype=np.int16)
    centre = made[(y0 + y1) // 2, (x0 + x1) // 2]
    assert np.abs(centre - (250, 214, 40)).max() <= 3  # the reference itself, not the model's noise
    missing = sdk.images.edit  # a box the reader does not find is a 400 naming what it found
    with pytest.raises(openai.BadRequestError) as refused:
        missing(model="tiny-reading", image=[png_bytes(picture), png_bytes(reference)],
                prompt="put the logo on the green box", quality="low")
    assert refused.value.body["code"] == "target_not_found" and "red box" in refused.value.body["message"]


def test_without_a_reader_a_reference_still_goes_to_a_cell(models_server, sdk):
    """'the star logo' names no object a model without a reader draws: the text is a composition, by cell."""
    picture = boxes_picture({RED_BOX: (220, 30, 30)})
    reference = Image.new("RGB", (10, 10), (250, 214, 40))
    result = sdk.images.edit(model="tiny-sd", image=[png_bytes(picture), png_bytes(reference)],
                             prompt="put the star logo in the bottom right", quality="low", extra_body={"seed": 1})
    composition = models_server.audit_entry(result.data[0].model_extra["id"])["parameters"]["composition"]
    assert composition["target"]["kind"] == "cell" and composition["target"]["label"] == "bottom right"
    assert min(composition["placed_box"]) >= 64 * 2 // 3 - 1


def test_an_operators_reader_confines_an_unmasked_edit_to_the_object_it_names(sdk):
    """SD cannot edit by instruction; with a reader that finds "the red box", the edit is an inpainting of that
    box, and every pixel outside it is the input's own."""
    picture = boxes_picture({RED_BOX: (220, 30, 30), BLUE_BOX: (35, 90, 225)})
    result = sdk.images.edit(model="tiny-reading", image=png_bytes(picture), prompt="make the red box green",
                             quality="low", extra_body={"seed": 5})
    made = np.asarray(decode(result.data[0].b64_json).convert("RGB"))
    outside = np.ones((64, 64), bool)
    outside[RED_BOX[1] - 1:RED_BOX[3] + 1, RED_BOX[0] - 1:RED_BOX[2] + 1] = False
    assert (made[outside] == np.asarray(picture)[outside]).all()
    assert (made[~outside] != np.asarray(picture)[~outside]).any()
    with pytest.raises(openai.BadRequestError) as refused:  # the same model without the reader cannot do it
        sdk.images.edit(model="tiny-sd", image=png_bytes(picture), prompt="make the red box green", quality="low")
    assert refused.value.body["code"] == "unsupported_task"


def test_an_operators_reader_makes_gif_output_possible(sdk):
    picture_prompt = "a red box moving right"
    result = sdk.images.generate(model="tiny-reading", prompt=picture_prompt, size="64x64", quality="low",
                                 output_format="gif", frame_count=3, extra_body={"seed": 2})
    gif = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert gif.format == "GIF"
    assert result.data[0].model_extra["validation"]["frames"]["motion"] == "right"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.generate(model="tiny-sd", prompt=picture_prompt, size="64x64", output_format="gif")
    assert refused.value.body["param"] == "output_format"


def test_a_scene_reader_that_is_not_one_stops_the_server_at_start(tmp_path):
    from pictor.engine.models_file import ModelsFileError, make_scene_reader

    with pytest.raises(ModelsFileError, match="not a pictor.engine.scene.SceneReader"):
        make_scene_reader("fractions:Fraction")
    with pytest.raises(ModelsFileError, match="cannot import module"):
        make_scene_reader("no_such_module_here:Reader")
