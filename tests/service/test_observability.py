"""GET /metrics (from the database), the per-job JSON-lines log and GET /v1/jobs/{id}/log."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.service.api_fixtures import (
    Api,
    ApiUser,
    stack,
    tiff_bytes,
    upload_dataset,
)


def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = api.client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(resp.text)
        for s in fam.samples
    }


def submit(api: Api, user: ApiUser, lr: str) -> str:
    resp = api.client.post("/v1/jobs", headers=user.headers, json={"lr_dataset": lr})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def add_iterations(job_id: str, seconds: list[float]) -> None:
    from persistence.db import session_scope
    from persistence.tables import Iteration

    with session_scope() as s:
        for k, sec in enumerate(seconds):
            s.add(
                Iteration(
                    job_id=job_id,
                    iteration=k,
                    losses={},
                    seconds=sec,
                    checkpoint_path=f"jobs/{job_id}/c{k}",
                    preview_png_path=f"jobs/{job_id}/p{k}.png",
                    preview_tif_path=f"jobs/{job_id}/p{k}.tif",
                )
            )


def test_metrics_count_jobs_uploads_and_iterations_from_the_database(api: Api) -> None:
    empty = scrape(api)
    for state in ("queued", "running", "succeeded", "failed", "cancelled"):
        assert empty[("saft_jobs", (("state", state),))] == 0
    assert empty[("saft_upload_bytes_total", ())] == 0
    assert empty[("saft_iteration_seconds_count", ())] == 0
    assert empty[("saft_broker_up", ())] == 1

    user = api.user()
    uploaded = 0
    lrs = []
    for seed in (0, 1):
        resp = upload_dataset(api, user, tiff_bytes(stack(seed=seed)))
        assert resp.status_code == 201, resp.text
        uploaded += resp.json()["bytes"]
        lrs.append(resp.json()["id"])
    jobs = [submit(api, user, lrs[0]) for _ in range(3)]
    cancelled = api.client.post(f"/v1/jobs/{jobs[2]}/cancel", headers=user.headers)
    assert cancelled.status_code == 200, cancelled.text
    add_iterations(jobs[0], [0.5, 3.0, 100.0, 5000.0])
    add_iterations(jobs[1], [10.0])

    m = scrape(api)
    assert m[("saft_jobs", (("state", "queued"),))] == 2
    assert m[("saft_jobs", (("state", "cancelled"),))] == 1
    assert m[("saft_jobs", (("state", "running"),))] == 0
    assert uploaded > 0 and m[("saft_upload_bytes_total", ())] == uploaded
    assert m[("saft_iteration_seconds_count", ())] == 5
    assert m[("saft_iteration_seconds_sum", ())] == 5113.5
    bucket = {le: m[("saft_iteration_seconds_bucket", (("le", le),))] for le in ("1.0", "5.0")}
    assert bucket == {"1.0": 1, "5.0": 2}
    assert m[("saft_iteration_seconds_bucket", (("le", "300.0"),))] == 4
    assert m[("saft_iteration_seconds_bucket", (("le", "+Inf"),))] == 5
    assert m[("saft_queue_depth", ())] >= 2  # the queued jobs' messages (the cancelled one too)


def test_heartbeat_age_and_broker_down(api: Api) -> None:
    from api.routes.metrics import ServiceCollector
    from persistence.db import session_scope
    from persistence.tables import Job, utcnow

    user = api.user()
    resp = upload_dataset(api, user, tiff_bytes(stack()))
    job_id = submit(api, user, resp.json()["id"])
    with session_scope() as s:
        job = s.get_one(Job, job_id)
        job.state, job.worker = "running", "w1@host"
        job.heartbeat_at = utcnow() - timedelta(seconds=30)
    m = scrape(api)
    age = m[("saft_worker_heartbeat_age_seconds", (("worker", "w1@host"),))]
    assert 30 <= age < 120
    assert m[("saft_jobs", (("state", "running"),))] == 1

    down = api.env.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    names = {fam.name: fam for fam in ServiceCollector(down).collect()}
    assert names["saft_broker_up"].samples[0].value == 0
    assert "saft_queue_depth" not in names
    assert "saft_jobs" in names


def test_metrics_is_not_in_openapi(api: Api) -> None:
    assert "/metrics" not in api.client.get("/openapi.json").json()["paths"]


def test_job_log_writes_json_lines_with_job_id_and_detaches(tmp_path: Path) -> None:
    from persistence.joblog import job_log

    path = tmp_path / "jobs" / "j1" / "job.log"
    core, wk = logging.getLogger("saft_core.finetune"), logging.getLogger("worker.runner")
    with job_log("j1", path) as handler:
        core.info("iteration %d done", 3)
        wk.warning("hello")
        logging.getLogger("unrelated").warning("not in the job log")
        assert handler in logging.getLogger("saft_core").handlers
    core.info("after the job")
    assert handler not in logging.getLogger("saft_core").handlers
    assert handler not in logging.getLogger("worker").handlers

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["message"] for r in lines] == ["iteration 3 done", "hello"]
    assert all(r["job_id"] == "j1" for r in lines)
    assert lines[0]["logger"] == "saft_core.finetune" and lines[0]["level"] == "INFO"
    assert lines[1]["level"] == "WARNING" and set(lines[1]) == {
        "time",
        "level",
        "logger",
        "job_id",
        "message",
    }


def test_get_job_log_owner_only(api: Api) -> None:
    from persistence.storage import Storage

    owner, other = api.user(), api.user()
    resp = upload_dataset(api, owner, tiff_bytes(stack()))
    job_id = submit(api, owner, resp.json()["id"])
    url = f"/v1/jobs/{job_id}/log"

    empty = api.client.get(url, headers=owner.headers)
    assert empty.status_code == 200 and empty.text == ""
    assert empty.headers["content-type"].startswith("text/plain")

    content = '{"message": "one"}\n{"message": "two"}\n'
    (Storage(api.data_dir).job_dir(job_id) / "job.log").write_text(content)
    got = api.client.get(url, headers=owner.headers)
    assert got.status_code == 200 and got.text == content

    foreign = api.client.get(url, headers=other.headers)
    assert foreign.status_code == 404
    assert foreign.headers["content-type"].startswith("application/problem+json")
    assert api.client.get("/v1/jobs/nope/log", headers=owner.headers).status_code == 404
