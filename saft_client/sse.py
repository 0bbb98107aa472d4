"""A server-sent events decoder (WHATWG HTML "event stream interpretation"), I/O-free.

Fed line by line by the sync and the async client alike, so both parse identically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from saft_client.models import JobEvent, parse_time


@dataclass(frozen=True)
class RawEvent:
    """An event as sent: the client turns ``data`` into a ``JobEvent``."""

    event: str
    data: str
    id: str | None


class SSEDecoder:
    """Accumulates fields until a blank line dispatches the event."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> RawEvent | None:
        """One line without its terminator; returns the event a blank line completes."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment: a keep-alive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> RawEvent | None:
        if not self._data:
            self._event = ""
            return None
        ev = RawEvent(self._event or "message", "\n".join(self._data), self.last_event_id)
        self._event = ""
        self._data = []
        return ev


def to_job_event(raw: RawEvent) -> JobEvent:
    """The typed event; a payload that is not a JSON object is kept as ``{"message": text}``."""
    try:
        data = json.loads(raw.data)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {"message": raw.data}
    event_id = int(raw.id) if raw.id is not None and raw.id.isdigit() else None
    at = parse_time(data.pop("at", None))
    return JobEvent(kind=raw.event, data=data, id=event_id, at=at)
