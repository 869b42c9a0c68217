"""An image classifier behind the API: the operator names one (PICTOR_IMAGE_CLASSIFIER), it checks every input
and output image, its scores go into the audit entry, and its verdict blocks (400 `moderation_blocked`, stage
`input` or `output`, nothing stored)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from PIL import Image

from .helpers import Server, png_bytes, start_server
from .test_moderation import audit_entries

REPOSITORY = Path(__file__).resolve().parents[2]


def serve_with(tmp_path_factory, name: str, spec: str) -> Server:
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return start_server(tmp_path_factory.mktemp(name), {"PICTOR_IMAGE_CLASSIFIER": spec, "PYTHONPATH": path})


@pytest.fixture(scope="module")
def red_server(tmp_path_factory) -> Iterator[Server]:
    running = serve_with(tmp_path_factory, "red", "tests.policy_classifiers:RedIsExplicit")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def nudenet_server(tmp_path_factory) -> Iterator[Server]:
    running = serve_with(tmp_path_factory, "nudenet", "nudenet")
    yield running
    running.stop()


def test_an_output_the_classifier_flags_is_refused_and_not_stored(red_server):
    client = red_server.client()
    before = red_server.state()
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a large red square in the center on a white background", size="64x64",
                               extra_body={"seed": 1})
    details = caught.value.body["moderation_details"]
    assert details["stage"] == "output" and details["categories"] == ["sexual"]
    assert details["rule_ids"] == ["image.sexual"]
    assert red_server.state() == before
    refusal = [e for e in audit_entries(red_server) if e["event"] == "refused"][-1]
    assert refusal["policy"]["scores"] == {"sexual": 1.0}


def test_an_input_the_classifier_flags_is_refused(red_server):
    client = red_server.client()
    red = png_bytes(Image.new("RGB", (64, 64), (220, 20, 20)))
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=("red.png", red, "image/png"), prompt="add a blue circle", size="64x64")
    assert caught.value.body["moderation_details"]["stage"] == "input"


def test_what_the_classifier_passes_is_made_with_its_scores_audited(red_server):
    made = red_server.client().images.generate(prompt="a small blue circle on the left on a white background",
                                               size="64x64", extra_body={"seed": 2})
    entry = red_server.audit_entry(made.data[0].id)
    checks = entry["policy"]["checks"]
    assert [c["stage"] for c in checks] == ["input", "output"]
    assert checks[1]["rule_ids"] == ["image.scored"] and checks[1]["scores"] == {"sexual": 0.0}


def test_nudenet_checks_every_output_and_passes_the_worlds_images(nudenet_server):
    made = nudenet_server.client().images.generate(prompt="two yellow stars and a green heart", size="256x256",
                                                   n=2, extra_body={"seed": 3})
    for image in made.data:
        checks = nudenet_server.audit_entry(image.id)["policy"]["checks"]
        output = [c for c in checks if c["stage"] == "output"][0]
        assert output["rule_ids"] == ["image.scored"] and output["scores"]["sexual"] < 0.3
