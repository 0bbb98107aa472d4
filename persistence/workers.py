"""The worker registry: each worker's row (device, capabilities), refreshed while it lives.

A worker upserts its row at start (``register_worker``), touches ``seen_at`` every
heartbeat (``touch_worker``) and deletes it on a clean shutdown. A killed worker's row simply
goes stale: ``live_workers`` only returns rows seen within ``stale_after_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from persistence.tables import WorkerRecord, utcnow


def register_worker(
    session: Session,
    worker_id: str,
    *,
    hostname: str,
    pid: int,
    queue: str,
    device: str | None,
    capabilities: dict[str, Any],
    environment: dict[str, Any],
) -> WorkerRecord:
    """Insert or replace the row of ``worker_id`` (``host:pid``: a restarted pid replaces it)."""
    row = session.get(WorkerRecord, worker_id)
    if row is None:
        row = WorkerRecord(id=worker_id)
        session.add(row)
    now = utcnow()
    row.hostname, row.pid, row.queue, row.device = hostname, pid, queue, device
    row.capabilities, row.environment = capabilities, environment
    row.started_at = row.seen_at = now
    return row


def touch_worker(session: Session, worker_id: str) -> bool:
    """Refresh ``seen_at``; False if the row is gone (then the caller registers again)."""
    res = session.execute(
        update(WorkerRecord)
        .where(WorkerRecord.id == worker_id)
        .values(seen_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1


def remove_worker(session: Session, worker_id: str) -> None:
    session.execute(delete(WorkerRecord).where(WorkerRecord.id == worker_id))


def prune_workers(session: Session, older_than_s: float) -> int:
    """Delete rows not seen for ``older_than_s`` (workers killed long ago); returns how many."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    res = session.execute(delete(WorkerRecord).where(WorkerRecord.seen_at < cutoff))
    return res.rowcount


def all_workers(session: Session) -> list[WorkerRecord]:
    """Every row, live or stale, most recently seen first."""
    return list(session.scalars(select(WorkerRecord).order_by(WorkerRecord.seen_at.desc())))


def live_workers(session: Session, stale_after_s: float) -> list[WorkerRecord]:
    """Workers seen within ``stale_after_s`` seconds."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    return [w for w in all_workers(session) if w.seen_at >= cutoff]


def has_capability(worker: WorkerRecord, name: str) -> bool:
    return bool((worker.capabilities or {}).get(name, {}).get("available"))


def missing_everywhere(workers: Sequence[WorkerRecord], name: str) -> str | None:
    """The reason no live worker has capability ``name``; None if one has it or none is live.

    With no live worker nothing is known, so nothing is refused (the job waits in the queue).
    """
    if not workers or any(has_capability(w, name) for w in workers):
        return None
    reasons = {(w.capabilities or {}).get(name, {}).get("reason") or "unknown" for w in workers}
    return "; ".join(sorted(reasons))
