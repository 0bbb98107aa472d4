"""saft_client against a real ``saft serve``: typed results, problem+json errors, SSE with
resume and the polling fallback, paging, resumable downloads, and the asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
import tifffile

from saft_client import (
    AsyncSaftClient,
    AuthenticationError,
    ConflictError,
    Job,
    JobEvent,
    NotFoundError,
    Reconstruction,
    SaftAPIError,
    SaftClient,
    SaftClientError,
    SaftConnectionError,
    SaftTimeoutError,
    ValidationError,
)
from tests.client.service_fixtures import REPO, Service, free_port, unique, write_stack

JOB_TIMEOUT_S = 240.0


# ---- without a service --------------------------------------------------------------------


def test_client_never_imports_torch() -> None:
    """The client is for workstations without the science stack."""
    code = (
        "import sys, saft_client, saft_client.watch, saft_cli.client_commands; "
        "heavy = {'torch', 'numpy', 'tifffile'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_url_and_key_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFT_URL", "http://saft.example.org:9000/saft/")
    monkeypatch.setenv("SAFT_API_KEY", "k-env")
    with SaftClient() as c:
        assert (c.base_url, c.api_key) == ("http://saft.example.org:9000/saft", "k-env")
        # URLs the API returns carry its root path already; bare API paths get it added.
        assert str(c.urls.resolve("/v1/jobs")) == "http://saft.example.org:9000/saft/v1/jobs"
        same = c.urls.resolve("/saft/v1/reconstructions/r/tiff")
        assert str(same) == "http://saft.example.org:9000/saft/v1/reconstructions/r/tiff"
    with SaftClient("other:8000", "k-arg") as c:
        assert (c.base_url, c.api_key) == ("http://other:8000", "k-arg")


def test_the_key_is_never_sent_to_another_origin() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(200, content=b"x")

    with SaftClient("http://saft.local", "secret", transport=httpx.MockTransport(handler)) as c:
        c._send("GET", "/v1/jobs", retry=False)
        c._send("GET", "https://cdn.example.org/file", retry=False)
    assert seen == {"saft.local": "Bearer secret", "cdn.example.org": None}


def test_split_params_passes_the_preset_through() -> None:
    from saft_client._common import split_params

    assert split_params({"preset": "adaptive"}, {}) == {"preset": "adaptive"}
    out = split_params({"preset": "adaptive", "ema": 0.9}, {"learning_rate": 5e-4, "haze-level": 0})
    assert out == {"preset": "adaptive", "ema": 0.9, "lr": 5e-4, "haze_level": 0}
    assert split_params(None, {"preset": "reference"}) == {"preset": "reference"}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_submit_job_sends_the_preset_and_the_new_fields(use_async: bool) -> None:
    """The body the client POSTs: the preset beside the explicit values, None left out."""
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/v1/jobs")
        sent.append(json.loads(request.content))
        return httpx.Response(202, json={"id": "j1", "state": "queued", "params": {}})

    kwargs: dict[str, Any] = {
        "params": {"preset": "adaptive", "windows_per_tile": "auto", "tile": None},
        "learning_rate": 5e-4,
        "ema": 0.9,
        "warmup": 10,
        "background": "map",
        "haze_level": 0.5,
    }
    transport = httpx.MockTransport(handler)
    if use_async:

        async def go() -> Job:
            async with AsyncSaftClient("http://saft.local", "k", transport=transport) as ac:
                return await ac.submit_job("ds-1", **kwargs)

        job = asyncio.run(go())
    else:
        with SaftClient("http://saft.local", "k", transport=transport) as c:
            job = c.submit_job("ds-1", **kwargs)
    assert job.id == "j1"
    assert sent[0]["lr_dataset"] == "ds-1"
    assert sent[0]["params"] == {
        "preset": "adaptive",
        "windows_per_tile": "auto",
        "lr": 5e-4,
        "ema": 0.9,
        "warmup": 10,
        "background": "map",
        "haze_level": 0.5,
    }


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.slow
def test_problem_details_become_typed_errors(
    service: Service, client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    lr = client.upload_dataset(write_stack(tmp_path / "lr.tif"))
    with pytest.raises(ValidationError) as info:
        client.submit_job(lr.id, sr_model=tiny_model, iterations=0)
    err = info.value
    # The title is the status phrase ("Unprocessable Entity"; "... Content" from Python 3.13).
    assert (err.status, err.field, err.title) == (422, "params.iterations", HTTPStatus(422).phrase)
    assert "iterations" in (err.detail or "") and err.type.endswith("validation-error")
    assert [e.field for e in err.errors] == ["params.iterations"]
    assert "params.iterations" in str(err)

    with pytest.raises(ValidationError) as info:
        client.submit_job(lr.id, sr_model="no-such-model", learning_rate=5.0)
    assert {e.field for e in info.value.errors} == {"sr_model", "params.lr"}

    with pytest.raises(NotFoundError) as nf:
        client.get_job("0" * 32)
    assert nf.value.status == 404 and "not found" in nf.value.message

    with SaftClient(service.url, "not-a-key") as stranger, pytest.raises(AuthenticationError):
        stranger.list_jobs()

    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a TIFF file at all")
    with pytest.raises(SaftAPIError) as bad:
        client.upload_dataset(garbage)
    assert bad.value.status == 422 and bad.value.field == "file"

    with pytest.raises(SaftClientError) as missing:
        client.submit_job(tmp_path / "missing.tif")
    assert missing.value.field == "lr" and not isinstance(missing.value, SaftAPIError)

    nowhere = SaftClient(f"http://127.0.0.1:{free_port()}", "k", retries=0)
    with nowhere, pytest.raises(SaftConnectionError, match="cannot reach"):
        nowhere.get_job("x")


# ---- jobs, events, waiting ----------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(
    client: SaftClient, tiny_model: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Job, Reconstruction]:
    """A succeeded job (6 frames, 2 iterations) and the reconstruction of its recommended
    iteration, with video."""
    d = tmp_path_factory.mktemp("finished")
    lr = write_stack(d / "lr.tif", t=6)
    edge = write_stack(d / "lr_edge.tif", t=6, edge=True)
    job = client.submit_job(lr, edge=edge, sr_model=tiny_model, iterations=2)
    job = client.wait(job.id, timeout=JOB_TIMEOUT_S)
    assert job.succeeded, job.error
    assert job.recommended_iteration is not None
    rec = client.reconstruct(job.id, job.recommended_iteration)
    rec = client.wait_reconstruction(rec.id, timeout=JOB_TIMEOUT_S)
    assert rec.succeeded, rec.error
    return job, rec


@pytest.mark.slow
def test_submit_files_and_wait_following_events(
    client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    lr = write_stack(tmp_path / "cells.tif", seed=1)
    edge = write_stack(tmp_path / "cells_edge.tif", seed=1, edge=True)
    job = client.submit_job(lr, edge=edge, sr_model=tiny_model, iterations=2, seed=3)
    assert job.state in ("queued", "running") and job.iterations_total == 2
    assert job.params["seed"] == 3 and job.sr_model == tiny_model
    assert client.get_dataset(job.lr_dataset).filename == "cells.tif"
    assert client.get_dataset(job.edge_dataset or "").shape == (4, 32, 32)

    events: list[JobEvent] = []
    done = client.wait(job.id, on_event=events.append, timeout=JOB_TIMEOUT_S)
    assert done.succeeded and done.finished and done.iterations_done == 2
    ids = [e.id for e in events]
    assert all(i is not None for i in ids) and ids == sorted(set(ids))  # from the stream
    assert [e.iteration for e in events if e.kind == "iteration"] == [0, 1, 2]
    assert [e.state for e in events if e.kind == "state"] == ["queued", "running", "succeeded"]
    assert events[-1].is_final
    assert events[-1].data["recommended_iteration"] == done.recommended_iteration

    its = client.iterations(job.id)
    assert [it.iteration for it in its] == [0, 1, 2]
    assert [it.iteration for it in its if it.recommended] == [done.recommended_iteration]
    assert its[0].total_loss is None and its[2].total_loss is not None
    assert its[2].preview_url.endswith("/iterations/2/preview.png")

    with pytest.raises(ConflictError):
        client.cancel(job.id)  # already succeeded


@pytest.mark.slow
def test_idempotency_key_returns_the_same_job(
    client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    lr = client.upload_dataset(write_stack(tmp_path / "lr.tif"))
    key = unique("key-")
    first = client.submit_job(lr.id, sr_model=tiny_model, iterations=1, idempotency_key=key)
    again = client.submit_job(lr.id, sr_model=tiny_model, iterations=1, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(ConflictError):
        client.submit_job(lr.id, sr_model=tiny_model, iterations=2, idempotency_key=key)
    assert client.wait(first.id, timeout=JOB_TIMEOUT_S).succeeded


@pytest.mark.slow
def test_wait_falls_back_to_polling_when_events_fail(
    service: Service, tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service.client() as c:
        calls: list[str] = []

        def no_stream(job_id: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(job_id)
            raise SaftConnectionError("event stream blocked by a proxy")

        monkeypatch.setattr(c, "events", no_stream)
        job = c.submit_job(write_stack(tmp_path / "lr.tif"), sr_model=tiny_model, iterations=2)
        events: list[JobEvent] = []
        done = c.wait(job.id, on_event=events.append, timeout=JOB_TIMEOUT_S, poll_interval=0.2)
    assert calls == [job.id]
    assert done.succeeded
    # Synthesised from polling: each iteration once, in order, and the final state last.
    assert [e.iteration for e in events if e.kind == "iteration"] == [0, 1, 2]
    assert all(e.id is None for e in events)
    assert events[-1].state == "succeeded"
    assert events[-1].data["recommended_iteration"] == done.recommended_iteration


@pytest.mark.slow
def test_wait_timeout(client: SaftClient, tiny_model: str, tmp_path: Path) -> None:
    job = client.submit_job(write_stack(tmp_path / "lr.tif"), sr_model=tiny_model, iterations=50)
    try:
        with pytest.raises(SaftTimeoutError):
            client.wait(job.id, timeout=0.5)
    finally:
        client.cancel(job.id)
    assert client.wait(job.id, timeout=JOB_TIMEOUT_S).state == "cancelled"


class CuttingProxy:
    """A TCP proxy to the service that drops the first event stream after its first event,
    as a flaky network or a proxy restart would; records each request's head."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.heads: list[str] = []
        self.cuts = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream_port))
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            with self._lock:
                self.heads.append(head.decode("latin-1"))
                cut = b"/events" in head.split(b"\r\n", 1)[0] and self.cuts == 0
                self.cuts += int(cut)
            up.sendall(head)
            threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()
            buffered = b""
            while data := up.recv(65536):
                if not cut:
                    conn.sendall(data)
                    continue
                buffered += data
                start = buffered.find(b"event:")
                end = buffered.find(b"\n\n", start) if start >= 0 else -1
                if end >= 0:
                    conn.sendall(buffered[: end + 2])  # one whole event, then the drop
                    return
        except OSError:
            return
        finally:
            for s in (conn, up):  # shutdown, not just close: wakes the pump blocked in recv
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass


