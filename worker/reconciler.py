"""The reconciler: repairs what crashes leave behind, at worker start-up and on a timer.

- A running job/reconstruction whose heartbeat is older than ``stale_after_s`` lost its
  worker: it goes back to queued with attempts+1 (and a new message), or to failed once
  attempts reach ``max_attempts``; a cancel requested meanwhile makes it cancelled.
- A queued row older than ``requeue_after_s`` with no message in the broker (the API died
  between commit and send, the broker lost it, the worker that took it died before claiming)
  gets a new message. Duplicates are harmless: the claim lets only one run.

Every change is a guarded UPDATE, so several workers may reconcile at the same time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update

from persistence.db import session_scope
from persistence.jobs import Task, recover_stale, stale_cutoff
from persistence.settings import Settings, get_settings
from persistence.tables import Job, Reconstruction, utcnow
from persistence.workers import remove_worker
from worker import queue

log = logging.getLogger(__name__)

Sender = Callable[[type[Task], str], bool]


@dataclass
class ReconcileReport:
    """What one pass did (ids per outcome), for logs and tests."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.cancelled or self.resent)


def _send(cls: type[Task], task_id: str) -> bool:
    if cls is Job:
        return queue.enqueue_job(task_id)
    return queue.enqueue_reconstruction(task_id)


def reconcile_once(
    settings: Settings | None = None,
    *,
    send: Sender = _send,
    pending: Callable[[], set[str]] | None = None,
) -> ReconcileReport:
    """One pass over jobs and reconstructions; see the module docstring."""
    settings = settings or get_settings()
    report = ReconcileReport()
    to_send: list[tuple[type[Task], str]] = []

    cutoff = stale_cutoff(settings.stale_after_s)
    for cls in (Job, Reconstruction):
        with session_scope() as s:
            stale = s.execute(
                select(cls.id, cls.worker).where(
                    cls.state == "running",
                    or_(cls.heartbeat_at.is_(None), cls.heartbeat_at < cutoff),
                )
            ).all()
        for task_id, worker in stale:
            with session_scope() as s:
                new_state = recover_stale(s, cls, task_id, worker, cutoff, settings.max_attempts)
            if new_state == "queued":
                report.requeued.append(task_id)
                to_send.append((cls, task_id))
            elif new_state == "failed":
                report.failed.append(task_id)
            elif new_state == "cancelled":
                report.cancelled.append(task_id)
            if new_state:
                log.warning("%s %s: worker lost -> %s", cls.__name__, task_id, new_state)

    old = utcnow() - timedelta(seconds=settings.requeue_after_s)
    waiting: list[tuple[type[Task], str]] = []
    for cls in (Job, Reconstruction):
        with session_scope() as s:
            ids = s.scalars(
                select(cls.id).where(
                    cls.state == "queued", or_(cls.enqueued_at.is_(None), cls.enqueued_at < old)
                )
            ).all()
        waiting += [(cls, i) for i in ids]
    if waiting:
        in_broker = _pending(settings, pending)
        for cls, task_id in waiting:
            if task_id in in_broker:
                continue
            with session_scope() as s:
                # Guarded: only if still queued and not re-sent by another reconciler meanwhile.
                res = s.execute(
                    update(cls)
                    .where(
                        cls.id == task_id,
                        cls.state == "queued",
                        or_(cls.enqueued_at.is_(None), cls.enqueued_at < old),
                    )
                    .values(enqueued_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            if res.rowcount == 1:
                report.resent.append(task_id)
                to_send.append((cls, task_id))

    for cls, task_id in to_send:
        send(cls, task_id)
    if report:
        log.info("reconciler: %s", report)
    return report


def release_dead_worker(
    host: str, pid: int, settings: Settings | None = None, *, send: Sender = _send
) -> ReconcileReport:
    """Recover at once the rows of a worker process known to be dead (its parent saw it exit).

    Worker names are ``host:pid:token`` (see ``persistence.jobs.worker_name``), so the rows
    of one dead process are found without waiting for their heartbeats to go stale.
    """
    settings = settings or get_settings()
    with session_scope() as s:
        remove_worker(s, f"{host}:{pid}")  # its registry row, so it no longer counts as live
    report = ReconcileReport()
    future = utcnow() + timedelta(days=1)  # the heartbeat guard must not hold us back
    for cls in (Job, Reconstruction):
        with session_scope() as s:
            rows = s.execute(
                select(cls.id, cls.worker).where(
                    cls.state == "running", cls.worker.startswith(f"{host}:{pid}:")
                )
            ).all()
        for task_id, worker in rows:
            with session_scope() as s:
                new_state = recover_stale(s, cls, task_id, worker, future, settings.max_attempts)
            if new_state == "queued":
                report.requeued.append(task_id)
                send(cls, task_id)
            elif new_state == "failed":
                report.failed.append(task_id)
            elif new_state == "cancelled":
                report.cancelled.append(task_id)
    if report:
        log.warning("worker %s:%s died: %s", host, pid, report)
    return report


def _pending(settings: Settings, pending: Callable[[], set[str]] | None) -> set[str]:
    try:
        return pending() if pending is not None else queue.pending_ids(settings)
    except Exception as exc:  # cannot see the broker: re-send (duplicates are harmless)
        log.warning("cannot inspect the broker queue: %s", exc)
        return set()


class Reconciler:
    """Runs ``reconcile_once`` now and then every ``interval`` s in a daemon thread."""

    def __init__(self, settings: Settings | None = None, interval: float | None = None) -> None:
        self.settings = settings or get_settings()
        self.interval = interval or self.settings.reconcile_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="saft-reconciler", daemon=True)

    def start(self) -> Reconciler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            try:
                reconcile_once(self.settings)
            except Exception:
                log.exception("reconciler pass failed")
            if self._stop.wait(self.interval):
                return
