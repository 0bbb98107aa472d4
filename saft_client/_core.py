"""The sans-I/O core of the sync and the async client: one implementation of everything
but the sending and the sleeping.

Configuration, URLs and auth; building ``httpx.Request``s; interpreting ``httpx.Response``s
(errors mapped by ``saft_client.errors``); the retry policy (whether and when to try again);
paging; the state of an event stream (resume, reconnect) and of a resumable download.
``SaftClient`` and ``AsyncSaftClient`` send the requests built here, sleep for the delays
decided here and feed back what they got, so a fix to any of it lands once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

import httpx

from saft_client._events import Deadline
from saft_client.errors import (
    SaftClientError,
    SaftConnectionError,
    SaftProtocolError,
    api_error,
)
from saft_client.models import Dataset, JobEvent, Model
from saft_client.sse import SSEDecoder, to_job_event

log = logging.getLogger("saft_client")

__version__ = "0.1.0"

DEFAULT_URL = "http://127.0.0.1:8000"  # where ``saft serve`` listens by default
DEFAULT_TIMEOUT = 30.0
USER_AGENT = f"saft-client/{__version__}"
PAGE_LIMIT = 100  # the API's maximum page size: fewest round trips
RETRY_STATUSES = frozenset({502, 503, 504})  # a proxy or a restarting API: try again
SSE_READ_TIMEOUT = 60.0  # the API sends a keep-alive comment every 15 s
CHUNK_BYTES = 1024 * 1024
STACK_SUFFIXES = (".tif", ".tiff")
MODEL_SUFFIXES = (".pth", ".pt")


def resolve_config(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Explicit arguments win over ``SAFT_URL`` / ``SAFT_API_KEY``; the URL has a default."""
    url = (base_url or os.environ.get("SAFT_URL") or DEFAULT_URL).strip()
    if "://" not in url:
        url = "http://" + url  # "host:8000" is what people type
    key = api_key if api_key is not None else os.environ.get("SAFT_API_KEY")
    key = key.strip() if key else None
    return url.rstrip("/"), key or None


def retry_delay(response: httpx.Response, attempt: int) -> float:
    """The server's ``Retry-After`` (seconds, capped) or our own backoff."""
    after = response.headers.get("retry-after", "")
    return min(float(after), 30.0) if after.isdigit() else backoff(attempt)


def backoff(attempt: int, base: float = 0.5, cap: float = 10.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based), doubling up to ``cap``."""
    return min(cap, base * 2 ** max(attempt - 1, 0))


class Urls:
    """Turns API paths and the URLs the API returns into absolute URLs.

    The API's own URLs already carry its root path (``/saft/v1/...`` behind a proxy mounting
    it under ``/saft``); a bare ``/v1/...`` is relative to the base URL.
    """

    def __init__(self, base_url: str) -> None:
        self.base = httpx.URL(base_url)
        if self.base.scheme not in ("http", "https") or not self.base.host:
            raise SaftClientError(f"invalid service URL {base_url!r}", field="url")
        self.prefix = self.base.path.rstrip("/")
        self.origin = (self.base.scheme, self.base.host, self.base.port)

    def resolve(self, url_or_path: str) -> httpx.URL:
        text = str(url_or_path).strip()
        if "://" in text:
            return httpx.URL(text)
        if not text.startswith("/"):
            text = "/" + text
        if self.prefix and not (text == self.prefix or text.startswith(self.prefix + "/")):
            text = self.prefix + text
        return self.base.join(text)

    def same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == self.origin


class BearerAuth(httpx.Auth):
    """Sends the API key only to the service's own origin, never to a foreign URL."""

    def __init__(self, key: str | None, urls: Urls) -> None:
        self.key = key
        self.urls = urls

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        if self.key and self.urls.same_origin(request.url):
            request.headers["Authorization"] = f"Bearer {self.key}"
        yield request


def connection_error(url: httpx.URL, exc: Exception) -> SaftConnectionError:
    """One line naming the server and what went wrong."""
    detail = str(exc) or type(exc).__name__
    return SaftConnectionError(f"cannot reach {url.scheme}://{url.netloc.decode()}: {detail}")


# Failures of the event stream after which ``wait`` polls instead.
STREAM_ERRORS = (SaftClientError, httpx.HTTPError, OSError)


def as_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SaftProtocolError(
            f"expected JSON from {response.request.method} {response.request.url.path}, got "
            f"{response.headers.get('content-type', 'no content type')}"
        ) from None


# ---- requests, responses, retries ---------------------------------------------------------


