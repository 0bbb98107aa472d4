"""Shared fixtures of the service tests (persistence, worker, API). Real services, no mocks.

Databases
- ``sqlite_url``: a fresh SQLite file URL in ``tmp_path`` (not migrated).
- ``pg_server``: session; skips the test if PostgreSQL at 127.0.0.1:5432 is unreachable
  (fails it under CI, see tests/conftest.py).
- ``fresh_pg_url``: factory; ``fresh_pg_url()`` creates an empty ``saft_test_<random>``
  database and returns its URL; every one is dropped (WITH FORCE) at the end of the session.
- ``pg_url``: a session-wide PostgreSQL database migrated to head and emptied (TRUNCATE)
  before each test that uses it.
- ``db_url``: parametrised over ``sqlite`` and ``postgres`` (marked ``postgres``): migrated.

Broker
- ``redis_url``: session; a ``redis://127.0.0.1:6379/<n>`` database claimed for this session
  (``n`` in 1..15 whose only key is our claim), flushed before use and at the end.
- ``test_queue``: session; a unique queue name so parallel test sessions never share messages.
- ``embedded_redis``: an ``EmbeddedRedis`` on a short ``/tmp`` unix socket, stopped after.

Service environment
- ``make_saft_env(database_url=None, broker_url=None, **settings)``: sets ``SAFT_*`` env vars
  (data dir in ``tmp_path``, SQLite by default, fast heartbeat/reconcile timings), migrates,
  clears the settings cache and engines, and returns a ``ServiceEnv`` (``.settings``,
  ``.data_dir``, ``.env`` = the environment for subprocesses). Restored after the test.
- ``saft_env``: ``make_saft_env`` with SQLite and the real Redis ``redis_url``.
- ``saft_env_pg``: the same over ``pg_url``.

Workers
- ``start_worker(env)``: starts ``celery -A worker.celery_app worker --pool solo`` as a real
  subprocess with ``env.env``; returns a ``WorkerProcess`` (``.kill()`` = SIGKILL, ``.stop()``,
  ``.log()``, ``.wait_ready()``). All are stopped after the test.
- ``celery_worker``: one worker started on ``saft_env`` and ready.

API (helpers such as ``Api``, ``problem`` and ``add_dataset`` live in api_fixtures.py)
- ``api``: a TestClient on a fresh app over ``saft_env`` (SQLite + the real Redis).
- ``api_pg``: the same over ``saft_env_pg``.
- ``any_api``: parametrised over both (the ``postgres`` one marked ``postgres``).

Data
- ``tiny_job_inputs(env)``: a user, a 6x32x32 LR stack with its edge map, a 128x128 SMLM image,
  and tiny SR/DEN model files registered as datasets/models; returns ``TinyInputs`` with ids
  and the ``User``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_unreachable

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CLAIM_KEY = "saft:test-session-claim"

# Fast timings so crash recovery happens within seconds in tests.
FAST_SETTINGS = {
    "heartbeat_s": "0.5",
    "stale_after_s": "4",
    "requeue_after_s": "3",
    "reconcile_interval_s": "1",
}


# ---- databases --------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'saft.db'}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:
        service_unreachable(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    finally:
        engine.dispose()
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def fresh_pg_url(pg_server: str) -> Iterator[Callable[[], str]]:
    from sqlalchemy import create_engine, text

    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def make() -> str:
        name = f"saft_test_{secrets.token_hex(6)}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    yield make
    from persistence.db import reset_engines

    reset_engines()
    with admin.connect() as c:
        for name in created:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _pg_session_db(fresh_pg_url: Callable[[], str]) -> str:
    from persistence.migrate import upgrade

    url = fresh_pg_url()
    upgrade(url)
    return url


@pytest.fixture
def pg_url(_pg_session_db: str) -> str:
    """The session's migrated PostgreSQL database, emptied for this test."""
    from sqlalchemy import create_engine, text

    from persistence.tables import Base

    engine = create_engine(_pg_session_db)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as c:
        c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return _pg_session_db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    from persistence.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'saft.db'}"
    upgrade(url)
    return url


