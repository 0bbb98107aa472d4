"""Exceptions of the SAFT client: API problems (RFC 9457 bodies) and client-side failures.

Every error the client raises on purpose is a ``SaftClientError`` with a one-line message
and, where it makes sense, the offending ``field``, so the CLI can print it as one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx

PROBLEM_JSON = "application/problem+json"


class SaftClientError(Exception):
    """Base class of everything the client raises deliberately."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def summary(self) -> tuple[str | None, str]:
        """(field, message) for a one-line report, without naming the field twice.

        The API's details may already read ``field: message`` (or list several fields).
        """
        field, message = self.field, " ".join(self.message.split())
        if field and message.startswith(f"{field}: "):
            message = message[len(field) + 2 :]
        elif field and f"{field}: " in message:
            field = None  # a detail that names every offending field itself
        return field, message


class SaftConnectionError(SaftClientError):
    """The service could not be reached, or the connection broke mid-request."""


class SaftTimeoutError(SaftClientError):
    """A wait ran past the timeout the caller gave (the job itself goes on)."""


class SaftProtocolError(SaftClientError):
    """The service answered something this client does not understand."""


@dataclass(frozen=True)
class FieldError:
    """One offending request field (dotted path such as ``params.lr``) and what is wrong."""

    field: str
    message: str


class SaftAPIError(SaftClientError):
    """An error answer of the API, built from its problem+json body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: Sequence[FieldError] = (),
        type: str = "about:blank",
        instance: str | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.type = type
        self.instance = instance
        field = self.errors[0].field if self.errors else None
        super().__init__(detail or title, field=field)

    def __str__(self) -> str:
        field, message = self.summary()
        where = f" ({field})" if field else ""
        return f"{self.status} {self.title}{where}: {message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, detail={self.detail!r})"


class AuthenticationError(SaftAPIError):
    """401: missing or unknown API key."""


class PermissionDeniedError(SaftAPIError):
    """403: the key may not do this."""


class NotFoundError(SaftAPIError):
    """404: no such resource for this key (someone else's ids read as missing)."""


class ConflictError(SaftAPIError):
    """409: the resource is in the wrong state (finished job, Idempotency-Key reuse, in use)."""


class PayloadTooLargeError(SaftAPIError):
    """413: the upload exceeds the service's size limit."""


class RangeNotSatisfiableError(SaftAPIError):
    """416: the requested byte range starts past the end of the file."""


class ValidationError(SaftAPIError):
    """422: the request names an invalid field (see ``errors``)."""


class ServerError(SaftAPIError):
    """5xx: the service failed or is not ready; retrying later may help."""


_BY_STATUS: dict[int, type[SaftAPIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    416: RangeNotSatisfiableError,
    422: ValidationError,
}


def error_class(status: int) -> type[SaftAPIError]:
    """The most specific exception class for an HTTP status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, SaftAPIError)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def api_error(response: httpx.Response) -> SaftAPIError:
    """The exception for an error response; reads the body, so call it on a read response.

    Bodies that are not problem+json (a proxy's HTML page) still give a one-line message.
    """
    status = response.status_code
    body: Any = None
    try:
        body = json.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    cls = error_class(status)
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        errors = [
            FieldError(str(e.get("field", "")), str(e.get("message", "")))
            for e in body.get("errors") or ()
            if isinstance(e, dict)
        ]
        detail = body.get("detail")
        return cls(
            status,
            str(body.get("title") or _phrase(status)),
            str(detail) if detail is not None else None,
            errors,
            str(body.get("type") or "about:blank"),
            body.get("instance"),
        )
    text = " ".join(response.text.split())[:200] if response.content else ""
    return cls(status, _phrase(status), text or f"HTTP {status} from {response.request.url}")
