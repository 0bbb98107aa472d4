"""Artifact downloads from disk with HTTP Range support (RFC 9110 section 14).

Starlette's ``FileResponse`` already streams files and serves single and multiple byte
ranges (206, ``multipart/byteranges``, ``If-Range``); we reuse it. We parse the header
ourselves first only to differ where Starlette is stricter than the RFC or would not answer
in problem+json:

- a syntactically invalid ``Range`` (or one in another unit) is ignored -> 200 full body;
- ranges that start past the end are dropped; if none is left -> 416 problem+json with
  ``Content-Range: bytes */<size>``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from api.problems import Problem, problem_response

MEDIA_TYPES = {
    ".png": "image/png",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".mp4": "video/mp4",
    ".pth": "application/octet-stream",
}
MAX_RANGES = 100


def parse_range(header: str, size: int) -> list[tuple[int, int]] | None:
    """Satisfiable ranges as inclusive ``(first, last)``; None if the header is to be ignored.

    An empty list means no range is satisfiable (-> 416).
    """
    units, sep, spec = header.partition("=")
    if not sep or units.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in spec.split(",")]
    if not parts or len(parts) > MAX_RANGES:
        return None
    out: list[tuple[int, int]] = []
    for part in parts:
        first_s, dash, last_s = part.partition("-")
        first_s, last_s = first_s.strip(), last_s.strip()
        if (
            not dash
            or not (first_s.isdigit() or first_s == "")
            or not (last_s.isdigit() or last_s == "")
        ):
            return None
        if first_s == "":
            if last_s == "":
                return None
            suffix = int(last_s)
            if suffix > 0 and size > 0:
                out.append((max(size - suffix, 0), size - 1))
            continue
        first = int(first_s)
        if last_s and int(last_s) < first:
            return None  # invalid range-spec: the whole header is ignored
        if first < size:
            last = int(last_s) if last_s else size - 1
            out.append((first, min(last, size - 1)))
    return out


class _RangeFileResponse(FileResponse):
    """FileResponse that sees our normalised ``Range`` header (or none)."""

    def __init__(self, *args: object, range_header: str | None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._range_header = range_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k != b"range"]
        if self._range_header is not None:
            headers.append((b"range", self._range_header.encode("latin-1")))
        await super().__call__({**scope, "headers": headers}, receive, send)


def file_response(
    request: Request,
    path: Path,
    *,
    download_name: str,
    media_type: str | None = None,
    inline: bool = False,
) -> Response:
    """Stream ``path`` honouring Range; 404 problem if the file is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Problem(
            404, "the artifact file is no longer on disk", slug="artifact-missing"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise Problem(404, "the artifact file is no longer on disk", slug="artifact-missing")
    media_type = media_type or MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    range_header: str | None = None
    raw = request.headers.get("range")
    if raw is not None:
        ranges = parse_range(raw, st.st_size)
        if ranges == []:
            return problem_response(
                request,
                416,
                f"none of the requested ranges starts before the end of the {st.st_size}-byte file",
                slug="range-not-satisfiable",
                headers={"Content-Range": f"bytes */{st.st_size}", "Accept-Ranges": "bytes"},
            )
        if ranges:
            range_header = "bytes=" + ",".join(f"{a}-{b}" for a, b in ranges)
    return _RangeFileResponse(
        path,
        media_type=media_type,
        filename=download_name,
        stat_result=st,
        content_disposition_type="inline" if inline else "attachment",
        range_header=range_header,
    )
