"""The synchronous SAFT client (httpx.Client). ``AsyncSaftClient`` mirrors it method for method.

from saft_client import SaftClient
with SaftClient("http://saft.example.org", "KEY") as saft:   # or SAFT_URL / SAFT_API_KEY
    job = saft.submit_job("cells.tif", iterations=5)
    job = saft.wait(job.id, on_event=print)
    rec = saft.wait_reconstruction(saft.reconstruct(job.id, job.recommended_iteration).id)
    saft.download(rec.tiff_url, "cells_saft.tif")
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from saft_client._common import (
    CHUNK_BYTES,
    DEFAULT_TIMEOUT,
    PAGE_LIMIT,
    RETRY_STATUSES,
    SSE_READ_TIMEOUT,
    STREAM_ERRORS,
    USER_AGENT,
    BearerAuth,
    PartialDownload,
    Ref,
    RestartDownload,
    Urls,
    as_json,
    backoff,
    connection_error,
    dataset_ref,
    filename_from,
    job_body,
    model_ref,
    open_upload,
    resolve_config,
    retry_delay,
    split_params,
)
from saft_client._events import Deadline, EventTracker
from saft_client.errors import (
    SaftConnectionError,
    SaftProtocolError,
    SaftTimeoutError,
    api_error,
)
from saft_client.models import Dataset, Iteration, Job, JobEvent, Model, Reconstruction
from saft_client.sse import SSEDecoder, to_job_event

log = logging.getLogger(__name__)

EventCallback = Callable[[JobEvent], Any]
ProgressCallback = Callable[[int, "int | None"], Any]


class SaftClient:
    """Typed access to the SAFT job service API v1 (blocking)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self.api_key = resolve_config(base_url, api_key)
        self.urls = Urls(self.base_url)
        self.timeout = timeout
        self.retries = retries
        self._http = httpx.Client(
            auth=BearerAuth(self.api_key, self.urls),
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"SaftClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SaftClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ---------------------------------------------------------------------

    def _send(self, method: str, url: str | httpx.URL, *, retry: bool, **kw: Any) -> httpx.Response:
        """One request; transport errors and 502/503/504 are retried when ``retry`` is safe."""
        target = self.urls.resolve(str(url))
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._http.request(method, target, **kw)
            except httpx.TransportError as exc:
                if retry and attempt <= self.retries:
                    time.sleep(backoff(attempt))
                    continue
                raise connection_error(target, exc) from exc
            if retry and resp.status_code in RETRY_STATUSES and attempt <= self.retries:
                time.sleep(retry_delay(resp, attempt))
                continue
            if resp.status_code >= 400:
                raise api_error(resp)
            return resp

    def _json(self, method: str, url: str, *, retry: bool = True, **kw: Any) -> Any:
        return as_json(self._send(method, url, retry=retry, **kw))

    def _pages(
        self, path: str, params: Mapping[str, Any] | None, limit: int | None
    ) -> Iterator[Mapping[str, Any]]:
        """Items of every page, following ``next`` links, at most ``limit`` of them."""
        first = {k: v for k, v in (params or {}).items() if v is not None}
        first["limit"] = min(PAGE_LIMIT, limit) if limit else PAGE_LIMIT
        query: dict[str, Any] | None = first
        url: str | None = path
        n = 0
        while url:
            page = self._json("GET", url, params=query)
            for item in page.get("items") or ():
                yield item
                n += 1
                if limit is not None and n >= limit:
                    return
            url = page.get("next")
            query = None  # the next link carries the query

    # ---- health ---------------------------------------------------------------------------

    def health(self) -> bool:
        """True if the API process answers (no key needed)."""
        return self._json("GET", "/healthz").get("status") == "ok"

    def ready(self) -> dict[str, Any]:
        """Database and broker reachability; a 503 raises ``ServerError`` naming what is down."""
        return dict(self._json("GET", "/readyz", retry=False))

    # ---- datasets -------------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, *, filename: str | None = None) -> Dataset:
        """Stream a TIFF stack to the service (validated there: (T, H, W), finite)."""
        path = Path(path)
        with open_upload(path, "file") as fh:
            files = {"file": (filename or path.name, fh, "image/tiff")}
            return Dataset.from_json(self._json("POST", "/v1/datasets", retry=False, files=files))

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def list_datasets(self, limit: int | None = None) -> list[Dataset]:
        """Your datasets, newest first (every page unless ``limit``)."""
        return [Dataset.from_json(d) for d in self._pages("/v1/datasets", None, limit)]

    def delete_dataset(self, dataset_id: str) -> None:
        """409 (``ConflictError``) while a job uses it."""
        self._send("DELETE", f"/v1/datasets/{dataset_id}", retry=True)

    # ---- models ---------------------------------------------------------------------------

    def upload_model(self, path: str | Path, kind: str, *, name: str | None = None) -> Model:
        """Upload an SR or DEN checkpoint (.pth); the service loads it once to validate it."""
        path = Path(path)
        data = {"kind": kind, **({"name": name} if name else {})}
        with open_upload(path, "file") as fh:
            files = {"file": (path.name, fh, "application/octet-stream")}
            body = self._json("POST", "/v1/models", retry=False, files=files, data=data)
        return Model.from_json(body)

    def get_model(self, model_id: str) -> Model:
        return Model.from_json(self._json("GET", f"/v1/models/{model_id}"))

    def list_models(self, kind: str | None = None, limit: int | None = None) -> list[Model]:
        """The defaults (id 'default') first, then your uploads, newest first."""
        return [Model.from_json(m) for m in self._pages("/v1/models", {"kind": kind}, limit)]

    def delete_model(self, model_id: str) -> None:
        self._send("DELETE", f"/v1/models/{model_id}", retry=True)

    # ---- jobs -----------------------------------------------------------------------------

    def _dataset_id(self, ref: Ref | None) -> str | None:
        if ref is None:
            return None
        if ref.path is not None:
            return self.upload_dataset(ref.path).id
        return ref.id

    def _model_id(self, ref: Ref | None, kind: str) -> str | None:
        if ref is None:
            return None
        if ref.path is not None:
            return self.upload_model(ref.path, kind).id
        return ref.id

    def submit_job(
        self,
        lr: str | Path | Dataset,
        edge: str | Path | Dataset | None = None,
        smlm: str | Path | Dataset | None = None,
        mode: str = "saft",
        sr_model: str | Path | Model = "default",
        den_model: str | Path | Model | None = "default",
        idempotency_key: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Job:
        """Submit a fine-tuning job; local files given for inputs or models are uploaded first.

        SAFT parameters go in ``params`` or as keywords (``iterations=5, sigma="auto"``); the
        learning rate is ``learning_rate=`` (``lr`` is the input stack) or ``params={"lr":
        ...}``. ``preset="adaptive"`` (or ``params={"preset": "adaptive"}``) starts from this
        project's schedule instead of the reference one; the parameters given win over it, and
        the job's ``params`` show every resolved value. Without ``idempotency_key`` a fresh one
        is made, so a retry after a dropped connection cannot create the job twice.
        """
        refs = (
            dataset_ref(lr, "lr"),
            dataset_ref(edge, "edge"),
            dataset_ref(smlm, "smlm"),
            model_ref(sr_model, "sr_model"),
            model_ref(den_model, "den_model"),
        )  # every argument is checked before anything is uploaded
        body = job_body(
            lr=self._dataset_id(refs[0]) or "",
            edge=self._dataset_id(refs[1]),
            smlm=self._dataset_id(refs[2]),
            mode=mode,
            sr_model=self._model_id(refs[3], "sr") or "default",
            den_model=self._model_id(refs[4], "den"),
            params=split_params(params, kwargs),
        )
        key = idempotency_key or f"saft-client-{uuid.uuid4().hex}"
        headers = {"Idempotency-Key": key}
        return Job.from_json(self._json("POST", "/v1/jobs", json=body, headers=headers))

    def get_job(self, job_id: str) -> Job:
        return Job.from_json(self._json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, state: str | None = None, limit: int | None = None) -> list[Job]:
        """Your jobs, newest first, optionally only those in ``state`` (every page unless
        ``limit``)."""
        return [Job.from_json(j) for j in self._pages("/v1/jobs", {"state": state}, limit)]

    def iterations(self, job_id: str) -> list[Iteration]:
        """Finished iterations in order; 0 is the pretrained network."""
        body = self._json("GET", f"/v1/jobs/{job_id}/iterations")
        return [Iteration.from_json(it) for it in body.get("items") or ()]

    def cancel(self, job_id: str) -> Job:
        """Queued jobs stop at once, running ones at their next step; 409 if already done."""
        return Job.from_json(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    # ---- events and waiting ---------------------------------------------------------------

    def events(
        self,
        job_id: str,
        last_event_id: int | str | None = None,
        *,
        timeout: float | None = None,
        reconnect: bool = True,
        max_reconnects: int = 5,
    ) -> Iterator[JobEvent]:
        """The job's server-sent events until its final state.

        A dropped connection is re-opened with ``Last-Event-ID`` (after the server's
        ``retry`` delay), so no event is lost or repeated; ``max_reconnects`` failures in a
        row raise ``SaftConnectionError``; ``timeout`` raises ``SaftTimeoutError``.
        """
        deadline = Deadline(timeout, f"job {job_id}")
        last = None if last_event_id is None else str(last_event_id)
        url = self.urls.resolve(f"/v1/jobs/{job_id}/events")
        failures, retry_s = 0, 1.0
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last is not None:
                headers["Last-Event-ID"] = last
            left = deadline.remaining()
            read = SSE_READ_TIMEOUT if left is None else max(0.05, min(SSE_READ_TIMEOUT, left))
            got_any = False
            try:
                with self._http.stream(
                    "GET", url, headers=headers, timeout=httpx.Timeout(self.timeout, read=read)
                ) as resp:
                    _check_stream(resp)
                    decoder = SSEDecoder()
                    for line in resp.iter_lines():
                        raw = decoder.feed(line)
                        if decoder.retry_ms is not None:
                            retry_s = decoder.retry_ms / 1000
                        if raw is not None:
                            ev = to_job_event(raw)
                            last = raw.id if raw.id is not None else last
                            got_any, failures = True, 0
                            yield ev
                            if ev.is_final:
                                return
                        deadline.check()
            except httpx.TransportError as exc:
                deadline.check()
                failures += 1
                if not reconnect or failures > max_reconnects:
                    raise connection_error(url, exc) from exc
                log.info("job %s: event stream dropped (%s); resume after %s", job_id, exc, last)
                time.sleep(deadline.sleep_for(min(retry_s * 2 ** (failures - 1), 30.0)))
                continue
            if not reconnect:
                return
            if not got_any:
                # The API ends a stream at once when nothing follows and the job is final.
                if self.get_job(job_id).finished:
                    return
                failures += 1
                if failures > max_reconnects:
                    raise SaftConnectionError(f"event stream of job {job_id} keeps ending early")
                time.sleep(deadline.sleep_for(retry_s))
            deadline.check()

    def wait(
        self,
        job_id: str,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
        *,
        poll_interval: float = 2.0,
    ) -> Job:
        """Block until the job is final and return it (check ``job.state``).

        Follows the event stream, calling ``on_event`` for each event; if the stream is
        unavailable (a proxy that buffers or blocks SSE, repeated drops) it falls back to
        polling and ``on_event`` gets the same kinds of events, synthesised (``id`` None).
        """
        deadline = Deadline(timeout, f"job {job_id}")
        tracker = EventTracker()
        stream: Iterator[JobEvent] | None = None
        try:
            stream = iter(self.events(job_id, timeout=timeout))
            while True:
                try:
                    ev = next(stream)
                except StopIteration:
                    break
                tracker.observe(ev)
                if on_event is not None:
                    on_event(ev)  # outside the except clauses: its errors are the caller's
                if ev.is_final:
                    break
        except SaftTimeoutError:
            raise
        except STREAM_ERRORS as exc:
            log.warning("event stream of job %s unavailable (%s); polling", job_id, exc)
        finally:
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]
        return self._poll_job(job_id, on_event, deadline, tracker, poll_interval)

    def _poll_job(
        self,
        job_id: str,
        on_event: EventCallback | None,
        deadline: Deadline,
        tracker: EventTracker,
        interval: float,
    ) -> Job:
        while True:
            job = self.get_job(job_id)
            if on_event is not None:
                its = self.iterations(job_id) if tracker.wants_iterations(job) else None
                for ev in tracker.synthesise(job, its):
                    on_event(ev)
            if job.finished:
                return job
            deadline.check()
            time.sleep(deadline.sleep_for(interval))

    # ---- reconstructions ------------------------------------------------------------------

    def reconstruct(self, job_id: str, iteration: int, *, video: bool = True) -> Reconstruction:
        """Queue the reconstruction of the job's whole stack with one iteration's checkpoint."""
        body = {"iteration": int(iteration), "video": video}
        data = self._json("POST", f"/v1/jobs/{job_id}/reconstructions", retry=False, json=body)
        return Reconstruction.from_json(data)

    def get_reconstruction(self, recon_id: str) -> Reconstruction:
        return Reconstruction.from_json(self._json("GET", f"/v1/reconstructions/{recon_id}"))

    def list_reconstructions(
        self, job_id: str | None = None, state: str | None = None, limit: int | None = None
    ) -> list[Reconstruction]:
        """Yours (or one job's), newest first."""
        if job_id is not None:
            items = self._pages(f"/v1/jobs/{job_id}/reconstructions", None, limit)
            recs = [Reconstruction.from_json(r) for r in items]
            return [r for r in recs if state is None or r.state == state]
        items = self._pages("/v1/reconstructions", {"state": state}, limit)
        return [Reconstruction.from_json(r) for r in items]

    def cancel_reconstruction(self, recon_id: str) -> Reconstruction:
        data = self._json("POST", f"/v1/reconstructions/{recon_id}/cancel")
        return Reconstruction.from_json(data)

    def wait_reconstruction(
        self,
        recon_id: str,
        timeout: float | None = None,
        *,
        poll_interval: float = 1.0,
        on_progress: Callable[[Reconstruction], Any] | None = None,
    ) -> Reconstruction:
        """Poll until the reconstruction is final (reconstructions have no event stream)."""
        deadline = Deadline(timeout, f"reconstruction {recon_id}")
        while True:
            rec = self.get_reconstruction(recon_id)
            if on_progress is not None:
                on_progress(rec)
            if rec.finished:
                return rec
            deadline.check()
            time.sleep(deadline.sleep_for(poll_interval))

    # ---- downloads ------------------------------------------------------------------------

    def download(
        self,
        url_or_path: str,
        dest: str | Path,
        *,
        on_progress: ProgressCallback | None = None,
        chunk_size: int = CHUNK_BYTES,
    ) -> Path:
        """Stream an artifact to ``dest`` (a file, or a directory: the server's file name).

        Bytes go to ``DEST.part``; an interrupted download (here, or in an earlier run) is
        resumed with ``Range`` and ``DEST`` appears only complete, by an atomic rename.
        ``on_progress(done, total)`` starts at the bytes already on disk.
        """
        url = self.urls.resolve(url_or_path)
        target = Path(dest)
        if target.is_dir():
            target = target / filename_from(self._send("HEAD", url, retry=True).headers, url)
        partial = PartialDownload(target, url)
        failures = restarts = 0
        while True:
            try:
                with self._http.stream("GET", url, headers=partial.request_headers()) as resp:
                    if resp.status_code == 416 and restarts == 0:
                        restarts += 1  # the partial file is as long as (or longer than) the
                        partial.discard()  # artifact: it cannot be a prefix of it
                        continue
                    if resp.status_code >= 400:
                        resp.read()
                        raise api_error(resp)
                    try:
                        fh, done, total = partial.begin(resp)
                    except RestartDownload:
                        restarts += 1
                        if restarts > 2:
                            raise SaftProtocolError(f"{url} ignores byte ranges") from None
                        partial.discard()
                        continue
                    with fh:
                        if on_progress is not None:
                            on_progress(done, total)
                        for chunk in resp.iter_bytes(chunk_size):
                            fh.write(chunk)
                            done += len(chunk)
                            if on_progress is not None:
                                on_progress(done, total)
                return partial.finish(total)
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.retries:
                    raise SaftConnectionError(
                        f"download of {url} interrupted ({exc}); run it again to resume from "
                        f"{partial.offset()} bytes"
                    ) from exc
                time.sleep(backoff(failures))


def _check_stream(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        resp.read()
        raise api_error(resp)
    ctype = resp.headers.get("content-type", "")
    if not ctype.startswith("text/event-stream"):
        raise SaftProtocolError(f"expected an event stream from {resp.url.path}, got {ctype!r}")
