"""Request bodies a route reads itself: multipart forms, and fields validated by a wire model outside FastAPI's own
body parsing (a multipart edit's fields, a job's stored request), refused in the same 400 shape."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import Field, File, MultipartParser, MultipartState, create_form_parser

from pictor.api.errors import ApiError
from pictor.api.text_guard import form_nul_field

FILE_FIELDS = ("image", "image[]", "mask", "markup")
MAX_FORM_FILES = 18
MAX_FORM_FIELDS = 64
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")

Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], fields: dict[str, Any]) -> Model:
    """`fields` as `model`; a RequestValidationError, so the error handlers answer as for a JSON body."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


class FormError(ValueError):
    """A body that is not a readable form, or has more parts than a request may."""


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """A form body's fields as strings and its files' bytes by name. CPU-bound (python-multipart walks every
    byte of a 100 MB body): run it off the event loop. A body of another type holds no form: nothing."""
    if not content_type.lower().startswith(FORM_TYPES):
        return {}, {}
    fields: dict[str, str] = {}
    files: dict[str, list[bytes]] = {}

    def on_field(field: Field) -> None:
        if len(fields) >= MAX_FORM_FIELDS:
            raise FormError(f"more than {MAX_FORM_FIELDS} fields")
        fields[field.field_name.decode()] = (field.value or b"").decode()

    def on_file(file: File) -> None:
        if sum(map(len, files.values())) >= MAX_FORM_FILES:
            raise FormError(f"more than {MAX_FORM_FILES} files")
        file.file_object.seek(0)
        files.setdefault(file.field_name.decode(), []).append(file.file_object.read())
        file.close()

    # Everything stays in memory: the body already is, and is bounded by the request limit.
    config = {"MAX_MEMORY_FILE_SIZE": len(body) + 1}
    try:
        parser = create_form_parser({"Content-Type": content_type.encode("latin-1")}, on_field, on_file, config)
        parser.write(body)
        parser.finalize()
        # python-multipart does not yet check that the body ended where a form ends (its finalize says so).
        inner = parser.parser
        if isinstance(inner, MultipartParser) and inner.state not in (MultipartState.END,
                                                                      MultipartState.BOUNDARY_PADDING):
            raise FormError("the body ends before the form's closing boundary")
    except FormError:
        raise
    except Exception as error:  # python-multipart's own errors, undecodable names and values
        raise FormError(str(error) or type(error).__name__) from None
    return fields, files


async def read_form(request: Request) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """Multipart (or URL-encoded) fields as strings and files by name; `image` and `image[]` in any order. The body
    is read on the event loop (BodyLimit has bounded it) and parsed in a worker thread."""
    body = await request.body()
    try:
        fields, files = await asyncio.to_thread(parse_form, request.headers.get("content-type", ""), body)
    except FormError as error:
        raise ApiError(400, f"Could not read the multipart form: {error}", param=None, code="invalid_form") from None
    for name in FILE_FIELDS:
        if name in fields:
            raise ApiError(400, f"'{name}' must be a file upload.", param=name, code="invalid_image_file")
    if (param := form_nul_field(fields)) is not None:
        raise ApiError(400, f"'{param}' contains a NUL character, which no field accepts.", param=param,
                       code="invalid_character")
    return fields, files
