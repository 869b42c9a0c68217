"""The service layer in-process: Pictor built by its composition root on a temporary data folder, called directly
(no HTTP), with the embedded model and real storage, signing and audit."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from pictor.assembly import Components
from pictor.config import Settings
from pictor.embedded.render import render
from pictor.embedded.world import Background, Scene, SceneObject
from pictor.storage import Principal

BLUE_SQUARE = SceneObject("square", "blue", "large", (1, 1))
RED_CIRCLE = SceneObject("circle", "red", "medium", (0, 2))


def world_png(side: int = 128) -> bytes:
    """A scene of the embedded world (a blue square in the centre, a red circle top right), as a PNG file."""
    image = Image.fromarray(render(Scene((BLUE_SQUARE, RED_CIRCLE), Background(("white",))), side).image)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Iterator[Components]:
    parts = Components.build(Settings(data_dir=tmp_path_factory.mktemp("service"), result_cache_mb=0))
    yield parts
    parts.close()


@pytest.fixture(scope="module")
def principal(built: Components) -> Principal:
    tenant = built.database.ensure_tenant("service-tests")
    return Principal(tenant_id=tenant.id, tenant_name=tenant.name, key_id=None, role="admin")
