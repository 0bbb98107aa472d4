"""``GET /metrics``: Prometheus text exposition, computed from the database at scrape time.

The database is the source of truth, so every API process answers the same whatever worker
processes exist; nothing is counted in process memory. No authentication (scrapers call it).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import case, func, select

from api.deps import SettingsDep, new_session
from persistence.settings import Settings
from persistence.tables import Dataset, Iteration, Job, utcnow
from saft_core.states import JOB_STATES

router = APIRouter(tags=["metrics"], include_in_schema=False)

ITERATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class ServiceCollector(Collector):
    """Reads the database (and the broker queue length) once per scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        with new_session(self.settings) as s:
            counts = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            row = s.execute(
                select(
                    func.count(Iteration.id),
                    func.coalesce(func.sum(Iteration.seconds), 0.0),
                    *(
                        func.coalesce(func.sum(case((Iteration.seconds <= b, 1), else_=0)), 0)
                        for b in ITERATION_BUCKETS
                    ),
                )
            ).one()
            upload_bytes = s.scalar(select(func.coalesce(func.sum(Dataset.bytes), 0)))
            beats = s.execute(
                select(Job.worker, Job.heartbeat_at).where(
                    Job.state == "running", Job.heartbeat_at.is_not(None)
                )
            ).all()

        jobs = GaugeMetricFamily("saft_jobs", "Jobs per state", labels=["state"])
        for state in JOB_STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs

        count, total, *cumulative = row
        buckets = [
            (floatToGoString(b), int(n)) for b, n in zip(ITERATION_BUCKETS, cumulative, strict=True)
        ]
        yield HistogramMetricFamily(
            "saft_iteration_seconds",
            "Duration of committed fine-tuning iterations",
            buckets=[*buckets, ("+Inf", int(count))],
            sum_value=float(total),
        )

        yield CounterMetricFamily(
            "saft_upload_bytes", "Bytes of uploaded datasets", value=int(upload_bytes or 0)
        )

        now = utcnow()
        ages: dict[str, float] = {}
        for worker, beat in beats:
            key = worker or ""
            ages[key] = max(ages.get(key, 0.0), (now - beat).total_seconds())
        age = GaugeMetricFamily(
            "saft_worker_heartbeat_age_seconds",
            "Seconds since the oldest heartbeat of a worker's running jobs",
            labels=["worker"],
        )
        for worker, value in sorted(ages.items()):
            age.add_metric([worker], value)
        yield age

        depth = _queue_depth(self.settings)
        yield GaugeMetricFamily(
            "saft_broker_up", "1 if the broker answered this scrape", value=int(depth is not None)
        )
        if depth is not None:
            yield GaugeMetricFamily(
                "saft_queue_depth", "Messages waiting in the broker queue", value=depth
            )


def _queue_depth(settings: Settings) -> int | None:
    """Messages waiting in the queue (all priority sub-queues); None if unreachable."""
    try:
        from worker.queue import PRIORITY_SEP, broker_url, redis_client

        r = redis_client(broker_url(settings))
        try:
            names = [settings.queue] + [f"{settings.queue}{PRIORITY_SEP}{p}" for p in range(1, 10)]
            return sum(int(r.llen(q)) for q in names)
        finally:
            r.close()
    except Exception:
        return None


@router.get("/metrics")
def metrics(settings: SettingsDep) -> Response:
    """Prometheus text format (sync: runs in the thread pool, off the event loop)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