class RetryPolicy:
    """Whether and when to try again: only requests marked safe to repeat (``retry``), after
    a transport error or a 502/503/504, at most ``retries`` times, with growing delays."""

    def __init__(self, retries: int) -> None:
        self.retries = retries

    def after_error(self, attempt: int, retry: bool) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` after a transport error; None: give up."""
        return backoff(attempt) if retry and attempt <= self.retries else None

    def after_response(self, response: httpx.Response, attempt: int, retry: bool) -> float | None:
        """Seconds to wait before trying again after this answer; None: it is the answer."""
        if retry and response.status_code in RETRY_STATUSES and attempt <= self.retries:
            return retry_delay(response, attempt)
        return None

    def after_broken_download(self, failures: int) -> float | None:
        """A download that broke off is resumed (with ``Range``) this many times."""
        return backoff(failures) if failures <= self.retries else None


class ClientCore:
    """Configuration, request building and response checking of one client (no I/O)."""

    def __init__(
        self, base_url: str | None, api_key: str | None, timeout: float, retries: int
    ) -> None:
        self.base_url, self.api_key = resolve_config(base_url, api_key)
        self.urls = Urls(self.base_url)
        self.timeout = timeout
        self.retry = RetryPolicy(retries)

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments of the ``httpx.Client``/``httpx.AsyncClient`` that sends."""
        return {
            "auth": BearerAuth(self.api_key, self.urls),
            "timeout": self.timeout,
            "headers": {"User-Agent": USER_AGENT},
        }

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> httpx.Request:
        """The request to send; relative paths resolve against the base URL (its root path)."""
        return httpx.Request(
            method,
            self.urls.resolve(str(url)),
            params=params,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            json=json,
            files=files,
            data=data,
            extensions={"timeout": httpx.Timeout(timeout or self.timeout).as_dict()},
        )

    @staticmethod
    def checked(response: httpx.Response) -> httpx.Response:
        """The response, or the ``SaftAPIError`` subclass its status and problem body mean."""
        if response.status_code >= 400:
            raise api_error(response)
        return response


class Pager:
    """Follows a list's ``next`` links: the request of each page and the items kept."""

    def __init__(
        self, path: str, params: Mapping[str, Any] | None, limit: int | None, page_limit: int
    ) -> None:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        query["limit"] = min(page_limit, limit) if limit else page_limit
        self.url: str | None = path
        self.query: dict[str, Any] | None = query
        self.limit = limit
        self.count = 0

    def take(self, page: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The items of one page (up to the limit); sets ``url`` to the next page or None."""
        items = []
        for item in page.get("items") or ():
            items.append(item)
            self.count += 1
            if self.limit is not None and self.count >= self.limit:
                self.url = None
                return items
        self.url = page.get("next")
        self.query = None  # the next link carries the query
        return items


class EventStream:
    """Following a job's server-sent events across reconnects: each connection's request,
    the decoded events, and what to do when a connection drops or ends early.

    A dropped connection is re-opened with ``Last-Event-ID`` after the server's ``retry``
    delay (doubling per failure in a row); ``max_reconnects`` failures in a row raise.
    """

    def __init__(
        self,
        core: ClientCore,
        job_id: str,
        last_event_id: int | str | None,
        *,
        timeout: float | None,
        reconnect: bool,
        max_reconnects: int,
    ) -> None:
        self.core = core
        self.job_id = job_id
        self.deadline = Deadline(timeout, f"job {job_id}")
        self.last = None if last_event_id is None else str(last_event_id)
        self.url = core.urls.resolve(f"/v1/jobs/{job_id}/events")
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.failures = 0
        self.retry_s = 1.0
        self.got_any = False
        self.decoder = SSEDecoder()

    def request(self) -> httpx.Request:
        """The next connection, resuming after the last event seen."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last is not None:
            headers["Last-Event-ID"] = self.last
        left = self.deadline.remaining()
        read = SSE_READ_TIMEOUT if left is None else max(0.05, min(SSE_READ_TIMEOUT, left))
        self.got_any = False
        self.decoder = SSEDecoder()
        timeout = httpx.Timeout(self.core.timeout, read=read)
        return self.core.request("GET", self.url, headers=headers, timeout=timeout)

    @staticmethod
    def check(response: httpx.Response) -> None:
        """An error status (body already read) or anything but an event stream raises."""
        ClientCore.checked(response)
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            raise SaftProtocolError(
                f"expected an event stream from {response.url.path}, got {ctype!r}"
            )

    def feed(self, line: str) -> JobEvent | None:
        """One line of the stream; the event it completes, if any."""
        raw = self.decoder.feed(line)
        if self.decoder.retry_ms is not None:
            self.retry_s = self.decoder.retry_ms / 1000
        if raw is None:
            return None
        self.last = raw.id if raw.id is not None else self.last
        self.got_any, self.failures = True, 0
        return to_job_event(raw)

    def dropped(self, exc: Exception) -> float:
        """Seconds to wait before reconnecting after a transport error (or raise)."""
        self.deadline.check()
        self.failures += 1
        if not self.reconnect or self.failures > self.max_reconnects:
            raise connection_error(self.url, exc) from exc
        log.info("job %s: event stream dropped (%s); resume after %s", self.job_id, exc, self.last)
        return self.deadline.sleep_for(min(self.retry_s * 2 ** (self.failures - 1), 30.0))

    @property
    def must_ask_if_finished(self) -> bool:
        """A connection that ended without events: the job may be final (the API then ends
        the stream at once), which only ``GET /v1/jobs/{id}`` tells."""
        return self.reconnect and not self.got_any

    def ended(self, job_finished: bool | None) -> float | None:
        """After a connection ended cleanly: None to stop, else seconds before reconnecting."""
        if not self.reconnect or job_finished:
            return None
        delay = 0.0
        if not self.got_any:
            self.failures += 1
            if self.failures > self.max_reconnects:
                raise SaftConnectionError(f"event stream of job {self.job_id} keeps ending early")
            delay = self.deadline.sleep_for(self.retry_s)
        return delay


# ---- inputs of a job --------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """An input given as an id (used as is) or a local file (uploaded first)."""

    id: str | None = None
    path: Path | None = None


def _looks_like_path(text: str, suffixes: tuple[str, ...]) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(suffixes)


def dataset_ref(value: Any, field: str) -> Ref | None:
    """A path to upload or a dataset id; a path-looking string that is no file is an error."""
    return _ref(value, field, Dataset, STACK_SUFFIXES)


def model_ref(value: Any, field: str) -> Ref | None:
    """'default', a model id, or a checkpoint file to upload."""
    return _ref(value, field, Model, MODEL_SUFFIXES)


def _ref(value: Any, field: str, kind: type, suffixes: tuple[str, ...]) -> Ref | None:
    """An existing file (to upload), an object of ``kind`` or an id string."""
    if value is None:
        return None
    if isinstance(value, kind):
        return Ref(id=value.id)
    if isinstance(value, os.PathLike) or (isinstance(value, str) and Path(value).is_file()):
        path = Path(value)
        if not path.is_file():
            raise SaftClientError(f"no such file: {path}", field=field)
        return Ref(path=path)
    text = str(value).strip()
    if not text or _looks_like_path(text, suffixes):
        raise SaftClientError(f"no such file: {text or repr(value)}", field=field)
    return Ref(id=text)


@dataclass(frozen=True)
class JobInputs:
    """The inputs of ``submit_job``, every one checked before anything is uploaded."""

    lr: Ref | None
    edge: Ref | None
    smlm: Ref | None
    sr_model: Ref | None
    den_model: Ref | None

    @classmethod
    def check(cls, lr: Any, edge: Any, smlm: Any, sr_model: Any, den_model: Any) -> JobInputs:
        return cls(
            lr=dataset_ref(lr, "lr"),
            edge=dataset_ref(edge, "edge"),
            smlm=dataset_ref(smlm, "smlm"),
            sr_model=model_ref(sr_model, "sr_model"),
            den_model=model_ref(den_model, "den_model"),
        )


def idempotency_headers(key: str | None) -> dict[str, str]:
    """A fresh key unless given, so a retry after a dropped connection cannot create the
    job twice."""
    return {"Idempotency-Key": key or f"saft-client-{uuid.uuid4().hex}"}


def job_body(
    *,
    lr: str,
    edge: str | None,
    smlm: str | None,
    mode: str,
    sr_model: str,
    den_model: str | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The POST /v1/jobs body; parameters left at None take the service's defaults."""
    body: dict[str, Any] = {
        "lr_dataset": lr,
        "mode": mode,
        "sr_model": sr_model,
        "den_model": den_model,
        "params": {k: v for k, v in params.items() if v is not None},
    }
    if edge is not None:
        body["edge_dataset"] = edge
    if smlm is not None:
        body["smlm_dataset"] = smlm
    return body


PARAM_ALIASES = {"learning_rate": "lr"}  # ``lr`` is taken by the input stack


def split_params(params: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """One parameter dict from ``params=`` and keyword arguments (``continuity-level`` and
    ``learning_rate`` spelled the CLI way are accepted too). ``preset`` is passed on like any
    parameter: the service resolves it, so the client needs no copy of the presets."""
    out = dict(params or {})
    for name, value in kwargs.items():
        out[PARAM_ALIASES.get(name, name).replace("-", "_")] = value
    return out


def open_upload(path: Path, field: str) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise SaftClientError(f"cannot read {path}: {exc.strerror}", field=field) from None


# ---- downloads --------------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def filename_from(headers: httpx.Headers, url: httpx.URL) -> str:
    """The server's suggested file name (Content-Disposition), reduced to a safe base name."""
    cd = headers.get("content-disposition", "")
    name = ""
    m = re.search(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", cd, re.IGNORECASE)
    if m:
        name = unquote(m.group(1).strip())
    else:
        m = re.search(r'filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)', cd, re.IGNORECASE)
        if m:
            name = (m.group(1) or m.group(2) or "").strip()
    name = Path(name.replace("\\", "/")).name if name else ""
    if name in ("", ".", ".."):
        name = Path(url.path).name or "download"
    return name


class RestartDownload(Exception):
    """The partial file does not fit what the server sends: start from byte 0."""


class PartialDownload:
    """``DEST.part`` (the bytes so far) and ``DEST.part.json`` (URL and validators).

    A resumed request sends ``Range: bytes=<size of DEST.part>-`` and, when the validator
    of the earlier response is known, ``If-Range`` so a changed file comes back whole.
    ``DEST`` appears only complete, by an atomic rename.
    """

    def __init__(self, dest: Path, url: httpx.URL) -> None:
        self.dest = dest
        self.url = str(url)
        self.part = dest.with_name(dest.name + ".part")
        self.meta = dest.with_name(dest.name + ".part.json")

    def offset(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def _meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def request_headers(self) -> dict[str, str]:
        """``Range`` (and ``If-Range``) to continue ``DEST.part``; none to start afresh."""
        meta = self._meta()
        if meta is not None and meta.get("url") != self.url:
            self.discard()  # left over from another artifact saved under the same name
        offset = self.offset()
        if offset <= 0:
            return {}
        headers = {"Range": f"bytes={offset}-"}
        validator = (meta or {}).get("etag") or (meta or {}).get("last_modified")
        if validator:
            headers["If-Range"] = validator
        return headers

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)

    def begin(self, response: httpx.Response) -> tuple[IO[bytes], int, int | None]:
        """Open ``DEST.part`` for this response: (file, bytes already there, total size)."""
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        offset = self.offset()
        if response.status_code == 206:
            m = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if m is None or int(m.group(1)) != offset:
                raise RestartDownload()
            total = None if m.group(3) == "*" else int(m.group(3))
            fh = self.part.open("ab")
        else:
            offset = 0
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            fh = self.part.open("wb")
        meta = {
            "url": self.url,
            "etag": response.headers.get("etag"),
            "last_modified": response.headers.get("last-modified"),
            "total": total,
        }
        self.meta.write_text(json.dumps(meta))
        return fh, offset, total

    def finish(self, total: int | None) -> Path:
        """Check the size, then publish ``DEST`` atomically."""
        size = self.offset()
        if total is not None and size != total:
            raise httpx.RemoteProtocolError(f"got {size} of {total} bytes")
        with self.part.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.part, self.dest)
        self.meta.unlink(missing_ok=True)
        _fsync_dir(self.dest.parent)
        return self.dest


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Download:
    """One resumable download (``DEST.part`` bookkeeping in ``PartialDownload``): each
    attempt's request, what an answer means, and when a broken transfer is resumed."""

    def __init__(self, core: ClientCore, url: httpx.URL, target: Path) -> None:
        self.core = core
        self.url = url
        self.partial = PartialDownload(target, url)
        self.failures = self.restarts = 0

    def request(self) -> httpx.Request:
        return self.core.request("GET", self.url, headers=self.partial.request_headers())

    def restart_on(self, response: httpx.Response) -> bool:
        """True for a first 416: the partial file is as long as (or longer than) the
        artifact, so it cannot be a prefix of it; it is dropped and the file fetched whole."""
        if response.status_code == 416 and self.restarts == 0:
            self.restarts += 1
            self.partial.discard()
            return True
        return False

    def begin(self, response: httpx.Response) -> tuple[IO[bytes], int, int | None] | None:
        """(file, bytes already there, total) to write the body to; None: ask again from
        byte 0 (the server answered another range). Error statuses (body read) raise."""
        ClientCore.checked(response)
        try:
            return self.partial.begin(response)
        except RestartDownload:
            self.restarts += 1
            if self.restarts > 2:
                raise SaftProtocolError(f"{self.url} ignores byte ranges") from None
            self.partial.discard()
            return None

    def finish(self, total: int | None) -> Path:
        return self.partial.finish(total)

    def broken(self, exc: Exception) -> float:
        """Seconds to wait before resuming after a transport error (or raise)."""
        self.failures += 1
        delay = self.core.retry.after_broken_download(self.failures)
        if delay is None:
            raise SaftConnectionError(
                f"download of {self.url} interrupted ({exc}); run it again to resume from "
                f"{self.partial.offset()} bytes"
            ) from exc
        return delay