# ---- broker -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    import redis

    token = secrets.token_hex(8)
    for n in range(1, 16):
        r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=n, socket_timeout=2)
        try:
            # A db is free if empty; the claim key (with expiry) keeps other sessions out.
            if r.dbsize() == 0 and r.set(CLAIM_KEY, token, nx=True, ex=3600):
                if r.dbsize() == 1:
                    break
                r.delete(CLAIM_KEY)
        except redis.ConnectionError as exc:
            service_unreachable(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}")
        r.close()
    else:
        service_unreachable("no free Redis database number (1..15) on 127.0.0.1:6379")
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{n}"
    if r.get(CLAIM_KEY) == token.encode():
        r.flushdb()
    r.close()


@pytest.fixture(scope="session")
def test_queue() -> str:
    return f"gpu-test-{secrets.token_hex(4)}"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short /tmp directory (unix socket paths are limited to ~100 characters)."""
    d = Path(tempfile.mkdtemp(prefix="saft-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def embedded_redis(short_tmp: Path) -> Iterator[Any]:
    from worker.embedded import EmbeddedRedis

    broker = EmbeddedRedis(short_tmp / "redis.sock", short_tmp / "redis").start()
    yield broker
    broker.stop()


# ---- service environment ----------------------------------------------------------------


@dataclass
class ServiceEnv:
    """The settings a test runs with, and the same as environment for subprocesses."""

    settings: Any
    data_dir: Path
    env: dict[str, str]


@pytest.fixture
def make_saft_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_queue: str
) -> Iterator[Callable[..., ServiceEnv]]:
    from persistence.db import reset_engines
    from persistence.migrate import upgrade
    from persistence.settings import get_settings

    def make(
        database_url: str | None = None, broker_url: str | None = None, **overrides: Any
    ) -> ServiceEnv:
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        values = {
            "data_dir": str(data_dir),
            "database_url": database_url or f"sqlite:///{data_dir / 'saft.db'}",
            "broker_url": broker_url or "",
            "queue": test_queue,
            **FAST_SETTINGS,
            **{k: str(v) for k, v in overrides.items()},
        }
        for k in list(os.environ):
            if k.startswith("SAFT_"):
                monkeypatch.delenv(k)
        for k, v in values.items():
            monkeypatch.setenv(f"SAFT_{k.upper()}", v)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        get_settings.cache_clear()
        reset_engines()
        settings = get_settings()
        upgrade(settings.database_url)
        pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
        return ServiceEnv(settings=settings, data_dir=settings.data_dir, env=env)

    yield make
    reset_engines()
    get_settings.cache_clear()


@pytest.fixture
def saft_env(make_saft_env: Callable[..., ServiceEnv], redis_url: str) -> ServiceEnv:
    return make_saft_env(broker_url=redis_url)


@pytest.fixture
def saft_env_pg(
    make_saft_env: Callable[..., ServiceEnv], redis_url: str, pg_url: str
) -> ServiceEnv:
    return make_saft_env(database_url=pg_url, broker_url=redis_url)


# ---- workers ----------------------------------------------------------------------------


class WorkerProcess:
    """A real Celery worker subprocess; its output goes to a log file."""

    def __init__(self, env: ServiceEnv, log_path: Path, name: str) -> None:
        from saft_cli.service_commands import worker_argv

        self.log_path = log_path
        argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app"]
        argv += worker_argv(env.settings.queue, name)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, env=env.env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{self.log()}")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not in the worker log:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: the crash the service must survive."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[ServiceEnv], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(env: ServiceEnv) -> WorkerProcess:
        n = len(started)
        name = f"test{n}-{secrets.token_hex(3)}@%h"
        w = WorkerProcess(env, tmp_path / f"worker{n}.log", name)
        started.append(w)
        return w

    yield start
    for w in started:
        with contextlib.suppress(Exception):
            w.stop()


@pytest.fixture
def celery_worker(
    saft_env: ServiceEnv, start_worker: Callable[[ServiceEnv], WorkerProcess]
) -> WorkerProcess:
    return start_worker(saft_env).wait_ready()


# ---- data -------------------------------------------------------------------------------


@dataclass
class TinyInputs:
    user: Any
    lr_dataset_id: str
    edge_dataset_id: str
    sr_model_id: str
    den_model_id: str
    smlm_dataset_id: str  # an SMLM image on the SR grid (4x), for SAFT-WSF jobs

    def create_job(self, *, smlm: bool = False, **params: Any) -> str:
        """A queued job on these inputs: 2 iterations on 16-pixel tiles unless ``params`` say;
        with ``smlm`` the SMLM image is the target (SAFT-WSF: no edges, no DEN)."""
        from persistence import jobs
        from persistence.db import session_scope

        with session_scope() as s:
            job = jobs.create_job(
                s,
                self.user,
                lr_dataset_id=self.lr_dataset_id,
                edge_dataset_id=None if smlm else self.edge_dataset_id,
                smlm_dataset_id=self.smlm_dataset_id if smlm else None,
                sr_model=self.sr_model_id,
                den_model=None if smlm else self.den_model_id,
                params={"iterations": 2, "tile": 16, **params},
            )
            return job.id


def _add_dataset(session: Any, storage: Any, owner: Any, name: str, data: Any) -> str:
    import hashlib

    import tifffile

    from persistence.tables import Dataset, new_id

    ds_id = new_id()
    path = storage.dataset_path(ds_id)
    tifffile.imwrite(path, data)
    raw = path.read_bytes()
    session.add(
        Dataset(
            id=ds_id,
            owner_id=owner.id,
            filename=name,
            path=storage.relative(path),
            shape=list(data.shape),
            dtype=str(data.dtype),
            pixel_size=0.1,
            sha256=hashlib.sha256(raw).hexdigest(),
            bytes=len(raw),
        )
    )
    return ds_id


def _add_model(session: Any, storage: Any, owner: Any, model: Any, kind: str) -> str:
    import hashlib
    from dataclasses import asdict

    from persistence.tables import ModelFile, new_id
    from saft_core.networks import count_parameters, save_checkpoint

    m_id = new_id()
    path = storage.model_path(m_id)
    save_checkpoint(path, model, kind)
    raw = path.read_bytes()
    session.add(
        ModelFile(
            id=m_id,
            owner_id=owner.id,
            kind=kind,
            name=f"tiny-{kind}",
            path=storage.relative(path),
            config=asdict(model.config),
            sha256=hashlib.sha256(raw).hexdigest(),
            bytes=len(raw),
            parameters=count_parameters(model),
        )
    )
    return m_id


@pytest.fixture
def tiny_job_inputs() -> Callable[[ServiceEnv], TinyInputs]:
    def make(env: ServiceEnv) -> TinyInputs:
        import torch

        from persistence.auth import create_user
        from persistence.db import session_scope
        from persistence.storage import Storage
        from saft_core.networks import DENConfig, SRConfig, build_den, build_sr
        from tests.core.synthetic import filament_stack

        lr, edges, truth = filament_stack(n_frames=6, lr_size=32)
        storage = Storage(env.data_dir)
        torch.manual_seed(0)
        sr = build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4))
        den = build_den(DENConfig(base=4, depth=2))
        with session_scope() as s:
            user, _ = create_user(s, f"user{secrets.token_hex(3)}")
            inputs = TinyInputs(
                user=user,
                lr_dataset_id=_add_dataset(s, storage, user, "lr.tif", lr),
                edge_dataset_id=_add_dataset(s, storage, user, "edges.tif", edges),
                sr_model_id=_add_model(s, storage, user, sr, "sr"),
                den_model_id=_add_model(s, storage, user, den, "den"),
                smlm_dataset_id=_add_dataset(s, storage, user, "smlm.tif", truth.mean(axis=0)),
            )
        return inputs

    return make


# ---- API --------------------------------------------------------------------------------


@pytest.fixture
def api(saft_env: ServiceEnv) -> Iterator[Any]:
    """The API over SQLite in tmp_path and the real Redis broker."""
    from tests.service.api_fixtures import open_api

    yield from open_api(saft_env)


@pytest.fixture
def api_pg(saft_env_pg: ServiceEnv) -> Iterator[Any]:
    """The API over the session's PostgreSQL database and the real Redis broker."""
    from tests.service.api_fixtures import open_api

    yield from open_api(saft_env_pg)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_api(request: pytest.FixtureRequest) -> Any:
    """The API over each database kind."""
    return request.getfixturevalue("api" if request.param == "sqlite" else "api_pg")
