import pytest

from pictor.core import Artifact, Decision, ImageJob, JobKind, new_image_id, sha256_hex


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
