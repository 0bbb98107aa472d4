"""Reconciler: stale running work is requeued (attempts+1) or failed; lost messages re-sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from persistence import auth, jobs
from persistence.db import session_scope
from persistence.tables import Dataset, Iteration, Job, JobEvent, Reconstruction, User, utcnow
from worker.reconciler import reconcile_once, release_dead_worker


@pytest.fixture
def env(make_saft_env: Any, db_url: str) -> Any:
    # No broker needed: sending is captured, broker contents are given per test.
    return make_saft_env(database_url=db_url, stale_after_s=30, requeue_after_s=30)


class Sent(list):
    def __call__(self, cls: type, task_id: str) -> bool:
        self.append((cls.__name__, task_id))
        return True


def _job(state: str = "queued", **values: Any) -> str:
    with session_scope() as s:
        user, _ = auth.create_user(s, f"u{utcnow().timestamp():.6f}".replace(".", ""))
        ds = Dataset(
            owner_id=user.id,
            filename="a.tif",
            path="datasets/a.tif",
            shape=[1, 8, 8],
            dtype="float32",
            pixel_size=None,
            sha256="0" * 64,
            bytes=1,
        )
        s.add(ds)
        s.flush()
        job = jobs.create_job(s, user, lr_dataset_id=ds.id, params={})
        s.flush()
        if state == "running":
            assert jobs.claim_job(s, job.id, values.pop("worker", "dead-worker"))
        if values:
            s.execute(update(Job).where(Job.id == job.id).values(**values))
        return job.id


def _get(job_id: str) -> Job:
    with session_scope() as s:
        return s.get_one(Job, job_id)


def _ago(seconds: float):
    return utcnow() - timedelta(seconds=seconds)


def test_stale_running_job_is_requeued_then_failed_after_max_attempts(env: Any):
    job_id = _job("running", heartbeat_at=_ago(300))
    fresh_id = _job("running", worker="alive", heartbeat_at=_ago(1))
    sent = Sent()

    report = reconcile_once(send=sent, pending=set)
    job = _get(job_id)
    assert report.requeued == [job_id] and sent == [("Job", job_id)]
    assert (job.state, job.attempts, job.worker) == ("queued", 1, None)
    assert _get(fresh_id).state == "running"  # a live heartbeat is left alone

    # The old claim holder is locked out: its writes are refused.
    with session_scope() as s:
        assert not jobs.heartbeat(s, Job, job_id, "dead-worker")
        assert not jobs.finish_job(s, job_id, "succeeded", worker="dead-worker")

    # Two more lost runs: max_attempts=3 -> the third loss fails the job.
    for expected_state, expected_attempts in (("queued", 2), ("failed", 3)):
        with session_scope() as s:
            assert jobs.claim_job(s, job_id, "w")
            s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=_ago(300)))
        reconcile_once(send=sent, pending=set)
        job = _get(job_id)
        assert (job.state, job.attempts) == (expected_state, expected_attempts)
    assert "worker lost 3 times" in job.error
    assert job.finished_at is not None
    assert len(sent) == 2  # no message for the failed job
    with session_scope() as s:
        last = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc())
        ).first()
    assert last.data["state"] == "failed" and last.data["reason"] == "worker lost"


def test_missing_heartbeat_counts_as_stale_and_cancel_request_wins(env: Any):
    job_id = _job("running", heartbeat_at=None, cancel_requested=True)
    report = reconcile_once(send=Sent(), pending=set)
    assert report.cancelled == [job_id]
    assert _get(job_id).state == "cancelled"


def test_queued_without_message_is_resent_once(env: Any):
    lost = _job("queued", enqueued_at=_ago(120))
    in_broker = _job("queued", enqueued_at=_ago(120))
    recent = _job("queued")  # just created: its message is presumably on its way
    sent = Sent()

    report = reconcile_once(send=sent, pending=lambda: {in_broker})
    assert report.resent == [lost] and sent == [("Job", lost)]
    # enqueued_at was bumped: the next pass does not send it again
    assert reconcile_once(send=sent, pending=lambda: {in_broker}).resent == []
    assert sent == [("Job", lost)]
    assert {_get(i).state for i in (lost, in_broker, recent)} == {"queued"}


def test_broker_unreadable_means_resend(env: Any):
    lost = _job("queued", enqueued_at=_ago(120))

    def broken() -> set[str]:
        raise ConnectionError("broker down")

    sent = Sent()
    assert reconcile_once(send=sent, pending=broken).resent == [lost]


def test_stale_reconstruction_is_requeued(env: Any):
    job_id = _job("running")
    with session_scope() as s:
        job = s.get_one(Job, job_id)
        s.add(
            Iteration(
                job_id=job_id,
                iteration=0,
                losses={},
                seconds=0,
                checkpoint_path="c",
                preview_png_path="p",
                preview_tif_path="t",
            )
        )
        s.flush()
        owner = s.get_one(User, job.owner_id)
        rec = jobs.create_reconstruction(s, owner, job, 0, video=False)
        s.flush()
        assert jobs.claim_reconstruction(s, rec.id, "dead")
        s.execute(
            update(Reconstruction).where(Reconstruction.id == rec.id).values(heartbeat_at=_ago(300))
        )
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
        rec_id = rec.id
    sent = Sent()
    report = reconcile_once(send=sent, pending=set)
    assert report.requeued == [rec_id] and sent == [("Reconstruction", rec_id)]
    with session_scope() as s:
        r = s.get_one(Reconstruction, rec_id)
        assert (r.state, r.attempts) == ("queued", 1)


def test_dead_worker_released_at_once_by_pid(env: Any):
    dead = _job("running", worker="host-a:123:abcd", heartbeat_at=utcnow())
    alive = _job("running", worker="host-a:1234:abcd", heartbeat_at=utcnow())
    sent = Sent()
    report = release_dead_worker("host-a", 123, send=sent)
    assert report.requeued == [dead] and sent == [("Job", dead)]
    assert (_get(dead).state, _get(dead).attempts) == ("queued", 1)
    assert _get(alive).state == "running"


@pytest.mark.redis
def test_pending_ids_reads_real_redis(make_saft_env: Any, redis_url: str):
    import redis as redis_lib

    from worker import queue

    env = make_saft_env(broker_url=redis_url)
    r = redis_lib.Redis.from_url(redis_url)
    r.delete(env.settings.queue)
    assert queue.enqueue_job("job-a")
    assert queue.enqueue_reconstruction("rec-b")
    assert queue.pending_ids(env.settings) == {"job-a", "rec-b"}
    r.delete(env.settings.queue)
    assert queue.pending_ids(env.settings) == set()
    r.close()
