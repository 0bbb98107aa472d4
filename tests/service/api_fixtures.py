"""Fixtures and helpers of the API tests (import the fixtures you use from here).

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


def _make_api(env: ServiceEnv) -> Iterator[Api]:
    from api.main import create_app
    from api.sse import SSEConfig

    app = create_app(env.settings, sse=SSEConfig(poll_s=0.05, heartbeat_s=0.3, retry_ms=100))
    with TestClient(app) as client:
        yield Api(client=client, env=env)


@pytest.fixture
def api(saft_env: ServiceEnv) -> Iterator[Api]:
    """The API over SQLite in tmp_path and the real Redis broker."""
    yield from _make_api(saft_env)


@pytest.fixture
def api_pg(saft_env_pg: ServiceEnv) -> Iterator[Api]:
    """The API over the session's PostgreSQL database and the real Redis broker."""
    yield from _make_api(saft_env_pg)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_api(request: pytest.FixtureRequest) -> Api:
    """The API over each database kind."""
    return request.getfixturevalue("api" if request.param == "sqlite" else "api_pg")


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
    from persistence.models import Dataset, new_id
    from persistence.storage import Storage

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
    from persistence.models import ModelFile, new_id
    from persistence.storage import Storage

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
