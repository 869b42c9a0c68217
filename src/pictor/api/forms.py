"""Request bodies a route reads itself: multipart forms, and fields validated by a wire model outside FastAPI's own
body parsing (a multipart edit's fields, a job's stored request), refused in the same 400 shape."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from pictor.api.errors import ApiError
from pictor.api.text_guard import form_nul_field

FILE_FIELDS = ("image", "image[]", "mask", "markup")
MAX_FORM_FILES = 18

Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], fields: dict[str, Any]) -> Model:
    """`fields` as `model`; a RequestValidationError, so the error handlers answer as for a JSON body."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


async def read_form(request: Request) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """Multipart fields as strings and files by name; `image` and `image[]` in any order."""
    try:
        form = await request.form(max_files=MAX_FORM_FILES, max_fields=64)
    except Exception as error:  # malformed multipart bodies, too many parts
        raise ApiError(400, f"Could not read the multipart form: {error}", param=None, code="invalid_form") from None
    fields: dict[str, str] = {}
    files: dict[str, list[bytes]] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.setdefault(name, []).append(await value.read())
        elif name in FILE_FIELDS:
            raise ApiError(400, f"'{name}' must be a file upload.", param=name, code="invalid_image_file")
        else:
            fields[name] = value
    if (param := form_nul_field(fields)) is not None:
        raise ApiError(400, f"'{param}' contains a NUL character, which no field accepts.", param=param,
                       code="invalid_character")
    return fields, files
