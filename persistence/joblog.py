"""Per-job log file: JSON lines of the ``saft_core`` and ``worker`` loggers while a job runs.

``with job_log(job_id, storage.job_dir(job_id) / JOB_LOG): ...`` attaches a handler that
writes the records of the thread running the job (plus other threads' records naming the
job, e.g. the heartbeat's) and removes it on exit. ``GET /v1/jobs/{id}/log`` serves the file
through ``read_job_log``. It lives in persistence because both the worker (writer) and the API
(reader) need its name and format, and the API must not import the worker.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

JOB_LOG = "job.log"
LOGGERS = ("saft_core", "worker")


def job_log_path(job_dir: Path) -> Path:
    """Where a job's log lives inside its job directory."""
    return job_dir / JOB_LOG


def read_job_log(job_dir: Path) -> str:
    """The job's log so far (JSON lines), or "" before the job started."""
    path = job_log_path(job_dir)
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC), level, logger, job_id, message.

    The file is served to the job's owner, so an exception appears by its type only; the full
    traceback stays in the worker's own log.
    """

    def __init__(self, job_id: str | None = None) -> None:
        super().__init__()
        self.job_id = job_id

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            message = f"{message} ({record.exc_info[0].__name__})"
        return json.dumps(
            {
                "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": record.levelname,
                "logger": record.name,
                "job_id": getattr(record, "job_id", self.job_id),
                "message": message,
            },
            ensure_ascii=False,
        )


class _JobFilter(logging.Filter):
    """Records of the job's thread, or from other threads (heartbeat) naming the job."""

    def __init__(self, job_id: str, thread_id: int) -> None:
        super().__init__()
        self.job_id, self.thread_id = job_id, thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread_id or self.job_id in record.getMessage()


@contextmanager
def job_log(job_id: str, path: Path, level: int = logging.INFO) -> Iterator[logging.Handler]:
    """Append the job's log records to ``path`` as JSON lines for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter(job_id))
    handler.addFilter(_JobFilter(job_id, threading.get_ident()))
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() > level:
            lg.setLevel(level)
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, old in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(old)
        handler.close()
