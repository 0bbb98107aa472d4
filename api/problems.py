"""RFC 9457 problem details: every error leaves the API as ``application/problem+json``.

Handlers raise ``Problem`` (or a ``SaftError``, a pydantic validation error, an HTTP error);
the exception handlers registered by ``install`` turn each into one JSON document with a
clear ``detail`` and, for validation errors, ``errors: [{field, message}]``. Unexpected
exceptions are logged with their traceback and answered with a generic 500: a traceback
never reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from saft_core.errors import SaftError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:saft:problem:"


class FieldError(BaseModel):
    """One offending request field (dotted path, e.g. ``params.lr``) and what is wrong."""

    field: str
    message: str


class ProblemDetail(BaseModel):
    """The RFC 9457 body, as documented in the OpenAPI schema."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    """An HTTP error with a problem+json body; raise it from handlers and dependencies."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: Sequence[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.errors = [FieldError(field=f, message=m) for f, m in errors or ()]
        self.headers = headers or {}


def not_found(what: str, ident: str) -> Problem:
    """404 that does not reveal whether the id exists for someone else."""
    return Problem(404, f"{what} {ident} not found", slug="not-found")


def invalid(field: str, message: str, *, status: int = 422) -> Problem:
    """A 422 naming one request field."""
    return Problem(status, message, slug="validation-error", errors=[(field, message)])


def problem_response(
    request: Request | None,
    status: int,
    detail: str | None,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: Iterable[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"{TYPE_PREFIX}{slug}" if slug else "about:blank",
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    errs = [e.model_dump() for e in errors or ()]
    if errs:
        body["errors"] = errs
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ---- exception handlers -----------------------------------------------------------------


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        request,
        exc.status,
        exc.detail,
        slug=exc.slug,
        title=exc.title,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _on_saft_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SaftError)
    errors = [FieldError(field=exc.field, message=exc.message)] if exc.field else None
    return problem_response(
        request,
        422,
        exc.message,
        slug=_slug(type(exc).__name__),
        errors=errors,
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(err) for err in exc.errors()]
    parts = [f"{e.field}: {e.message}" for e in errors]
    detail = parts[0] if len(parts) == 1 else f"{len(parts)} invalid fields: " + "; ".join(parts)
    return problem_response(request, 422, detail, slug="validation-error", errors=errors)


def _field_error(err: dict[str, Any]) -> FieldError:
    """One pydantic error as ``{field, message}``, with JSON syntax errors made readable."""
    loc = err.get("loc", ())
    if err.get("type") == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", "")
        pos = loc[-1] if loc and isinstance(loc[-1], int) else None
        where = f" at character {pos}" if pos is not None else ""
        return FieldError(field="body", message=f"invalid JSON{where}: {reason}".rstrip(": "))
    if err.get("type") == "missing" and tuple(loc) == ("body",):
        return FieldError(field="body", message="a JSON request body is required")
    return FieldError(field=field_of(loc), message=_message(err))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.url.path}"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return problem_response(
        request, exc.status_code, detail, headers=dict(exc.headers or {}) or None
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        500,
        "internal server error; the details are in the server log",
        slug="internal-error",
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(SaftError, _on_saft_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


# ---- helpers ----------------------------------------------------------------------------


def field_of(loc: Sequence[Any]) -> str:
    """``("body", "params", "lr")`` -> ``params.lr``; ``("query", "limit")`` -> ``limit``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    # pydantic prefixes messages of custom validators; the field name says enough.
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _slug(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("-")
        out.append(ch.lower())
    return "".join(out).removesuffix("-error") + "-error" if name else "error"


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json answers."""
    return {
        s: {
            "model": ProblemDetail,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
            "description": _phrase(s),
        }
        for s in statuses
    }
