"""GET /v1/images: the tenant's images, newest first, optionally only those whose prompt contains some text.

The web studio's gallery reads this; each item carries a signed link (the same links as `response_format=url`
answers), so that a browser can show the picture without sending the API key for every thumbnail.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from pictor.api.dependencies import Caller, components, image_links
from pictor.api.schemas import MAX_SQL_INTEGER

router = APIRouter()


@router.get("/v1/images")
async def list_images(request: Request, caller: Caller, search: str = Query(default="", max_length=200),
                      limit: int = Query(default=50, ge=1, le=200),
                      offset: int = Query(default=0, ge=0, le=MAX_SQL_INTEGER)) -> dict:
    page = components(request).gallery.search(caller.tenant_id, search, limit, offset)
    url_for = image_links(request, caller)
    data = [{"id": record.id, "object": "image", "created": int(record.created.timestamp()),
             "kind": record.params.get("kind", "unknown"), "prompt": record.params.get("prompt"),
             "model": record.model, "seed": record.seed, "size": f"{record.width}x{record.height}",
             "format": record.format, "parents": list(record.parents),
             "session_id": record.params.get("session_id"), "url": url_for(record.id)}
            for record in page.images]
    return {"object": "list", "data": data, "has_more": page.has_more}
