"""The Celery app: the same configuration for ``saft serve`` (embedded Redis) and facilities.

Run a worker with ``saft worker`` (or ``celery -A worker.celery_app worker --pool solo
--concurrency 1 -Q <SAFT_QUEUE>``). Choices, and why:

- A message carries only the job id; the database is the source of truth, and workers claim
  jobs with a guarded UPDATE, so a redelivered or duplicated message never runs a job twice.
- ``task_acks_late`` + ``worker_prefetch_multiplier=1``: a message is acknowledged only after
  its task returns and a worker holds at most the one it is running, so jobs wait in the
  broker (where any free worker can take them), not in a busy worker's buffer.
- ``task_reject_on_worker_lost``: if the process running a task dies, the message is
  requeued rather than acked. The attempts cap lives in the database (``jobs.attempts`` vs
  ``SAFT_MAX_ATTEMPTS``), where the reconciler enforces it; a redelivered message for a job
  that is no longer queued is a no-op.
- Broker ``visibility_timeout`` = job time limit + 1 h: Redis re-delivers an unacked message
  after this long, so it must exceed the longest task or a live job's message would be handed
  to a second worker (harmless thanks to the claim, but wasteful).
- JSON only (no pickle): messages come from the API process and must not execute code.
- One queue (``SAFT_QUEUE``, default ``gpu``): every task needs the worker's compute device.
  Each worker runs one task at a time (``--concurrency 1``) on one device; a machine with N
  GPUs runs N workers with ``saft worker --device cuda:i`` or ``saft serve --gpus all``
  (each worker then sees only its GPU, through ``CUDA_VISIBLE_DEVICES``).
- ``--pool solo``: the task runs in the worker's main process, so CUDA is initialised in the
  process that uses it and never in a parent that forks children (CUDA does not survive
  fork). The solo pool does not enforce Celery time limits, so the runner enforces
  ``SAFT_JOB_TIME_LIMIT_S`` itself (checked between steps).
- No result backend: results live in the database.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from persistence.settings import Settings, get_settings

TASK_RUN_JOB = "saft.run_job"
TASK_RUN_RECONSTRUCTION = "saft.run_reconstruction"


def broker_url(settings: Settings) -> str:
    """The configured Redis, or the embedded one's unix socket under the data dir."""
    return settings.effective_broker_url


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": broker_url(settings),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": settings.job_time_limit_s + 3600},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "worker_pool": "solo",
        "task_default_queue": settings.queue,
        "task_routes": {"saft.*": {"queue": settings.queue}},
        "task_create_missing_queues": True,
        # Sending never blocks an API request for long: the reconciler re-sends later.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "enable_utc": True,
    }


def make_app(settings: Settings | None = None) -> Celery:
    """A configured app; tasks are registered when ``worker.tasks`` is imported."""
    app = Celery("saft", set_as_current=False)
    app.conf.update(celery_config(settings or get_settings()))
    app.conf.include = ["worker.tasks"]
    return app


app = make_app()
