"""Bookkeeping of ``wait``: which events were seen, and events synthesised while polling.

Shared by the sync and async clients so a fallback from SSE to polling reports the same
kinds of events (state, progress, iteration) without repeating what the stream delivered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from saft_client.errors import SaftTimeoutError
from saft_client.models import Iteration, Job, JobEvent
from saft_core.record import METRIC_NAMES, event_data


class EventTracker:
    """What the caller's ``on_event`` has been told so far."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.progress: float | None = None
        self.iterations: set[int] = set()
        self.last_event_id: int | None = None
        self._fetched_for: tuple[int, str] | None = None

    def observe(self, ev: JobEvent) -> None:
        if ev.id is not None:
            self.last_event_id = ev.id
        if ev.kind == "state" and ev.state:
            self.state = ev.state
        elif ev.kind == "progress" and ev.progress is not None:
            self.progress = ev.progress
        elif ev.kind == "iteration" and ev.iteration is not None:
            self.iterations.add(ev.iteration)

    def wants_iterations(self, job: Job) -> bool:
        """True when the job may have iterations the caller has not been told about."""
        key = (job.iterations_done, job.state)
        if job.state == "queued" or key == self._fetched_for:
            return False
        return any(k not in self.iterations for k in range(job.iterations_done + 1))

    def synthesise(self, job: Job, iterations: Sequence[Iteration] | None) -> list[JobEvent]:
        """Events describing what changed since the last observation, in stream order."""
        if iterations is not None:
            self._fetched_for = (job.iterations_done, job.state)
        out: list[JobEvent] = []
        for it in iterations or ():
            if it.iteration not in self.iterations:
                metrics = {name: getattr(it, name) for name in METRIC_NAMES}
                data = event_data(it.iteration, it.losses, metrics)
                out.append(JobEvent(kind="iteration", data=data))
        if job.state == "running" and job.progress != self.progress:
            current = min(job.iterations_done + 1, max(job.iterations_total, 1))
            out.append(
                JobEvent(kind="progress", data={"progress": job.progress, "iteration": current})
            )
        if job.state != self.state:
            state: dict[str, object] = {"state": job.state}
            if job.recommended_iteration is not None:
                state["recommended_iteration"] = job.recommended_iteration
            if job.error:
                state["error"] = job.error
            out.append(JobEvent(kind="state", data=state))
        for ev in out:
            self.observe(ev)
        return out


class Deadline:
    """A monotonic deadline; ``None`` seconds means wait forever."""

    def __init__(self, seconds: float | None, what: str) -> None:
        self.at = None if seconds is None else time.monotonic() + max(seconds, 0.0)
        self.seconds = seconds
        self.what = what

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def check(self) -> None:
        if self.passed():
            raise SaftTimeoutError(f"{self.what} did not finish within {self.seconds:g} s")

    def sleep_for(self, seconds: float) -> float:
        """``seconds``, shortened so a sleep never runs past the deadline."""
        left = self.remaining()
        return seconds if left is None else max(0.0, min(seconds, left))
