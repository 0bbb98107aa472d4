"""Helpers of the API tests; their fixtures (``api``, ``api_pg``, ``any_api``) are in conftest.py.

Builds on tests/service/conftest.py: real SQLite/PostgreSQL databases and the real Redis.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import ServiceEnv


@dataclass
class ApiUser:
    id: str
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Api:
    """A TestClient on a fresh app, its service environment, and a user factory."""

    client: TestClient
    env: ServiceEnv

    def user(self, name: str | None = None) -> ApiUser:
        from persistence.auth import create_user
        from persistence.db import session_scope

        with session_scope() as s:
            user, key = create_user(s, name or f"u{secrets.token_hex(4)}")
            return ApiUser(user.id, user.name, key)

    @property
    def data_dir(self) -> Path:
        return self.env.data_dir


def tiff_bytes(data: np.ndarray, pixel_size: float | None = 0.1, **kwargs: Any) -> bytes:
    """A TIFF file in memory (resolution in pixels per cm when ``pixel_size`` um is given)."""
    import tifffile

    buf = io.BytesIO()
    extra: dict[str, Any] = {}
    if pixel_size:
        extra = {"resolution": (1e4 / pixel_size, 1e4 / pixel_size), "resolutionunit": "CENTIMETER"}
    kwargs.setdefault("photometric", "minisblack")  # a 3-frame stack is not RGB
    tifffile.imwrite(buf, data, **extra, **kwargs)
    return buf.getvalue()


def stack(t: int = 6, h: int = 32, w: int = 32, dtype: Any = np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.random((t, h, w)) * 100).astype(dtype)


def upload_dataset(api: Api, user: ApiUser, data: bytes, filename: str = "stack.tif") -> Any:
    return api.client.post(
        "/v1/datasets",
        headers=user.headers,
        files={"file": (filename, data, "image/tiff")},
    )


def files_under(path: Path) -> list[Path]:
    """Every regular file under ``path`` (the database files excluded)."""
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("saft.db"))


def open_api(env: ServiceEnv) -> Iterator[Api]:
    """A TestClient on a fresh app over ``env`` (the ``api`` fixtures in conftest.py use it)."""
    from api.main import create_app
    from api.sse import SSEConfig

    app = create_app(env.settings, sse=SSEConfig(poll_s=0.05, heartbeat_s=0.3, retry_ms=100))
    with TestClient(app) as client:
        yield Api(client=client, env=env)


def queued_ids(env: ServiceEnv) -> set[str]:
    """Row ids with a message waiting in the test queue of the real broker."""
    from worker.queue import pending_ids

    return pending_ids(env.settings)


def problem(resp: Any, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 answer with ``status`` and return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    assert "Traceback" not in resp.text
    return body


def error_fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors") or []]


MakeUser = Callable[[str | None], ApiUser]


def add_dataset(api: Api, user: ApiUser, data: np.ndarray, name: str = "stack.tif") -> str:
    """Register a dataset directly (file + row), bypassing the upload endpoint."""
    import hashlib

    from persistence.db import session_scope
    from persistence.storage import Storage
    from persistence.tables import Dataset, new_id

    storage = Storage(api.data_dir)
    ds_id = new_id()
    path = storage.dataset_path(ds_id)
    raw = tiff_bytes(data)
    path.write_bytes(raw)
    shape = list(data.shape) if data.ndim == 3 else [1, *data.shape]
    with session_scope() as s:
        s.add(
            Dataset(
                id=ds_id,
                owner_id=user.id,
                filename=name,
                path=storage.relative(path),
                shape=shape,
                dtype=str(data.dtype),
                pixel_size=0.1,
                sha256=hashlib.sha256(raw).hexdigest(),
                bytes=len(raw),
            )
        )
    return ds_id


def add_model(api: Api, user: ApiUser, kind: str, config: dict[str, Any] | None = None) -> str:
    """Register a model row (the file content is irrelevant to the API tests using it)."""
    from persistence.db import session_scope
    from persistence.storage import Storage
    from persistence.tables import ModelFile, new_id

    storage = Storage(api.data_dir)
    m_id = new_id()
    path = storage.model_path(m_id)
    path.write_bytes(b"not read by these tests")
    with session_scope() as s:
        s.add(
            ModelFile(
                id=m_id,
                owner_id=user.id,
                kind=kind,
                name=f"{kind}.pth",
                path=storage.relative(path),
                config=config if config is not None else ({"scale": 4} if kind == "sr" else {}),
                sha256="0" * 64,
                bytes=path.stat().st_size,
                parameters=1,
            )
        )
    return m_id


# ---- end-to-end helpers (real HTTP against a server subprocess) ------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Server:
    """An API server subprocess (uvicorn or ``saft serve``) with its log file."""

    proc: Any
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90, path: str = "/readyz") -> Server:
        import httpx

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return httpx.get(self.base_url + path, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, f"{self.base_url}{path}")
        return self

    def stop(self, sig: int | None = None, timeout: float = 60) -> None:
        import os
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(sig if sig is not None else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_uvicorn(env: ServiceEnv, log_path: Path) -> Server:
    """``uvicorn api.main:app`` on a free port with the service environment."""
    import subprocess
    import sys

    from tests.service.conftest import REPO

    port = free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port), "--no-access-log"],
        env=env.env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return Server(proc, f"http://127.0.0.1:{port}", log_path)


def read_sse(http: Any, url: str, headers: dict[str, str], timeout: float) -> list[dict[str, Any]]:
    """Read an SSE stream to its end (the server closes it after the final state)."""
    import json
    import time

    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with http.stream("GET", url, headers=headers, timeout=60) as resp:
        assert resp.status_code == 200, resp.read()
        ev: dict[str, Any] = {}
        for line in resp.iter_lines():
            if time.monotonic() > deadline:
                raise TimeoutError(f"SSE stream {url} still open after {timeout} s")
            if not line:
                if "id" in ev:
                    events.append(ev)
                ev = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                ev[key] = json.loads(value) if key == "data" else value
    return events


def tiny_checkpoint_files(directory: Path) -> dict[str, Path]:
    """Tiny SR (nf 8, 1 block) and DEN (base 4) checkpoints, as a user would upload them."""
    import torch

    from saft_core.networks import DENConfig, SRConfig, build_den, build_sr, save_checkpoint

    torch.manual_seed(0)
    sr, den = directory / "tiny_sr.pth", directory / "tiny_den.pth"
    save_checkpoint(sr, build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4)), "sr")
    save_checkpoint(den, build_den(DENConfig(base=4, depth=2)), "den")
    return {"sr": sr, "den": den}


def e2e_flow(
    http: Any,
    key: str,
    other_key: str,
    *,
    checkpoints: dict[str, Path] | None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Upload -> fine-tune 2 iterations -> iterations -> reconstruct 1 -> TIFF (T, 4H, 4W);
    cancel a queued and a running job; another user sees 404 everywhere. Real HTTP only."""
    import io as _io
    import time

    import tifffile

    from tests.core.synthetic import filament_stack

    h = {"Authorization": f"Bearer {key}"}
    other = {"Authorization": f"Bearer {other_key}"}
    figures: dict[str, Any] = {}
    lr, edges, _ = filament_stack(n_frames=6, lr_size=32)

    def up(name: str, data: np.ndarray) -> dict[str, Any]:
        r = http.post("/v1/datasets", headers=h, files={"file": (name, tiff_bytes(data))})
        assert r.status_code == 201, r.text
        return r.json()

    lr_ds, edge_ds = up("lr.tif", lr), up("edges.tif", edges)
    assert lr_ds["shape"] == [6, 32, 32] and lr_ds["pixel_size"] == pytest.approx(0.1)

    models: dict[str, str] = {"sr_model": "default", "den_model": "default"}
    if checkpoints:
        for kind in ("sr", "den"):
            path = checkpoints[kind]
            r = http.post(
                "/v1/models",
                headers=h,
                files={"file": (path.name, path.read_bytes())},
                data={"kind": kind},
                timeout=180,
            )
            assert r.status_code == 201, r.text
            models[f"{kind}_model"] = r.json()["id"]
    body = {
        "lr_dataset": lr_ds["id"],
        "edge_dataset": edge_ds["id"],
        **models,
        "params": {"iterations": 2, "lr": 1e-4, "tile": 16, "seed": 1},
    }
    t0 = time.monotonic()
    r = http.post("/v1/jobs", headers={**h, "Idempotency-Key": "e2e-1"}, json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "queued"
    again = http.post("/v1/jobs", headers={**h, "Idempotency-Key": "e2e-1"}, json=body)
    assert again.status_code == 202 and again.json()["id"] == job["id"]

    events = read_sse(http, f"/v1/jobs/{job['id']}/events", h, timeout)
    figures["finetune_s"] = round(time.monotonic() - t0, 1)
    states = [e["data"]["state"] for e in events if e["event"] == "state"]
    assert states[0] == "queued" and states[-1] == "succeeded", events
    assert "running" in states
    assert [e["data"]["iteration"] for e in events if e["event"] == "iteration"] == [0, 1, 2]
    # Resume from the middle of the stream: exactly the rest.
    cut = events[len(events) // 2]["id"]
    rest = read_sse(http, f"/v1/jobs/{job['id']}/events", {**h, "Last-Event-ID": cut}, 60)
    assert [e["id"] for e in rest] == [e["id"] for e in events[len(events) // 2 + 1 :]]

    j = http.get(f"/v1/jobs/{job['id']}", headers=h).json()
    assert j["state"] == "succeeded" and j["iterations_done"] == 2 and j["progress"] == 1.0
    assert j["device"].startswith("cpu") and j["finished_at"] and j["error"] is None
    its = http.get(f"/v1/jobs/{job['id']}/iterations", headers=h).json()["items"]
    assert [i["iteration"] for i in its] == [0, 1, 2]
    assert its[1]["losses"] and its[1]["seconds"] > 0
    png = http.get(its[1]["preview_url"], headers=h)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    ckpt = http.get(its[2]["checkpoint_url"], headers={**h, "Range": "bytes=0-99"})
    assert ckpt.status_code == 206 and len(ckpt.content) == 100

    rec_body = {"iteration": 1, "video": True}
    r = http.post(f"/v1/jobs/{job['id']}/reconstructions", headers=h, json=rec_body)
    assert r.status_code == 202, r.text
    rec_url = r.headers["location"]
    problem(
        http.post(f"/v1/jobs/{job['id']}/reconstructions", headers=h, json={"iteration": 9}), 422
    )
    t0 = time.monotonic()
    rec = wait_for(
        lambda: (
            (x := http.get(rec_url, headers=h).json())["state"] in ("succeeded", "failed") and x
        ),
        timeout,
        "the reconstruction",
        poll=0.5,
    )
    figures["reconstruct_s"] = round(time.monotonic() - t0, 1)
    assert rec["state"] == "succeeded", rec
    tif = http.get(rec["tiff_url"], headers=h)
    assert tif.status_code == 200 and tif.headers["content-type"] == "image/tiff"
    sr = tifffile.imread(_io.BytesIO(tif.content))
    assert sr.shape == (6, 128, 128) and sr.dtype == np.float32
    tail = http.get(rec["tiff_url"], headers={**h, "Range": "bytes=-1000"})
    assert tail.status_code == 206 and tail.content == tif.content[-1000:]
    assert rec["video"] is True and rec["mp4_url"], rec  # the video was requested
    mp4 = http.get(rec["mp4_url"], headers={**h, "Range": "bytes=0-11"})
    assert mp4.status_code == 206 and mp4.headers["content-type"] == "video/mp4"
    assert mp4.content[4:8] == b"ftyp"

    # Cancel: a long job is cancelled while running; a job queued behind it at once.
    long_body = {**body, "params": {**body["params"], "iterations": 50}}
    long = http.post("/v1/jobs", headers=h, json=long_body).json()
    wait_for(
        lambda: http.get(f"/v1/jobs/{long['id']}", headers=h).json()["state"] == "running",
        timeout,
        "the long job to start",
        poll=0.2,
    )
    queued = http.post("/v1/jobs", headers=h, json=long_body).json()
    c = http.post(f"/v1/jobs/{queued['id']}/cancel", headers=h)
    assert c.status_code == 200 and c.json()["state"] == "cancelled"
    c = http.post(f"/v1/jobs/{long['id']}/cancel", headers=h)
    assert c.status_code == 202 and c.json()["cancel_requested"] is True
    t0 = time.monotonic()
    tail_events = read_sse(http, f"/v1/jobs/{long['id']}/events", h, timeout)
    figures["cancel_s"] = round(time.monotonic() - t0, 1)
    assert tail_events[-1]["data"]["state"] == "cancelled"
    problem(http.post(f"/v1/jobs/{job['id']}/cancel", headers=h), 409)  # already succeeded

    # Another user: every id is unknown to them.
    for url in (
        f"/v1/jobs/{job['id']}",
        f"/v1/jobs/{job['id']}/iterations",
        f"/v1/jobs/{job['id']}/events",
        its[1]["preview_url"],
        rec_url,
        rec["tiff_url"],
        f"/v1/datasets/{lr_ds['id']}",
    ):
        problem(http.get(url, headers=other), 404)
    problem(http.post(f"/v1/jobs/{long['id']}/cancel", headers=other), 404)
    assert http.get("/v1/jobs", headers=other).json()["total"] == 0
    return figures
