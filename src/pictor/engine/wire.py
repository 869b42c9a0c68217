"""Engine requests, results and capabilities as plain values, for a model that runs in another process (a Ray
Serve replica): images travel as their raw pixels (mode, size, bytes), so what arrives is exactly what was made."""

from __future__ import annotations

from dataclasses import asdict, fields

from PIL import Image

from pictor.engine.protocol import Capabilities, EngineRequest, EngineResult

WireImage = tuple[str, tuple[int, int], bytes]


def image_to_wire(image: Image.Image) -> WireImage:
    return image.mode, image.size, image.tobytes()


def image_from_wire(value: WireImage) -> Image.Image:
    mode, size, data = value
    return Image.frombytes(mode, tuple(size), data)


def request_to_wire(request: EngineRequest) -> dict:
    values = {field.name: getattr(request, field.name) for field in fields(request)}
    values["images"] = [image_to_wire(image) for image in request.images]
    values["mask"] = image_to_wire(request.mask) if request.mask is not None else None
    return values


def request_from_wire(values: dict) -> EngineRequest:
    return EngineRequest(**{**values, "images": [image_from_wire(image) for image in values["images"]],
                            "mask": image_from_wire(values["mask"]) if values["mask"] is not None else None})


def result_to_wire(result: EngineResult) -> dict:
    return {"image": image_to_wire(result.image), "seed": result.seed, "unknown_words": list(result.unknown_words),
            "revised_prompt": result.revised_prompt, "model_seconds": result.model_seconds}


def result_from_wire(values: dict) -> EngineResult:
    return EngineResult(image_from_wire(values["image"]), values["seed"], list(values["unknown_words"]),
                        values["revised_prompt"], values["model_seconds"])


def capabilities_to_wire(capabilities: Capabilities) -> dict:
    values = asdict(capabilities)
    values["tasks"] = sorted(capabilities.tasks)
    return values


def capabilities_from_wire(values: dict) -> Capabilities:
    return Capabilities(**{**values, "tasks": frozenset(values["tasks"]), "step_range": tuple(values["step_range"])})
