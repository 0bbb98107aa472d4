"""GET /v1/jobs/{id}/events: SSE from job_events, resumable, ends after the final state."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.service.api_fixtures import (
    Api,
    ApiUser,
    add_dataset,
    error_fields,
    problem,
    stack,
)


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events (dicts with id, event, data) and comments (``{"comment": ...}``)."""
    out: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        ev: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append({"comment": line[1:].strip()})
            elif line:
                key, _, value = line.partition(": ")
                ev[key] = json.loads(value) if key == "data" else value
        if ev:
            out.append(ev)
    return out


def events_only(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in items if "id" in e]


def new_job(api: Api, user: ApiUser) -> str:
    lr = add_dataset(api, user, stack())
    resp = api.client.post("/v1/jobs", headers=user.headers, json={"lr_dataset": lr})
    assert resp.status_code == 202
    return resp.json()["id"]


def run_job(
    job: str, *, progress_steps: int = 2, final: str = "succeeded", loss: float = 0.5
) -> None:
    """Play the worker's part through persistence: claim, progress, iteration, finish."""
    from persistence.db import session_scope
    from persistence.jobs import add_event, claim_job, finish_job

    with session_scope() as s:
        assert claim_job(s, job, "w")
    for i in range(progress_steps):
        with session_scope() as s:
            add_event(s, job, "progress", {"progress": (i + 1) / (progress_steps + 1)})
    with session_scope() as s:
        add_event(s, job, "iteration", {"iteration": 1, "losses": {"total": loss}})
    with session_scope() as s:
        assert finish_job(s, job, final, worker="w", recommended_iteration=1)


def test_stream_of_a_finished_job_ends_after_the_final_state(any_api: Api) -> None:
    user = any_api.user()
    job = new_job(any_api, user)
    # SQLite stores NaN in JSON (PostgreSQL refuses it); the stream must still be valid JSON.
    nan = any_api.env.settings.is_sqlite
    run_job(job, loss=float("nan") if nan else 0.5)
    resp = any_api.client.get(f"/v1/jobs/{job}/events", headers=user.headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.text.startswith("retry: ")
    evs = events_only(parse_sse(resp.text))
    kinds = [e["event"] for e in evs]
    assert kinds == ["state", "state", "progress", "progress", "iteration", "state"]
    assert [e["data"].get("state") for e in evs if e["event"] == "state"] == [
        "queued",
        "running",
        "succeeded",
    ]
    ids = [int(e["id"]) for e in evs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert evs[-1]["data"]["recommended_iteration"] == 1
    assert evs[4]["data"]["losses"] == {"total": None if nan else 0.5}  # NaN is not JSON
    assert all("at" in e["data"] for e in evs)


def test_resume_with_last_event_id(any_api: Api) -> None:
    user = any_api.user()
    job = new_job(any_api, user)
    run_job(job, final="failed")
    c = any_api.client
    all_evs = events_only(parse_sse(c.get(f"/v1/jobs/{job}/events", headers=user.headers).text))
    cut = all_evs[2]["id"]
    resumed = c.get(f"/v1/jobs/{job}/events", headers={**user.headers, "Last-Event-ID": cut})
    assert events_only(parse_sse(resumed.text)) == all_evs[3:]
    by_query = c.get(f"/v1/jobs/{job}/events?after={cut}", headers=user.headers)
    assert events_only(parse_sse(by_query.text)) == all_evs[3:]
    # After the last event of a finished job: nothing more, the stream ends at once.
    t0 = time.monotonic()
    done = c.get(
        f"/v1/jobs/{job}/events", headers={**user.headers, "Last-Event-ID": all_evs[-1]["id"]}
    )
    assert events_only(parse_sse(done.text)) == [] and time.monotonic() - t0 < 5
    body = problem(
        c.get(f"/v1/jobs/{job}/events", headers={**user.headers, "Last-Event-ID": "abc"}), 422
    )
    assert error_fields(body) == ["Last-Event-ID"]


def test_live_stream_follows_the_worker_and_sends_heartbeats(api: Api) -> None:
    user = api.user()
    job = new_job(api, user)

    def worker() -> None:
        time.sleep(0.8)  # idle longer than the heartbeat interval (0.3 s in tests)
        run_job(job, final="cancelled", progress_steps=1)

    t = threading.Thread(target=worker)
    t.start()
    t0 = time.monotonic()
    resp = api.client.get(f"/v1/jobs/{job}/events", headers=user.headers)
    t.join()
    items = parse_sse(resp.text)
    assert {"comment": "keep-alive"} in items
    evs = events_only(items)
    assert [e["data"].get("state") for e in evs if e["event"] == "state"] == [
        "queued",
        "running",
        "cancelled",
    ]
    assert time.monotonic() - t0 < 20


def test_cancel_of_a_queued_job_ends_its_stream(api: Api) -> None:
    user = api.user()
    job = new_job(api, user)
    api.client.post(f"/v1/jobs/{job}/cancel", headers=user.headers)
    evs = events_only(
        parse_sse(api.client.get(f"/v1/jobs/{job}/events", headers=user.headers).text)
    )
    assert [e["data"]["state"] for e in evs] == ["queued", "cancelled"]
