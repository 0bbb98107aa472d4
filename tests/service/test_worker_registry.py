"""The workers registry: a real worker reports its device and parts; the API refuses early
only when live workers lack a needed part; GET /v1/info is for admins."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from persistence.db import session_scope
from persistence.tables import WorkerRecord, utcnow
from persistence.workers import register_worker
from tests.service.api_fixtures import (
    Api,
    add_dataset,
    error_fields,
    problem,
    stack,
)

ALL_PARTS = ("edges", "metrics", "video", "device")


def caps(**missing: str) -> dict[str, Any]:
    """A capabilities dict where the named parts are unavailable with the given reason."""
    return {
        name: {"available": name not in missing, "reason": missing.get(name), "detail": None}
        for name in ALL_PARTS
    }


def add_worker(worker_id: str, *, seen_ago_s: float = 0.0, **missing: str) -> None:
    with session_scope() as s:
        row = register_worker(
            s,
            worker_id,
            hostname=worker_id.split(":")[0],
            pid=int(worker_id.split(":")[1]),
            queue="gpu",
            device="cuda:0 (NVIDIA H200)",
            capabilities=caps(**missing),
            environment={
                "build": {
                    "torch": "2.5.1",
                    "cuda": "12.4",
                    "cudnn": 90100,
                    "gpus": [
                        {
                            "index": 0,
                            "name": "NVIDIA H200",
                            "memory_mib": 143771,
                            "capability": "9.0",
                        }
                    ],
                }
            },
        )
        row.seen_at = utcnow() - timedelta(seconds=seen_ago_s)


def submit(api: Api, user: Any, lr: str, **extra: Any) -> Any:
    body = {"lr_dataset": lr, "params": {"iterations": 2, "sigma": 1.1, **extra}}
    return api.client.post("/v1/jobs", headers=user.headers, json=body)


NO_NANOPYX = "nanopyx cannot be imported (ModuleNotFoundError: No module named 'nanopyx')"


def test_jobs_need_no_optional_part(api: Api) -> None:
    """Edge maps and sigma 'auto' are numpy: a worker without nanopyx still takes any job."""
    user = api.user()
    lr = add_dataset(api, user, stack())
    add_worker("gpu1:11", metrics=NO_NANOPYX)
    assert submit(api, user, lr).status_code == 202
    assert submit(api, user, lr, sigma="auto").status_code == 202


def test_reconstruction_video_refused_when_no_live_worker_has_ffmpeg(api: Api) -> None:
    from persistence.jobs import create_job
    from persistence.tables import User

    user = api.user()
    lr = add_dataset(api, user, stack())
    with session_scope() as s:
        job = create_job(s, s.get_one(User, user.id), lr_dataset_id=lr, params={"iterations": 1})
        job_id = job.id
    url = f"/v1/jobs/{job_id}/reconstructions"

    def post(video: bool) -> Any:
        return api.client.post(url, headers=user.headers, json={"iteration": 0, "video": video})

    # No live worker: not refused for the video (the iteration is what is missing here).
    assert error_fields(problem(post(True), 422)) == ["iteration"]
    add_worker("gpu1:21", video="no ffmpeg for MP4 output (RuntimeError: No ffmpeg exe)")
    body = problem(post(True), 422)
    assert error_fields(body) == ["video"]
    assert "No ffmpeg exe" in body["detail"] and "video: false" in body["detail"]
    assert error_fields(problem(post(False), 422)) == ["iteration"]


def test_stale_workers_do_not_count(api: Api) -> None:
    from persistence.jobs import create_job
    from persistence.tables import User

    user = api.user()
    lr = add_dataset(api, user, stack())
    with session_scope() as s:
        job_id = create_job(s, s.get_one(User, user.id), lr_dataset_id=lr, params={}).id
    url = f"/v1/jobs/{job_id}/reconstructions"
    body = {"iteration": 0, "video": True}
    stale = api.env.settings.stale_after_s + 5
    add_worker("old:13", seen_ago_s=stale, video="ffmpeg missing")
    assert error_fields(problem(api.client.post(url, headers=user.headers, json=body), 422)) == [
        "iteration"
    ]  # the stale worker is not asked: only the missing iteration is refused
    add_worker("new:14", video="ffmpeg missing")
    resp = api.client.post(url, headers=user.headers, json=body)
    assert error_fields(problem(resp, 422)) == ["video"]


def test_info_is_for_admins_and_lists_workers(api: Api) -> None:
    from persistence.auth import create_user

    with session_scope() as s:
        _, admin_key = create_user(s, "boss", is_admin=True)
    user = api.user()
    resp = api.client.get("/v1/info", headers=user.headers)
    body = problem(resp, 403)
    assert "admin" in body["detail"]
    assert api.client.get("/v1/info").status_code == 401

    add_worker("gpu1:31", video="ffmpeg missing")
    add_worker("gone:32", seen_ago_s=3600)
    resp = api.client.get("/v1/info", headers={"Authorization": f"Bearer {admin_key}"})
    assert resp.status_code == 200, resp.text
    info = resp.json()
    assert info["database"]["error"] is None and info["broker"]["error"] is None
    assert info["data_dir"] == {"path": str(api.env.data_dir), "error": None}
    assert info["packages"]["fastapi"] and info["packages"]["sqlalchemy"]
    by_id = {w["id"]: w for w in info["workers"]}
    assert by_id["gpu1:31"]["alive"] and not by_id["gone:32"]["alive"]
    assert by_id["gpu1:31"]["unavailable"] == {"video": "ffmpeg missing"}
    assert info["parts"]["video"] == [] and info["parts"]["edges"] == ["gpu1:31"]
    assert info["gpus"] == [
        {
            "worker": "gpu1:31",
            "index": 0,
            "name": "NVIDIA H200",
            "memory_mib": 143771,
            "capability": "9.0",
        }
    ]


def test_a_real_worker_registers_its_device_and_parts(saft_env: Any, start_worker: Any) -> None:
    from sqlalchemy import select

    w = start_worker(saft_env).wait_ready()
    deadline = time.monotonic() + 60
    rows: list[WorkerRecord] = []
    while time.monotonic() < deadline and not rows:
        with session_scope() as s:
            rows = list(s.scalars(select(WorkerRecord)))
        time.sleep(0.2)
    assert len(rows) == 1, w.log()
    row = rows[0]
    assert row.id == f"{row.hostname}:{w.proc.pid}"
    assert row.queue == saft_env.settings.queue
    assert row.device.startswith("cpu")
    assert {n: c["available"] for n, c in row.capabilities.items()} == dict.fromkeys(
        ALL_PARTS, True
    )
    assert row.environment["build"]["torch"] and "packages" in row.environment
    first_seen = row.seen_at
    time.sleep(3 * float(saft_env.settings.heartbeat_s))
    with session_scope() as s:
        assert s.get_one(WorkerRecord, row.id).seen_at > first_seen  # kept fresh
    w.stop()
    with session_scope() as s:
        assert s.get(WorkerRecord, row.id) is None  # a clean shutdown leaves no row


def test_dead_and_long_gone_workers_leave_the_registry(api: Api) -> None:
    from persistence.workers import all_workers, prune_workers
    from worker.reconciler import release_dead_worker

    add_worker("host:41")
    add_worker("host:42")
    add_worker("host:43", seen_ago_s=8 * 24 * 3600)
    release_dead_worker("host", 41, api.env.settings)  # its parent saw it exit
    with session_scope() as s:
        assert prune_workers(s, 7 * 24 * 3600) == 1
    with session_scope() as s:
        assert [w.id for w in all_workers(s)] == ["host:42"]
