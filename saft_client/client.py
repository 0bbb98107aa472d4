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
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from saft_client._core import (
    CHUNK_BYTES,
    DEFAULT_TIMEOUT,
    PAGE_LIMIT,
    STREAM_ERRORS,
    ClientCore,
    Download,
    EventStream,
    JobInputs,
    Pager,
    Ref,
    as_json,
    connection_error,
    filename_from,
    idempotency_headers,
    job_body,
    open_upload,
    split_params,
)
from saft_client._events import Deadline, EventTracker
from saft_client.errors import SaftTimeoutError
from saft_client.models import Dataset, Iteration, Job, JobEvent, Model, Reconstruction

log = logging.getLogger(__name__)

EventCallback = Callable[[JobEvent], Any]
ProgressCallback = Callable[[int, "int | None"], Any]


Finishing = TypeVar("Finishing", Job, Reconstruction)


def _ignore(_: object) -> None:
    pass


def _poll(
    fetch: Callable[[], Finishing],
    seen: Callable[[Finishing], Any],
    deadline: Deadline,
    interval: float,
) -> Finishing:
    """Fetch until finished, calling ``seen`` on each state, every ``interval`` s."""
    while True:
        item = fetch()
        seen(item)
        if item.finished:
            return item
        deadline.check()
        time.sleep(deadline.sleep_for(interval))


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
        self._core = ClientCore(base_url, api_key, timeout, retries)
        self.base_url, self.api_key = self._core.base_url, self._core.api_key
        self.urls = self._core.urls
        self.timeout = timeout
        self.retries = retries
        self._http = httpx.Client(transport=transport, **self._core.http_options())

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
        request = self._core.request(method, url, **kw)
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._core.retry.after_error(attempt, retry)
                if delay is None:
                    raise connection_error(request.url, exc) from exc
                time.sleep(delay)
                continue
            delay = self._core.retry.after_response(resp, attempt, retry)
            if delay is None:
                return self._core.checked(resp)
            resp.close()
            time.sleep(delay)

    def _json(self, method: str, url: str, *, retry: bool = True, **kw: Any) -> Any:
        return as_json(self._send(method, url, retry=retry, **kw))

    def _pages(
        self, path: str, params: Mapping[str, Any] | None, limit: int | None
    ) -> Iterator[Mapping[str, Any]]:
        """Items of every page, following ``next`` links, at most ``limit`` of them."""
        pager = Pager(path, params, limit, PAGE_LIMIT)
        while pager.url:
            yield from pager.take(self._json("GET", pager.url, params=pager.query))

    @contextlib.contextmanager
    def _open(self, request: httpx.Request) -> Iterator[httpx.Response]:
        """A streamed response (an error's body is read, for its problem details)."""
        resp = self._http.send(request, stream=True)
        try:
            if resp.status_code >= 400:
                resp.read()
            yield resp
        finally:
            resp.close()

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
        refs = JobInputs.check(lr, edge, smlm, sr_model, den_model)
        body = job_body(
            lr=self._dataset_id(refs.lr) or "",
            edge=self._dataset_id(refs.edge),
            smlm=self._dataset_id(refs.smlm),
            mode=mode,
            sr_model=self._model_id(refs.sr_model, "sr") or "default",
            den_model=self._model_id(refs.den_model, "den"),
            params=split_params(params, kwargs),
        )
        headers = idempotency_headers(idempotency_key)
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
        stream = EventStream(
            self._core,
            job_id,
            last_event_id,
            timeout=timeout,
            reconnect=reconnect,
            max_reconnects=max_reconnects,
        )
        while True:
            try:
                with self._open(stream.request()) as resp:
                    stream.check(resp)
                    for line in resp.iter_lines():
                        ev = stream.feed(line)
                        if ev is not None:
                            yield ev
                            if ev.is_final:
                                return
                        stream.deadline.check()
            except httpx.TransportError as exc:
                time.sleep(stream.dropped(exc))
                continue
            finished = self.get_job(job_id).finished if stream.must_ask_if_finished else None
            delay = stream.ended(finished)
            if delay is None:
                return
            time.sleep(delay)
            stream.deadline.check()

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

        def synthesise(job: Job) -> None:
            if on_event is not None:
                its = self.iterations(job_id) if tracker.wants_iterations(job) else None
                for ev in tracker.synthesise(job, its):
                    on_event(ev)

        return _poll(partial(self.get_job, job_id), synthesise, deadline, poll_interval)

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
        seen = on_progress if on_progress is not None else _ignore
        return _poll(partial(self.get_reconstruction, recon_id), seen, deadline, poll_interval)

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
        download = Download(self._core, url, target)
        while True:
            try:
                with self._open(download.request()) as resp:
                    if download.restart_on(resp):
                        continue
                    opened = download.begin(resp)
                    if opened is None:
                        continue
                    fh, done, total = opened
                    with fh:
                        if on_progress is not None:
                            on_progress(done, total)
                        for chunk in resp.iter_bytes(chunk_size):
                            fh.write(chunk)
                            done += len(chunk)
                            if on_progress is not None:
                                on_progress(done, total)
                return download.finish(total)
            except httpx.TransportError as exc:
                time.sleep(download.broken(exc))
