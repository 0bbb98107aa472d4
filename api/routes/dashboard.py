"""The browser dashboard: ``/`` serves the page, ``/dashboard/<file>`` its static assets.

No build step: the files in ``api/dashboard/`` are served as they are. They carry no content
hash in their names, so instead of long-lived caching every response has an ETag and
``Cache-Control: no-cache``: the browser revalidates (a cheap 304) and never runs a stale
``app.js`` against a newer API. The page needs no authentication (it holds no data; the
JavaScript sends the user's API key with every ``/v1`` call), and it is left out of the
OpenAPI schema because it is not part of the API.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.problems import not_found

router = APIRouter(include_in_schema=False)

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"

# Explicit types: mimetypes depends on the host's /etc/mime.types, and a module script
# served as text/plain is refused by browsers.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

# Same-origin only, no inline script: the page can talk to this API and nothing else (the
# key it holds must not leak to a third-party origin). blob: carries the previews and the
# MP4, which are fetched with the Authorization header and shown through object URLs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'self'; "
    "frame-ancestors 'none'"
)


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> tuple[bytes, str]:
    """File bytes and a strong ETag; keyed by mtime so an edited file is picked up."""
    data = path.read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _serve(request: Request, path: Path) -> Response:
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None or not path.is_file():
        raise not_found("dashboard file", path.name)
    data, etag = _load(path, path.stat().st_mtime_ns)
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else data
    headers["Content-Length"] = str(len(data))
    return Response(body, media_type=content_type, headers=headers)


def _etags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


@router.api_route("/", methods=["GET", "HEAD"])
def dashboard_index(request: Request) -> Response:
    return _serve(request, DASHBOARD_DIR / "index.html")


@router.api_route("/dashboard/{name}", methods=["GET", "HEAD"])
def dashboard_file(name: str, request: Request) -> Response:
    """Only plain file names directly inside the dashboard directory (no sub-paths)."""
    if name.startswith(".") or "/" in name or "\\" in name:
        raise not_found("dashboard file", name)
    return _serve(request, DASHBOARD_DIR / name)
