"""Streaming multipart/form-data uploads: request body -> temp file in the data dir.

Starlette's ``request.form()`` spools files into ``/tmp`` and only then lets us look at them;
here the body is parsed chunk by chunk with python-multipart's ``MultipartParser`` so that

- memory stays flat (one ~1 MiB buffer, whatever the upload size),
- the size limit aborts the request as soon as it is crossed (and ``Content-Length`` is
  checked before reading anything),
- the sha256 is computed while the bytes go by,
- the file lands in ``<data dir>/tmp`` (same filesystem as its final place, so the caller
  can ``os.replace`` it atomically), and every temp file is removed when the request fails.

Parsing, hashing and writing run in a worker thread, not on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from api.problems import Problem, invalid
from persistence.storage import Storage

log = logging.getLogger(__name__)

BUFFER_BYTES = 1024 * 1024  # body bytes handed to the parser thread at once
MAX_FIELD_BYTES = 64 * 1024  # a plain (non-file) form field
MAX_PARTS = 16
ENVELOPE_BYTES = 1024 * 1024  # multipart headers, boundaries and small fields beyond the file
TMP_SUFFIX = ".upload"
STALE_TMP_S = 24 * 3600
FREE_SPACE_MARGIN = 256 * 1024 * 1024  # keep room for checkpoints and the database


@dataclass
class ReceivedFile:
    """A file part written to a temp file; ``path`` disappears with the request unless moved."""

    field: str
    filename: str
    content_type: str | None
    path: Path
    size: int
    sha256: str


@dataclass
class Upload:
    files: dict[str, ReceivedFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """python-multipart callbacks; called from one worker thread at a time."""

    def __init__(
        self,
        boundary: bytes,
        storage: Storage,
        max_file_bytes: int,
        file_fields: frozenset[str],
    ) -> None:
        self.storage = storage
        self.max_file_bytes = max_file_bytes
        self.file_fields = file_fields
        self.upload = Upload()
        self.temp_paths: list[Path] = []
        self.parts = 0
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._name = ""
        self._filename: str | None = None
        self._file: IO[bytes] | None = None
        self._hash: Any = None
        self._size = 0
        self._value = bytearray()
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def write(self, data: bytes) -> None:
        try:
            self.parser.write(data)
        except MultipartParseError as exc:
            raise Problem(400, f"malformed multipart body: {exc}", slug="bad-multipart") from None

    def finish(self) -> None:
        self.parser.finalize()
        if not self.ended:
            raise Problem(
                400, "incomplete multipart body (no closing boundary)", slug="bad-multipart"
            )

    def close(self) -> None:
        """Close a half-written file (on failure); the caller removes temp paths."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    # callbacks ---------------------------------------------------------------------------

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Problem(413, f"too many form parts (max {MAX_PARTS})", slug="too-large")
        self._headers = {}
        self._header_field.clear()
        self._header_value.clear()
        self._value.clear()
        self._name, self._filename = "", None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace")
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition", ""))
        if disposition != b"form-data" or b"name" not in options:
            raise Problem(400, "a multipart part has no form-data name", slug="bad-multipart")
        self._name = options[b"name"].decode("utf-8", "replace")
        raw = options.get(b"filename")
        self._filename = raw.decode("utf-8", "replace") if raw is not None else None
        if self._name in self.file_fields:
            if self._name in self.upload.files:
                raise invalid(self._name, f"field '{self._name}' was sent more than once")
            path = self.storage.tmp_path(TMP_SUFFIX)
            self.temp_paths.append(path)
            self._file = path.open("xb")
            self._hash = hashlib.sha256()
            self._size = 0
        elif self._filename is not None:
            raise invalid(self._name, f"unexpected file field '{self._name}'")
        elif self._name in self.upload.fields:
            raise invalid(self._name, f"field '{self._name}' was sent more than once")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._size += len(chunk)
            if self._size > self.max_file_bytes:
                raise Problem(
                    413,
                    f"the file is larger than the limit of {self.max_file_bytes} bytes",
                    slug="too-large",
                )
            self._hash.update(chunk)
            self._file.write(chunk)
        else:
            self._value += chunk
            if len(self._value) > MAX_FIELD_BYTES:
                raise Problem(
                    413, f"form field '{self._name}' is larger than 64 KiB", slug="too-large"
                )

    def _part_end(self) -> None:
        if self._file is not None:
            fh, self._file = self._file, None
            fh.flush()
            os.fsync(fh.fileno())  # durable before the database row that points to it
            fh.close()
            self.upload.files[self._name] = ReceivedFile(
                field=self._name,
                filename=safe_filename(self._filename or self._name),
                content_type=self._headers.get("content-type"),
                path=self.temp_paths[-1],
                size=self._size,
                sha256=self._hash.hexdigest(),
            )
        else:
            self.upload.fields[self._name] = self._value.decode("utf-8", "replace")

    def _end(self) -> None:
        self.ended = True


