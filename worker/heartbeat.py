"""Background heartbeats: of a running job (and the detector of a lost claim), and of the
worker itself in the ``workers`` registry (its device and capabilities, while it lives)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from persistence.db import session_scope
from persistence.jobs import Task, heartbeat
from persistence.settings import Settings
from persistence.workers import prune_workers, register_worker, remove_worker, touch_worker

FORGET_WORKERS_AFTER_S = 7 * 24 * 3600  # a killed worker's row is listed as gone this long

log = logging.getLogger(__name__)


class Heartbeat:
    """Refresh ``heartbeat_at`` every ``interval`` s from a thread, even during long steps.

    ``lost`` is set when the row is no longer ours (the reconciler declared us dead and
    requeued the job); the runner then stops without writing anything.
    """

    def __init__(self, cls: type[Task], task_id: str, worker: str, interval: float) -> None:
        self.cls, self.task_id, self.worker, self.interval = cls, task_id, worker, interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{task_id[:8]}", daemon=True
        )

    def beat(self) -> bool:
        """One heartbeat now; returns False (and sets ``lost``) if the claim is gone."""
        with session_scope() as s:
            ok = heartbeat(s, self.cls, self.task_id, self.worker)
        if not ok:
            self.lost.set()
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.beat():
                    log.warning("%s %s: claim lost, stopping", self.cls.__name__, self.task_id)
                    return
            except Exception as exc:  # a DB hiccup is not a lost claim; try again
                log.warning("heartbeat of %s failed: %s", self.task_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=max(self.interval, 5.0))


class WorkerPresence:
    """Register this worker process (``host:pid``) and refresh its row every ``heartbeat_s``.

    The row carries what the API needs to refuse work early: the device runs will use and
    ``saft_core.capabilities`` (edges, metrics, video), probed once at start.
    """

    def __init__(self, settings: Settings, queue: str) -> None:
        self.settings, self.queue = settings, queue
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-presence", daemon=True)
        self.report: dict[str, Any] = {}

    def start(self) -> WorkerPresence:
        from saft_core import capabilities

        caps = capabilities.cached(self.settings.device)
        self.report = {
            "device": worker_device(caps.device.detail if caps.device.available else None),
            "capabilities": caps.to_dict(),
            "environment": {
                "build": capabilities.torch_build(),
                "packages": capabilities.package_versions(),
            },
        }
        for name in capabilities.NAMES:
            cap = getattr(caps, name)
            if not cap.available:
                log.warning("worker %s: %s unavailable: %s", self.worker_id, name, cap.reason)
        log.info("worker %s on queue %s uses %s", self.worker_id, self.queue, self.report["device"])
        self._register()
        self._thread.start()
        return self

    def _register(self) -> None:
        with session_scope() as s:
            prune_workers(s, FORGET_WORKERS_AFTER_S)
            register_worker(
                s,
                self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queue=self.queue,
                **self.report,
            )

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                with session_scope() as s:
                    present = touch_worker(s, self.worker_id)
                if not present:  # removed by hand or by a cleanup: come back
                    self._register()
            except Exception as exc:  # a DB hiccup: the row goes stale a while, no more
                log.warning("worker presence of %s failed: %s", self.worker_id, exc)

    def stop(self) -> None:
        """Stop refreshing and delete the row (a clean shutdown is not a stale worker)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        try:
            with session_scope() as s:
                remove_worker(s, self.worker_id)
        except Exception as exc:
            log.warning("could not remove worker %s from the registry: %s", self.worker_id, exc)


def worker_device(description: str | None) -> str | None:
    """The device description, with the GPU pin when ``CUDA_VISIBLE_DEVICES`` narrows it."""
    pin = os.environ.get("CUDA_VISIBLE_DEVICES")
    if description is None or pin is None or not description.startswith("cuda"):
        return description
    return f"{description}, CUDA_VISIBLE_DEVICES={pin}"
