"""The asynchronous SAFT client (httpx.AsyncClient): ``SaftClient``'s methods, awaitable.

Callbacks (``on_event``, ``on_progress``) may be plain functions or coroutine functions.
Local file reads and writes (uploads, downloads) are done in the event loop thread in
1 MiB pieces: short blocking calls, not worth a thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is not None:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result


Finishing = TypeVar("Finishing", Job, Reconstruction)


async def _poll(
    fetch: Callable[[], Awaitable[Finishing]],
    seen: Callable[[Finishing], Awaitable[None]],
    deadline: Deadline,
    interval: float,
) -> Finishing:
    """Fetch until finished, awaiting ``seen`` on each state, every ``interval`` s."""
    while True:
        item = await fetch()
        await seen(item)
        if item.finished:
            return item
        deadline.check()
        await asyncio.sleep(deadline.sleep_for(interval))


class AsyncSaftClient:
    """Typed access to the SAFT job service API v1 (asyncio)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = ClientCore(base_url, api_key, timeout, retries)
        self.base_url, self.api_key = self._core.base_url, self._core.api_key
        self.urls = self._core.urls
        self.timeout = timeout
        self.retries = retries
        self._http = httpx.AsyncClient(transport=transport, **self._core.http_options())

    def __repr__(self) -> str:
        return f"AsyncSaftClient({self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSaftClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- plumbing ---------------------------------------------------------------------

    async def _send(
        self, method: str, url: str | httpx.URL, *, retry: bool, **kw: Any
    ) -> httpx.Response:
        """See ``SaftClient._send``; the decisions are ``ClientCore``'s."""
        request = self._core.request(method, url, **kw)
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._core.retry.after_error(attempt, retry)
                if delay is None:
                    raise connection_error(request.url, exc) from exc
                await asyncio.sleep(delay)
                continue
            delay = self._core.retry.after_response(resp, attempt, retry)
            if delay is None:
                return self._core.checked(resp)
            await resp.aclose()
            await asyncio.sleep(delay)

    async def _json(self, method: str, url: str, *, retry: bool = True, **kw: Any) -> Any:
        return as_json(await self._send(method, url, retry=retry, **kw))

    async def _pages(
        self, path: str, params: Mapping[str, Any] | None, limit: int | None
    ) -> list[Mapping[str, Any]]:
        pager = Pager(path, params, limit, PAGE_LIMIT)
        out: list[Mapping[str, Any]] = []
        while pager.url:
            out += pager.take(await self._json("GET", pager.url, params=pager.query))
        return out

    @contextlib.asynccontextmanager
    async def _open(self, request: httpx.Request) -> AsyncIterator[httpx.Response]:
        """A streamed response (an error's body is read, for its problem details)."""
        resp = await self._http.send(request, stream=True)
        try:
            if resp.status_code >= 400:
                await resp.aread()
            yield resp
        finally:
            await resp.aclose()

    # ---- health ---------------------------------------------------------------------------

    async def health(self) -> bool:
        return (await self._json("GET", "/healthz")).get("status") == "ok"

    async def ready(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/readyz", retry=False))

    # ---- datasets -------------------------------------------------------------------------

    async def upload_dataset(self, path: str | Path, *, filename: str | None = None) -> Dataset:
        path = Path(path)
        with open_upload(path, "file") as fh:
            files = {"file": (filename or path.name, fh, "image/tiff")}
            body = await self._json("POST", "/v1/datasets", retry=False, files=files)
        return Dataset.from_json(body)

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_json(await self._json("GET", f"/v1/datasets/{dataset_id}"))

    async def list_datasets(self, limit: int | None = None) -> list[Dataset]:
        return [Dataset.from_json(d) for d in await self._pages("/v1/datasets", None, limit)]

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._send("DELETE", f"/v1/datasets/{dataset_id}", retry=True)

    # ---- models ---------------------------------------------------------------------------

    async def upload_model(self, path: str | Path, kind: str, *, name: str | None = None) -> Model:
        path = Path(path)
        data = {"kind": kind, **({"name": name} if name else {})}
        with open_upload(path, "file") as fh:
            files = {"file": (path.name, fh, "application/octet-stream")}
            body = await self._json("POST", "/v1/models", retry=False, files=files, data=data)
        return Model.from_json(body)

    async def get_model(self, model_id: str) -> Model:
        return Model.from_json(await self._json("GET", f"/v1/models/{model_id}"))

    async def list_models(self, kind: str | None = None, limit: int | None = None) -> list[Model]:
        items = await self._pages("/v1/models", {"kind": kind}, limit)
        return [Model.from_json(m) for m in items]

    async def delete_model(self, model_id: str) -> None:
        await self._send("DELETE", f"/v1/models/{model_id}", retry=True)

    # ---- jobs -----------------------------------------------------------------------------

    async def _dataset_id(self, ref: Ref | None) -> str | None:
        if ref is None:
            return None
        if ref.path is not None:
            return (await self.upload_dataset(ref.path)).id
        return ref.id

    async def _model_id(self, ref: Ref | None, kind: str) -> str | None:
        if ref is None:
            return None
        if ref.path is not None:
            return (await self.upload_model(ref.path, kind)).id
        return ref.id

    async def submit_job(
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
        """See ``SaftClient.submit_job``."""
        refs = JobInputs.check(lr, edge, smlm, sr_model, den_model)
        body = job_body(
            lr=await self._dataset_id(refs.lr) or "",
            edge=await self._dataset_id(refs.edge),
            smlm=await self._dataset_id(refs.smlm),
            mode=mode,
            sr_model=await self._model_id(refs.sr_model, "sr") or "default",
            den_model=await self._model_id(refs.den_model, "den"),
            params=split_params(params, kwargs),
        )
        headers = idempotency_headers(idempotency_key)
        data = await self._json("POST", "/v1/jobs", json=body, headers=headers)
        return Job.from_json(data)

    async def get_job(self, job_id: str) -> Job:
        return Job.from_json(await self._json("GET", f"/v1/jobs/{job_id}"))

    async def list_jobs(self, state: str | None = None, limit: int | None = None) -> list[Job]:
        return [Job.from_json(j) for j in await self._pages("/v1/jobs", {"state": state}, limit)]

    async def iterations(self, job_id: str) -> list[Iteration]:
        body = await self._json("GET", f"/v1/jobs/{job_id}/iterations")
        return [Iteration.from_json(it) for it in body.get("items") or ()]

    async def cancel(self, job_id: str) -> Job:
        return Job.from_json(await self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    # ---- events and waiting ---------------------------------------------------------------

    async def events(
        self,
        job_id: str,
        last_event_id: int | str | None = None,
        *,
        timeout: float | None = None,
        reconnect: bool = True,
        max_reconnects: int = 5,
    ) -> AsyncIterator[JobEvent]:
        """See ``SaftClient.events``."""
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
                async with self._open(stream.request()) as resp:
                    stream.check(resp)
                    async for line in resp.aiter_lines():
                        ev = stream.feed(line)
                        if ev is not None:
                            yield ev
                            if ev.is_final:
                                return
                        stream.deadline.check()
            except httpx.TransportError as exc:
                await asyncio.sleep(stream.dropped(exc))
                continue
            finished = None
            if stream.must_ask_if_finished:
                finished = (await self.get_job(job_id)).finished
            delay = stream.ended(finished)
            if delay is None:
                return
            await asyncio.sleep(delay)
            stream.deadline.check()

    async def wait(
        self,
        job_id: str,
        on_event: Callable[[JobEvent], Any] | None = None,
        timeout: float | None = None,
        *,
        poll_interval: float = 2.0,
    ) -> Job:
        """See ``SaftClient.wait``."""
        deadline = Deadline(timeout, f"job {job_id}")
        tracker = EventTracker()
        stream: AsyncIterator[JobEvent] | None = None
        try:
            stream = self.events(job_id, timeout=timeout).__aiter__()
            while True:
                try:
                    ev = await stream.__anext__()
                except StopAsyncIteration:
                    break
                tracker.observe(ev)
                await _call(on_event, ev)
                if ev.is_final:
                    break
        except SaftTimeoutError:
            raise
        except STREAM_ERRORS as exc:
            log.warning("event stream of job %s unavailable (%s); polling", job_id, exc)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[union-attr]

        async def synthesise(job: Job) -> None:
            if on_event is not None:
                its = await self.iterations(job_id) if tracker.wants_iterations(job) else None
                for synthetic in tracker.synthesise(job, its):
                    await _call(on_event, synthetic)

        return await _poll(partial(self.get_job, job_id), synthesise, deadline, poll_interval)

    # ---- reconstructions ------------------------------------------------------------------

    async def reconstruct(
        self, job_id: str, iteration: int, *, video: bool = True
    ) -> Reconstruction:
        body = {"iteration": int(iteration), "video": video}
        path = f"/v1/jobs/{job_id}/reconstructions"
        return Reconstruction.from_json(await self._json("POST", path, retry=False, json=body))

    async def get_reconstruction(self, recon_id: str) -> Reconstruction:
        data = await self._json("GET", f"/v1/reconstructions/{recon_id}")
        return Reconstruction.from_json(data)

    async def list_reconstructions(
        self, job_id: str | None = None, state: str | None = None, limit: int | None = None
    ) -> list[Reconstruction]:
        if job_id is not None:
            items = await self._pages(f"/v1/jobs/{job_id}/reconstructions", None, limit)
            recs = [Reconstruction.from_json(r) for r in items]
            return [r for r in recs if state is None or r.state == state]
        items = await self._pages("/v1/reconstructions", {"state": state}, limit)
        return [Reconstruction.from_json(r) for r in items]

    async def cancel_reconstruction(self, recon_id: str) -> Reconstruction:
        data = await self._json("POST", f"/v1/reconstructions/{recon_id}/cancel")
        return Reconstruction.from_json(data)

    async def wait_reconstruction(
        self,
        recon_id: str,
        timeout: float | None = None,
        *,
        poll_interval: float = 1.0,
        on_progress: Callable[[Reconstruction], Any] | None = None,
    ) -> Reconstruction:
        deadline = Deadline(timeout, f"reconstruction {recon_id}")
        fetch = partial(self.get_reconstruction, recon_id)
        return await _poll(fetch, partial(_call, on_progress), deadline, poll_interval)

    # ---- downloads ------------------------------------------------------------------------

    async def download(
        self,
        url_or_path: str,
        dest: str | Path,
        *,
        on_progress: Callable[[int, int | None], Any] | None = None,
        chunk_size: int = CHUNK_BYTES,
    ) -> Path:
        """See ``SaftClient.download``."""
        url = self.urls.resolve(url_or_path)
        target = Path(dest)
        if target.is_dir():
            head = await self._send("HEAD", url, retry=True)
            target = target / filename_from(head.headers, url)
        download = Download(self._core, url, target)
        while True:
            try:
                async with self._open(download.request()) as resp:
                    if download.restart_on(resp):
                        continue
                    opened = download.begin(resp)
                    if opened is None:
                        continue
                    fh, done, total = opened
                    with fh:
                        await _call(on_progress, done, total)
                        async for chunk in resp.aiter_bytes(chunk_size):
                            fh.write(chunk)
                            done += len(chunk)
                            await _call(on_progress, done, total)
                return download.finish(total)
            except httpx.TransportError as exc:
                await asyncio.sleep(download.broken(exc))
