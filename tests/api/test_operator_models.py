"""Operators' diffusers models through `pictor serve --model NAME=PATH --models FILE` and the official SDK."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import openai
import pytest
from tiny_pipelines import build_tiny

from .helpers import Server, alpha_mask, decode, png_bytes, run_cli, scene, start_server

PROMPT = "a red cat on a blue background"


@pytest.fixture(scope="module")
def models_server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("operator-models")
    sd = build_tiny("sd", root / "weights" / "sd")
    ip2p = build_tiny("instruct-pix2pix", root / "weights" / "ip2p")
    build_tiny("flux-schnell", root / "weights" / "flux")
    (root / "models.toml").write_text(
        '[[model]]\nname = "tiny-turbo"\npath = "weights/sd"\nfamily = "sd-turbo"\n\n'
        '[[model]]\nname = "tiny-flux"\npath = "weights/flux"\n')
    running = start_server(root, extra_args=("--model", f"tiny-sd={sd}", "--model", f"tiny-ip2p={ip2p}",
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
    assert cards["tiny-sd"]["capabilities"]["transparent_background"] is False
    assert len(cards["tiny-sd"]["weights_sha256"]) == 64
    assert cards["tiny-turbo"]["weights_sha256"] == cards["tiny-sd"]["weights_sha256"]  # the same folder


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-turbo", "tiny-flux"])
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
