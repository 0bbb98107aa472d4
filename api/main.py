"""The FastAPI application of the SAFT job service (HTTP only; never imports torch).

``uvicorn api.main:app`` (what ``saft serve`` runs) or ``create_app(settings)`` in tests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import problems
from api.routes import (
    artifacts,
    dashboard,
    datasets,
    health,
    info,
    jobs,
    metrics,
    models,
    params,
    reconstructions,
)
from api.sse import SSEConfig
from api.uploads import clean_stale_temp
from persistence.settings import Settings, get_settings
from persistence.storage import Storage

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DESCRIPTION = """\
Self-adaptive fine-tuning (SAFT) of super-resolution microscopy networks as a job service.

Authenticate every `/v1` request with `Authorization: Bearer <API key>`. Upload stacks to
`/v1/datasets`, submit a job to `/v1/jobs`, follow `/v1/jobs/{id}/events`, pick an iteration
from `/v1/jobs/{id}/iterations` and reconstruct the stack with it. Errors are RFC 9457
`application/problem+json` documents; validation errors name the offending fields.
"""


def create_app(settings: Settings | None = None, *, sse: SSEConfig | None = None) -> FastAPI:
    """A new app; ``settings=None`` follows the process settings (``SAFT_*``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        removed = clean_stale_temp(Storage(s.data_dir))
        if removed:
            log.info("removed %d stale upload temp files", removed)
        yield

    app = FastAPI(
        title="SAFT job service",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sse = sse or SSEConfig()
    problems.install(app)
    for module in (health, params, datasets, models, jobs, reconstructions, artifacts, info):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    app.include_router(metrics.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema with every error response documented as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("ProblemDetail", problems.ProblemDetail.model_json_schema())
    schemas.setdefault("FieldError", problems.FieldError.model_json_schema())
    if "$defs" in schemas["ProblemDetail"]:
        schemas["ProblemDetail"].pop("$defs")
        schemas["ProblemDetail"]["properties"]["errors"] = {
            "anyOf": [
                {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
                {"type": "null"},
            ]
        }
    ref = {"$ref": "#/components/schemas/ProblemDetail"}
    for path_item in schema.get("paths", {}).values():
        for op in path_item.values():
            for code, resp in op.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    resp["content"] = {problems.PROBLEM_JSON: {"schema": ref}}
                    if code == "422":
                        resp["description"] = "Validation error naming the fields"
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "API key from `saft users add NAME`",
    }
    for path, path_item in schema.get("paths", {}).items():
        if path.startswith("/v1/"):
            for op in path_item.values():
                op["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema


app = create_app()
