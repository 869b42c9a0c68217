"""Async jobs and batch lines on the wire: the endpoints they may name, a stored request parsed exactly as the
synchronous endpoint parses its body, and a stored result rendered as that endpoint's answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pictor.api.forms import validated
from pictor.api.schemas import (
    EditJsonRequest,
    GenerationRequest,
    VariationJsonRequest,
    _Common,
    data_url_bytes,
    images_response,
)
from pictor.core import Artifact, ImageJob, JobKind
from pictor.service.errors import InvalidRequest
from pictor.service.images import ImageService, ImagesResult, ProducedImage
from pictor.storage.database import JobRecord

GENERATIONS, EDITS, VARIATIONS = "/v1/images/generations", "/v1/images/edits", "/v1/images/variations"
Endpoint = Literal["/v1/images/generations", "/v1/images/edits", "/v1/images/variations"]


def parse_request(endpoint: str, body: dict[str, Any], tenant_id: str) -> ImageJob:
    """A job's request body into an ImageJob, exactly as the synchronous endpoint would parse it."""
    fields: _Common
    images: tuple[bytes, ...] = ()
    mask = None
    if endpoint == EDITS:
        fields = edit = validated(EditJsonRequest, body)
        images = tuple(data_url_bytes(ref, "images") for ref in edit.images)
        mask = data_url_bytes(edit.mask, "mask") if edit.mask is not None else None
        kind, prompt = JobKind.EDIT, edit.prompt
    elif endpoint == VARIATIONS:
        fields = variation = validated(VariationJsonRequest, body)
        images = (data_url_bytes(variation.image, "image"),)
        kind, prompt = JobKind.VARIATION, ""
    else:
        fields = generation = validated(GenerationRequest, body)
        kind, prompt = JobKind.GENERATE, generation.prompt
    if fields.stream:
        raise InvalidRequest("A job reports through GET /v1/jobs/{id}/events; 'stream' is not available in a job.",
                             "stream", "invalid_value")
    return fields.job(kind, prompt, tenant_id, images, mask)


def render_result(record: JobRecord, images: ImageService, tenant_id: str,
                  links: Callable[[str], str]) -> dict[str, Any]:
    """A succeeded job's result as the synchronous endpoint's body: the images' bytes read again from the store
    (b64_json), or fresh signed links (`url`)."""
    summary = record.result or {}
    response_format = record.request.get("response_format")
    produced = []
    for item in summary.get("images", []):
        data = b"" if response_format == "url" else images.tenant_image_bytes(tenant_id, item["id"])[0]
        artifact = Artifact(id=item["id"], data=data, format=summary["output_format"], width=item["width"],
                            height=item["height"])
        produced.append(ProducedImage(artifact, item["seed"], item.get("revised_prompt"), item["unknown_words"],
                                      item.get("validation")))
    result = ImagesResult(created=summary["created"], images=produced, size=summary["size"],
                          quality=summary["quality"], background=summary["background"],
                          output_format=summary["output_format"], usage=summary["usage"],
                          svg_usage=summary.get("svg_usage"))
    return images_response(result, response_format, links)
