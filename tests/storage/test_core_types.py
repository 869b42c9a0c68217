import pytest

from pictor.core import Artifact, Decision, ImageJob, InvalidJob, JobKind, new_image_id, parse_size, sha256_hex
from pictor.service.errors import ServiceError


def test_generate_job_defaults_and_dimensions() -> None:
    job = ImageJob(kind="generate", prompt="a red circle", size="1536x1024")

    assert job.kind is JobKind.GENERATE
    assert (job.n, job.output_format, job.quality, job.background) == (1, "png", "auto", "auto")
    assert job.dimensions == (1536, 1024)
    assert ImageJob(kind=JobKind.GENERATE, prompt="x").dimensions is None


def test_parameters_name_inputs_by_hash_not_bytes() -> None:
    job = ImageJob(kind="edit", prompt="make it blue", images=[b"one", b"two"], mask=b"mask", seed=3)

    params = job.parameters()

    assert params["input_hashes"] == [sha256_hex(b"one"), sha256_hex(b"two")]
    assert params["mask_hash"] == sha256_hex(b"mask")
    assert (params["kind"], params["seed"]) == ("edit", 3)
    assert not any(isinstance(value, bytes) for value in params.values())


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "generate", "prompt": ""},
        {"kind": "generate", "prompt": "x", "n": 0},
        {"kind": "generate", "prompt": "x", "size": "big"},
        {"kind": "generate", "prompt": "x", "output_format": "bmp"},
        {"kind": "generate", "prompt": "x", "output_compression": 101},
        {"kind": "generate", "prompt": "x", "background": "transparent", "output_format": "jpeg"},
        {"kind": "generate", "prompt": "x", "images": (b"img",)},
        {"kind": "edit", "prompt": "x"},
        {"kind": "variation", "images": (b"a", b"b")},
        {"kind": "upscale", "prompt": "x"},
    ],
)
def test_invalid_jobs_are_refused(fields: dict) -> None:
    with pytest.raises(ValueError):
        ImageJob(**fields)


def test_variation_needs_no_prompt() -> None:
    assert ImageJob(kind="variation", images=(b"a",)).kind is JobKind.VARIATION


def test_artifact_hash_follows_its_bytes() -> None:
    art = Artifact(id=new_image_id(), data=b"bytes", format="webp", width=2, height=3, parents=["img_a"])

    assert art.content_hash == sha256_hex(b"bytes")
    assert art.parents == ("img_a",)
    assert art.created.tzinfo is not None
    with pytest.raises(ValueError):
        Artifact(id="img_x", data=b"", format="png", width=0, height=1)


def test_decision_records_rules() -> None:
    decision = Decision(allowed=False, stage="input", rule_ids=["violence.gore"], categories=["violence"])

    assert decision.blocked and decision.rule_ids == ("violence.gore",)
    with pytest.raises(ValueError):
        Decision(allowed=True, stage="middle")


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"kind": "generate", "prompt": "x", "size": "big"}, "size", "invalid_size"),
    ({"kind": "generate", "prompt": "x", "n": 0}, "n", "invalid_value"),
    ({"kind": "generate", "prompt": "x", "quality": "ultra"}, "quality", "invalid_value"),
    ({"kind": "generate", "prompt": "x", "background": "transparent", "output_format": "jpeg"}, "background",
     "invalid_value"),
    ({"kind": "generate", "prompt": "x", "background": "transparent", "output_format": "gif"}, "background",
     "invalid_value"),
    ({"kind": "generate", "prompt": "x", "output_format": "svg", "n": 2}, "n", "invalid_value"),
    ({"kind": "generate", "prompt": "x", "frame_duration_ms": 100}, "frame_duration_ms", "invalid_value"),
    ({"kind": "generate", "prompt": "x", "output_format": "gif", "frame_count": 17}, "frame_count", "invalid_value"),
    ({"kind": "generate", "prompt": "x", "candidates": 9}, "candidates", "invalid_value"),
    ({"kind": "edit", "prompt": "x", "images": (b"a",), "mask": b"m", "output_format": "gif"}, "mask",
     "invalid_value"),
    ({"kind": "edit", "prompt": "x", "images": (b"a",), "mask": b"m", "markup": b"k"}, "markup", "invalid_value"),
    ({"kind": "generate", "prompt": "x", "mask": b"m"}, "mask", "invalid_value"),
    ({"kind": "edit", "prompt": "x"}, "image", "missing_image"),
    ({"kind": "generate", "prompt": ""}, "prompt", "invalid_value"),
])
def test_a_broken_rule_names_its_parameter_and_code(fields: dict, param: str, code: str) -> None:
    """The OpenAI error's `param` and `code`, whichever layer built the job (the API answers them as a 400)."""
    with pytest.raises(InvalidJob) as refused:
        ImageJob(**fields)
    assert (refused.value.param, refused.value.code) == (param, code)
    assert isinstance(refused.value, ServiceError)  # caught and reported like every other refusal


def test_sizes_have_one_reading() -> None:
    assert parse_size("auto") is None
    assert parse_size("1536x1024") == (1536, 1024)
    for bad in ("big", "0x16", "16x", "x16", "16X16", " 16x16", "16x16\n", "-16x16", "16x16x16", "１６x16"):
        with pytest.raises(InvalidJob):
            parse_size(bad)