@pytest.mark.slow
def test_events_resume_with_last_event_id_after_a_dropped_connection(
    service: Service, client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    job = client.submit_job(write_stack(tmp_path / "lr.tif"), sr_model=tiny_model, iterations=1)
    proxy = CuttingProxy(httpx.URL(service.url).port or 80)
    try:
        with SaftClient(f"http://127.0.0.1:{proxy.port}", service.key) as flaky:
            got = list(flaky.events(job.id, timeout=JOB_TIMEOUT_S))
    finally:
        proxy.close()
    direct = list(client.events(job.id))  # the job is final: the whole log, then the end
    assert proxy.cuts == 1
    assert [e.id for e in got] == [e.id for e in direct]  # nothing lost, nothing twice
    assert got[-1].is_final and got[-1].state == "succeeded"
    resumed = [h for h in proxy.heads if "/events" in h.split("\r\n", 1)[0]][1]
    assert f"last-event-id: {got[0].id}" in resumed.lower()

    later = list(client.events(job.id, last_event_id=direct[1].id))
    assert [e.id for e in later] == [e.id for e in direct[2:]]


# ---- listing ------------------------------------------------------------------------------


@pytest.mark.slow
def test_lists_follow_every_page(
    client: SaftClient, finished: tuple[Job, Reconstruction], monkeypatch: pytest.MonkeyPatch
) -> None:
    job, rec = finished
    one_page = client.list_datasets()
    assert len(one_page) >= 2
    monkeypatch.setattr("saft_client.client.PAGE_LIMIT", 1)  # one item per request
    assert [d.id for d in client.list_datasets()] == [d.id for d in one_page]
    assert [j.id for j in client.list_jobs(limit=1)] == [client.list_jobs()[0].id]
    assert job.id in {j.id for j in client.list_jobs(state="succeeded")}
    assert all(j.state == "succeeded" for j in client.list_jobs(state="succeeded"))
    models = client.list_models()
    assert [(m.id, m.kind) for m in models[:2]] == [("default", "sr"), ("default", "den")]
    assert job.sr_model in {m.id for m in client.list_models(kind="sr")}
    assert rec.id in {r.id for r in client.list_reconstructions(job.id)}


# ---- downloads ----------------------------------------------------------------------------


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_download_resumes_a_partial_file_and_equals_a_full_download(
    client: SaftClient, finished: tuple[Job, Reconstruction], tmp_path: Path
) -> None:
    _, rec = finished
    assert rec.tiff_url and rec.mp4_url
    full = client.download(rec.tiff_url, tmp_path / "full.tif").read_bytes()
    assert tifffile.imread(tmp_path / "full.tif").shape == (6, 128, 128)

    dest = tmp_path / "resumed.tif"
    part = dest.with_name("resumed.tif.part")

    def stop_midway(done: int, total: int | None) -> None:
        if done >= 3 * 16384:
            raise _Interrupt()  # the connection (or the user) gives up here

    with pytest.raises(_Interrupt):
        client.download(rec.tiff_url, dest, on_progress=stop_midway, chunk_size=16384)
    assert not dest.exists() and 0 < part.stat().st_size < len(full)
    kept = part.stat().st_size

    starts: list[int] = []
    client.download(rec.tiff_url, dest, on_progress=lambda d, t: starts.append(d))
    assert starts[0] == kept and starts[-1] == len(full)  # continued, not restarted
    assert dest.read_bytes() == full
    assert not part.exists() and not dest.with_name("resumed.tif.part.json").exists()

    # A bare prefix (no record of where it came from) is continued with Range too.
    bare = tmp_path / "bare.tif"
    bare.with_name("bare.tif.part").write_bytes(full[:1000])
    starts.clear()
    client.download(rec.tiff_url, bare, on_progress=lambda d, t: starts.append(d))
    assert starts[0] == 1000 and bare.read_bytes() == full

    # A part as long as the artifact cannot be a prefix of a longer one (416): restarted.
    whole = tmp_path / "whole.tif"
    whole.with_name("whole.tif.part").write_bytes(full)
    assert client.download(rec.tiff_url, whole).read_bytes() == full

    # Leftovers of another artifact saved under the same name are not continued.
    other = tmp_path / "other.tif"
    other.with_name("other.tif.part").write_bytes(b"\0" * 5000)
    other.with_name("other.tif.part.json").write_text(json.dumps({"url": "http://x/y"}))
    assert client.download(rec.tiff_url, other).read_bytes() == full


@pytest.mark.slow
def test_download_into_a_directory_uses_the_server_file_name(
    client: SaftClient, finished: tuple[Job, Reconstruction], tmp_path: Path
) -> None:
    _, rec = finished
    mp4 = client.download(rec.mp4_url or "", tmp_path)
    assert mp4 == tmp_path / f"reconstruction-{rec.id}.mp4"
    assert mp4.read_bytes()[4:8] == b"ftyp"
    with pytest.raises(NotFoundError):
        client.download(f"/v1/reconstructions/{'0' * 32}/tiff", tmp_path / "x.tif")
    assert not list(tmp_path.glob("x.tif*"))


# ---- asyncio ------------------------------------------------------------------------------


@pytest.mark.slow
def test_async_client_end_to_end(service: Service, tiny_model: str, tmp_path: Path) -> None:
    lr = write_stack(tmp_path / "lr.tif", seed=5)
    edge = write_stack(tmp_path / "lr_edge.tif", seed=5, edge=True)

    async def scenario() -> dict[str, Any]:
        async with AsyncSaftClient(service.url, service.key) as ac:
            job = await ac.submit_job(lr, edge=edge, sr_model=tiny_model, iterations=1)
            events: list[JobEvent] = []

            async def on_event(ev: JobEvent) -> None:
                events.append(ev)

            done = await ac.wait(job.id, on_event=on_event, timeout=JOB_TIMEOUT_S)
            its = await ac.iterations(job.id)
            rec = await ac.reconstruct(job.id, done.recommended_iteration or 0, video=False)
            rec = await ac.wait_reconstruction(rec.id, timeout=JOB_TIMEOUT_S, poll_interval=0.2)
            path = await ac.download(rec.tiff_url or "", tmp_path)
            with pytest.raises(ValidationError) as bad:
                await ac.submit_job(done.lr_dataset, sr_model=tiny_model, sigma=-1.0)

            async def no_stream(*args: Any, **kwargs: Any) -> Any:
                raise SaftConnectionError("no SSE here")
                yield  # an async generator, like the real one

            ac.events = no_stream  # type: ignore[method-assign]
            polled: list[JobEvent] = []
            again = await ac.wait(job.id, on_event=polled.append, timeout=JOB_TIMEOUT_S)
            return {
                "done": done,
                "events": events,
                "its": its,
                "rec": rec,
                "path": path,
                "bad": bad.value,
                "again": again,
                "polled": polled,
            }

    out = asyncio.run(scenario())
    assert out["done"].succeeded
    assert [e.iteration for e in out["events"] if e.kind == "iteration"] == [0, 1]
    assert out["events"][-1].is_final
    assert [it.iteration for it in out["its"]] == [0, 1]
    assert out["rec"].succeeded and out["rec"].mp4_url is None
    assert tifffile.imread(out["path"]).shape == (4, 128, 128)
    assert out["bad"].field == "params.sigma"
    assert out["again"].id == out["done"].id and out["polled"][-1].state == "succeeded"
