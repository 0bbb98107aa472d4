"""Job and reconstruction states and job event kinds, declared once for every layer.

The tables' CHECK constraints, the API's schemas, the client, the CLI and (through
``GET /v1/vocabulary``) the dashboard all read these. Standard library only: the light client
package imports this module.
"""

from __future__ import annotations

from typing import Literal, get_args

# queued -> running -> succeeded | failed | cancelled; queued -> cancelled; running -> queued
# when the reconciler requeues a dead worker's task (persistence/jobs.py guards each change).
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[str, ...] = get_args(JobState)  # in lifecycle order

ACTIVE_STATES: frozenset[str] = frozenset({"queued", "running"})
FINAL_STATES: frozenset[str] = frozenset(JOB_STATES) - ACTIVE_STATES
# A cancel request can no longer change these (a cancelled task stays cancelled: idempotent).
DONE_STATES: frozenset[str] = frozenset({"succeeded", "failed"})

# The kinds of events in a job's event log (the SSE stream of /v1/jobs/{id}/events).
EventKind = Literal["state", "progress", "iteration", "log"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)


def is_final(state: str | None) -> bool:
    """True once a job or reconstruction can no longer change state."""
    return state in FINAL_STATES
