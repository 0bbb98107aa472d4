"""Celery tasks (thin: the runner does the work) and the worker's start-up hooks."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

from worker.celery_app import TASK_RUN_JOB, TASK_RUN_RECONSTRUCTION, app

log = logging.getLogger(__name__)
_reconciler: Any = None
_presence: Any = None


@app.task(name=TASK_RUN_JOB, ignore_result=True)
def run_job(job_id: str) -> str:
    from worker.runner import run_job as run

    return run(job_id)


@app.task(name=TASK_RUN_RECONSTRUCTION, ignore_result=True)
def run_reconstruction(recon_id: str) -> str:
    from worker.runner import run_reconstruction as run

    return run(recon_id)


@worker_init.connect
def _migrate(**_: Any) -> None:
    """A worker brings the schema up to date before taking work (idempotent, locked on PG)."""
    from persistence.migrate import upgrade

    upgrade()


@worker_ready.connect
def _register_worker(sender: Any = None, **_: Any) -> None:
    """Record this worker's device and capabilities where the API and `saft doctor` read them."""
    global _presence
    from persistence.settings import get_settings
    from worker.heartbeat import WorkerPresence

    settings = get_settings()
    queues = _consumed_queues(sender) or [settings.queue]
    try:
        _presence = WorkerPresence(settings, ",".join(queues)).start()
    except Exception:  # never keep a worker from working because the registry failed
        log.exception("could not register the worker")


def _consumed_queues(consumer: Any) -> list[str]:
    try:
        return sorted(consumer.app.amqp.queues.consume_from)
    except Exception:
        return []


@worker_ready.connect
def _start_reconciler(**_: Any) -> None:
    """Repair crashed work at start-up and then periodically (safe with several workers)."""
    global _reconciler
    from worker.reconciler import Reconciler

    _reconciler = Reconciler().start()


@worker_shutdown.connect
def _stop_reconciler(**_: Any) -> None:
    if _reconciler is not None:
        _reconciler.stop()
    if _presence is not None:
        _presence.stop()
