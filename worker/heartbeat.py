"""Background heartbeat of a running job, and the detector of a lost claim."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from persistence.db import session_scope
from persistence.jobs import Task, heartbeat

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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=max(self.interval, 5.0))