@contextlib.asynccontextmanager
async def receive_multipart(
    request: Request,
    storage: Storage,
    *,
    max_file_bytes: int,
    file_fields: Iterable[str] = ("file",),
) -> AsyncIterator[Upload]:
    """Parse the multipart body into temp files + fields; temp files are removed on exit.

    The caller moves the file it keeps (``os.replace``) inside the ``async with`` block.
    """
    boundary = _boundary(request)
    limit = max_file_bytes + ENVELOPE_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(
            413,
            f"request body of {declared} bytes exceeds the upload limit of {max_file_bytes} bytes",
            slug="too-large",
        )
    if declared is not None and declared.isdigit():
        _check_free_space(storage, int(declared))
    rx = _Receiver(boundary, storage, max_file_bytes, frozenset(file_fields))
    try:
        total = 0
        buf = bytearray()
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise Problem(
                        413,
                        f"request body exceeds the upload limit of {max_file_bytes} bytes",
                        slug="too-large",
                    )
                buf += chunk
                if len(buf) >= BUFFER_BYTES:
                    data, buf = bytes(buf), bytearray()
                    await anyio.to_thread.run_sync(rx.write, data)
            if buf:
                await anyio.to_thread.run_sync(rx.write, bytes(buf))
            await anyio.to_thread.run_sync(rx.finish)
        except ClientDisconnect:
            raise Problem(
                400, "the client disconnected during the upload", slug="aborted"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _no_space() from None
            raise
        yield rx.upload
    finally:
        rx.close()
        for p in rx.temp_paths:
            p.unlink(missing_ok=True)


def _no_space() -> Problem:
    return Problem(
        507, "the service is out of storage space; try again later", slug="insufficient-storage"
    )


def _check_free_space(storage: Storage, needed: int) -> None:
    """Refuse at once an upload that cannot fit (it is written in full before validation)."""
    storage.root.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(storage.root).free < needed + FREE_SPACE_MARGIN:
        raise _no_space()


def _boundary(request: Request) -> bytes:
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data":
        raise Problem(
            415,
            "uploads must be multipart/form-data with the file in field 'file'",
            slug="unsupported-media-type",
        )
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise Problem(400, "multipart/form-data without a valid boundary", slug="bad-multipart")
    return boundary


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def safe_filename(name: str) -> str:
    """The client's file name for display only: no directories, control characters or excess."""
    base = re.split(r"[\\/]", name)[-1]
    base = _UNSAFE.sub("", base).strip() or "upload"
    return base[:255]


def clean_stale_temp(storage: Storage, older_than_s: float = STALE_TMP_S) -> int:
    """Remove upload temp files left by a killed process; returns how many were removed."""
    removed = 0
    cutoff = time.time() - older_than_s
    tmp = storage.root / "tmp"
    if not tmp.is_dir():
        return 0
    for p in tmp.glob(f"*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < cutoff:
                p.unlink()
                removed += 1
    return removed


def upload_request_body(*, extra_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a multipart upload (the handler parses the stream itself)."""
    props: dict[str, Any] = {"file": {"type": "string", "format": "binary"}}
    props.update(extra_fields or {})
    required = ["file"] + [k for k, v in (extra_fields or {}).items() if v.pop("required", False)]
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": props, "required": required}
            }
        },
    }
