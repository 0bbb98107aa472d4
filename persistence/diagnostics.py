"""What an admin checks first: database, broker, data dir and the workers seen (no torch).

Shared by ``saft doctor`` (which adds this machine's torch build, GPUs and optional parts)
and the admin-only ``GET /v1/info``. Every probe has a short timeout and returns an error
string instead of raising, so one unreachable service never hides the others.
"""

from __future__ import annotations

import contextlib
import platform
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from persistence.settings import Settings
from persistence.tables import WorkerRecord, utcnow
from saft_core.capabilities import NAMES, package_versions

PROBE_TIMEOUT_S = 3
# Packages the service cannot run without; nanopyx and imageio-ffmpeg are optional parts.
REQUIRED_PACKAGES = ("torch", "numpy", "tifffile", "fastapi", "celery", "sqlalchemy")


def redact(url: str) -> str:
    """A URL fit to print: the password replaced by ***."""
    parts = urlparse(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunparse(parts._replace(netloc=netloc))


def check_database(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if ``SELECT 1`` works on a fresh connection, else why not."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = max(1, int(timeout))
    elif url.startswith("sqlite"):
        if (path := sqlite_path(url)) is not None and not path.is_file():
            return None  # created by `saft serve` or `saft db upgrade`; connecting would too
        connect_args["timeout"] = timeout
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return _one_line(exc)
    finally:
        engine.dispose()
    return None


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1]
    return Path(path) if path and path != ":memory:" else None


def check_broker(settings: Settings, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if the broker answers PING within ``timeout`` s, else why not."""
    import redis

    url = settings.effective_broker_url
    if settings.embedded_broker and not settings.redis_socket.exists():
        return f"the embedded broker is not running (`saft serve` starts it on {url})"
    try:
        if url.startswith(("redis+socket://", "socket://")):
            client = redis.Redis(
                unix_socket_path=urlparse(url).path,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
        else:
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        with contextlib.closing(client):
            client.ping()
    except Exception as exc:
        return _one_line(exc)
    return None


def check_data_dir(path: Path) -> str | None:
    """None if ``path`` is a directory this process can write, else why not."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"{path} is not writable ({_one_line(exc)})"
    return None


def worker_info(
    w: WorkerRecord, stale_after_s: float, now: datetime | None = None
) -> dict[str, Any]:
    """One registry row as reported: alive, device, GPUs and what it cannot do."""
    now = now or utcnow()
    caps = w.capabilities or {}
    build = (w.environment or {}).get("build") or {}
    age = (now - w.seen_at).total_seconds()
    return {
        "id": w.id,
        "hostname": w.hostname,
        "pid": w.pid,
        "queue": w.queue,
        "device": w.device,
        "alive": age <= stale_after_s,
        "seen_seconds_ago": round(age, 1),
        "started_at": w.started_at.isoformat(),
        "capabilities": caps,
        "unavailable": {
            name: caps.get(name, {}).get("reason") or "not reported"
            for name in NAMES
            if not caps.get(name, {}).get("available")
        },
        "torch": build.get("torch"),
        "cuda": build.get("cuda"),
        "cudnn": build.get("cudnn"),
        "gpus": build.get("gpus") or [],
        "packages": (w.environment or {}).get("packages") or {},
    }


def service_report(settings: Settings) -> dict[str, Any]:
    """The shared part of ``saft doctor`` and ``GET /v1/info`` (this process's view)."""
    from persistence.workers import all_workers

    db_error = check_database(settings.database_url)
    workers: list[dict[str, Any]] = []
    workers_error: str | None = None
    new_sqlite = (path := sqlite_path(settings.database_url)) is not None and not path.is_file()
    if new_sqlite:
        workers_error = "the SQLite database is not created yet (`saft serve` creates it)"
    elif db_error is None:
        from sqlalchemy.orm import Session

        from persistence.db import get_engine

        try:
            with Session(get_engine(settings.database_url)) as s:
                workers = [worker_info(w, settings.stale_after_s) for w in all_workers(s)]
        except Exception as exc:  # e.g. the database is not migrated yet
            workers_error = f"cannot read the workers table (`saft db upgrade`?): {_one_line(exc)}"
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": package_versions(),
        "data_dir": {"path": str(settings.data_dir), "error": check_data_dir(settings.data_dir)},
        "database": {"url": redact(settings.database_url), "error": db_error},
        "broker": {"url": redact(settings.effective_broker_url), "error": check_broker(settings)},
        "queue": settings.queue,
        "workers": workers,
        "workers_error": workers_error,
    }


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
