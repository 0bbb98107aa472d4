"""Server-sent events of a job, read by polling the ``job_events`` table.

Polling works the same on SQLite and PostgreSQL and across processes (the worker writes
events, any API process can stream them). The event id is the row id, so a client that
reconnects with ``Last-Event-ID`` continues exactly after the last event it saw. The stream
ends after the event announcing a final state; comment lines keep idle connections open
through proxies.

Ordering: each poll reads the job's state *before* its new events. A worker commits a final
state and its event together, so if the state read is final, the event read that follows
contains the final event: the stream can never end before delivering it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import select

from api.deps import new_session
from persistence.settings import Settings
from persistence.tables import Job, JobEvent
from saft_core.states import FINAL_STATES

BATCH = 200
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSEConfig:
    poll_s: float = 1.0
    heartbeat_s: float = 15.0
    retry_ms: int = 3000


def _poll(settings: Settings, job_id: str, after: int) -> tuple[str | None, list[JobEvent]]:
    with new_session(settings) as s:  # closing ends the read; rows stay loaded
        state = s.scalar(select(Job.state).where(Job.id == job_id))
        rows = list(
            s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(BATCH)
            )
        )
        return state, rows


def finite_json(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities (invalid JSON) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def format_event(ev: JobEvent) -> str:
    data: dict[str, Any] = {**finite_json(ev.data or {}), "at": ev.created_at.isoformat()}
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return f"id: {ev.id}\nevent: {ev.kind}\ndata: {payload}\n\n"


def is_final(ev: JobEvent) -> bool:
    return ev.kind == "state" and (ev.data or {}).get("state") in FINAL_STATES


async def job_event_stream(
    settings: Settings, job_id: str, after: int, config: SSEConfig
) -> AsyncIterator[str]:
    """Events with id > ``after``; returns after a final-state event (or a final job)."""
    yield f"retry: {config.retry_ms}\n\n"
    last_sent = time.monotonic()
    try:
        while True:
            state, rows = await anyio.to_thread.run_sync(_poll, settings, job_id, after)
            for ev in rows:
                after = ev.id
                yield format_event(ev)
                last_sent = time.monotonic()
                if is_final(ev):
                    return
            if state is None or (not rows and state in FINAL_STATES):
                return  # job deleted, or final and every event already delivered
            if len(rows) == BATCH:
                continue
            if time.monotonic() - last_sent >= config.heartbeat_s:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            await anyio.sleep(config.poll_s)
    finally:
        # Reached on the final state and when the client goes away (the task is cancelled).
        log.debug("event stream of job %s closed after event %s", job_id, after)
