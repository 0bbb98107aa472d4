"""Sending task messages (by name: no torch, no task code) and peeking at what is queued.

The API calls ``enqueue_job`` right after committing a job row. A failed send is logged and
not raised: the row is already queued in the database, and the reconciler re-sends messages
for queued jobs that have none.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlparse

import redis
from celery import Celery

from persistence.settings import Settings, get_settings
from worker.celery_app import TASK_RUN_JOB, TASK_RUN_RECONSTRUCTION, broker_url, make_app

log = logging.getLogger(__name__)

_apps: dict[tuple[str, str], Celery] = {}
_lock = threading.Lock()
PRIORITY_SEP = "\x06\x16"  # kombu's separator of priority sub-queues in Redis


def producer(settings: Settings | None = None) -> Celery:
    """A Celery app per (broker, queue), reused for its connection pool."""
    settings = settings or get_settings()
    key = (broker_url(settings), settings.queue)
    with _lock:
        app = _apps.get(key)
        if app is None:
            app = _apps[key] = make_app(settings)
        return app


def send(task_name: str, task_id: str, settings: Settings | None = None) -> bool:
    """Publish one message carrying only the row id; False (logged) if the broker is down."""
    settings = settings or get_settings()
    try:
        producer(settings).send_task(task_name, args=[task_id], queue=settings.queue)
    except Exception as exc:  # broker down: the reconciler will re-send
        log.warning("could not send %s(%s): %s", task_name, task_id, exc)
        return False
    return True


def enqueue_job(job_id: str, settings: Settings | None = None) -> bool:
    return send(TASK_RUN_JOB, job_id, settings)


def enqueue_reconstruction(recon_id: str, settings: Settings | None = None) -> bool:
    return send(TASK_RUN_RECONSTRUCTION, recon_id, settings)


def redis_client(url: str) -> redis.Redis:
    """A redis-py client for a kombu broker URL (``redis://``, ``rediss://``, ``redis+socket://``)."""
    if url.startswith(("redis+socket://", "socket://")):
        return redis.Redis(unix_socket_path=urlparse(url).path, socket_timeout=5)
    return redis.Redis.from_url(url, socket_timeout=5)


def pending_ids(settings: Settings | None = None, fresh_unacked_s: float | None = None) -> set[str]:
    """Row ids that have a message waiting in the queue or being handled by a live worker.

    Unacked messages delivered more than ``fresh_unacked_s`` ago are left out: a worker that
    received a message and did not claim its row by then has died with it. Raises
    ``redis.RedisError`` if the broker cannot be read (callers then assume nothing is pending).
    """
    settings = settings or get_settings()
    fresh = settings.requeue_after_s if fresh_unacked_s is None else fresh_unacked_s
    r = redis_client(broker_url(settings))
    try:
        ids: set[str] = set()
        queues = [settings.queue] + [f"{settings.queue}{PRIORITY_SEP}{p}" for p in range(1, 10)]
        for q in queues:
            for raw in r.lrange(q, 0, -1):
                ids.update(_message_ids(raw))
        since = time.time() - fresh
        for tag in r.zrangebyscore("unacked_index", since, "+inf"):
            raw = r.hget("unacked", tag)
            if raw is not None:
                with contextlib.suppress(ValueError, IndexError):
                    ids.update(_message_ids(json.loads(raw)[0]))
        return ids
    finally:
        r.close()


def _message_ids(raw: bytes | str | dict[str, Any]) -> list[str]:
    """The row id argument of a Celery protocol-2 message, if it is one of our tasks."""
    with contextlib.suppress(ValueError, KeyError, TypeError, IndexError, AttributeError):
        msg = raw if isinstance(raw, dict) else json.loads(raw)
        headers = msg.get("headers") or {}
        if headers.get("task") not in (TASK_RUN_JOB, TASK_RUN_RECONSTRUCTION):
            return []
        body: Any = msg.get("body")
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return [str(a) for a in args[:1]]
    return []
