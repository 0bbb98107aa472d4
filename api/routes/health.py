"""Liveness and readiness probes (no authentication: load balancers call them), and the
service's vocabulary (states, event kinds, record fields), public as it holds no data."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from api.deps import SettingsDep
from api.problems import problem_response, problem_responses
from api.schemas import Health, Ready, Vocabulary, vocabulary
from persistence.db import get_engine
from persistence.settings import Settings

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    """No I/O: a slow database must not get a live API process restarted."""
    return Health(status="ok")


@router.get(
    "/v1/vocabulary",
    response_model=Vocabulary,
    tags=["meta"],
    summary="Job states, event kinds and the per-iteration record's fields",
)
async def get_vocabulary() -> Vocabulary:
    """Constant for a given server version; no authentication (it holds no data). The
    dashboard reads its state sets and record columns from here instead of copying them."""
    return vocabulary()


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Database and broker reachable",
    responses=problem_responses(503),
)
async def readyz(request: Request, settings: SettingsDep):
    """503 problem naming what is unreachable; a load balancer stops routing here."""
    db_err, broker_err = await run_in_threadpool(_probe, settings)
    if db_err or broker_err:
        failed = [
            f"database {db_err}" if db_err else "",
            f"broker {broker_err}" if broker_err else "",
        ]
        return problem_response(
            request,
            503,
            "; ".join(f for f in failed if f),
            slug="not-ready",
            headers={"Retry-After": "5"},
        )
    return Ready(status="ready", database="ok", broker="ok")


def _probe(settings: Settings) -> tuple[str | None, str | None]:
    db_err = broker_err = None
    try:
        with get_engine(settings.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        db_err = f"unreachable ({type(exc).__name__})"
    try:
        from worker.queue import broker_url, redis_client

        r = redis_client(broker_url(settings))
        try:
            r.ping()
        finally:
            r.close()
    except Exception as exc:
        broker_err = f"unreachable ({type(exc).__name__})"
    return db_err, broker_err
