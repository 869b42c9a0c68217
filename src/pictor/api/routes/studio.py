"""The web studio: static HTML, CSS and ES modules shipped inside the package, served at `/` and `/studio/`.

The studio is a client of the public HTTP API only (it signs in with an API key kept in the browser's
sessionStorage). Nothing here is built: the files under `pictor/api/studio/` are what the browser runs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STUDIO_DIR = Path(__file__).resolve().parent.parent / "studio"

# The API key lives in sessionStorage, so script injection is what to fear most: only the studio's own files
# may run, and images are the studio's own links, data: URLs (partial previews) or blob: URLs (downloads).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")
HEADERS = {"content-security-policy": CONTENT_SECURITY_POLICY, "cache-control": "no-cache",
           "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STUDIO_DIR / "index.html", media_type="text/html", headers=HEADERS)


class _StudioFiles(StaticFiles):
    """Static files that browsers revalidate (a new release is picked up at once) and never sniff."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update({"cache-control": "no-cache", "x-content-type-options": "nosniff"})
        return response


def install(app: FastAPI) -> None:
    """`/` (the studio's page) and `/studio/*` (its scripts and styles); API routes are unaffected."""
    app.include_router(router)
    app.mount("/studio", _StudioFiles(directory=STUDIO_DIR), name="studio")
