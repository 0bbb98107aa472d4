"""Persistence: settings, API keys, storage layout and the job state machine (both databases)."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from persistence import auth, jobs
from persistence.db import make_engine
from persistence.settings import Settings
from persistence.storage import Storage
from persistence.tables import Dataset, Iteration, Job, JobEvent, User
from saft_core.errors import InvalidParameterError


def _session(url: str):
    from sqlalchemy.orm import Session

    return Session(make_engine(url), expire_on_commit=False)


def _user_and_dataset(s, name: str = "alice") -> tuple[User, Dataset]:
    user, _ = auth.create_user(s, name)
    ds = Dataset(
        owner_id=user.id,
        filename="lr.tif",
        path="datasets/x.tif",
        shape=[6, 32, 32],
        dtype="uint16",
        pixel_size=0.1,
        sha256="0" * 64,
        bytes=1,
    )
    s.add(ds)
    s.flush()
    return user, ds


# ---- settings ---------------------------------------------------------------------------


def test_settings_defaults_follow_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for k in [k for k in __import__("os").environ if k.startswith("SAFT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SAFT_DATA_DIR", str(tmp_path / "d"))
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'saft.db'}"
    assert s.embedded_broker and s.redis_socket == tmp_path / "d" / "redis.sock"
    assert s.api_key_admin_file == tmp_path / "d" / "admin-api-key"
    assert s.max_attempts == 3 and s.max_upload_bytes == 2 * 1024**3
    monkeypatch.setenv("SAFT_DATABASE_URL", "postgresql://u@h/db")
    assert Settings().database_url == "postgresql+psycopg://u@h/db"


# ---- auth -------------------------------------------------------------------------------


def test_keys_are_stored_hashed_and_authenticate(db_url: str):
    with _session(db_url) as s:
        user, key = auth.create_user(s, "bob", is_admin=True)
        s.commit()
        assert len(key) >= 43 and user.key_hash == auth.hash_key(key) != key
        assert user.key_prefix == key[:8]
        assert auth.authenticate(s, key).id == user.id
        assert auth.authenticate(s, key + "x") is None
        assert auth.authenticate(s, "") is None
        with pytest.raises(InvalidParameterError, match="already exists"):
            auth.create_user(s, "bob")
        with pytest.raises(InvalidParameterError):
            auth.create_user(s, "../evil")


def test_first_start_creates_admin_key_file_once(db_url: str, tmp_path: Path):
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    with _session(db_url) as s:
        key = auth.ensure_admin(s, settings)
        assert key is not None
        path = tmp_path / "admin-api-key"
        assert path.read_text().strip() == key
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        admin = auth.authenticate(s, key)
        assert admin is not None and admin.name == "admin" and admin.is_admin
        assert auth.ensure_admin(s, settings) is None  # users exist: nothing happens
        assert path.read_text().strip() == key


# ---- storage ----------------------------------------------------------------------------


def test_storage_layout_is_the_cli_run_dir_layout(tmp_path: Path):
    from saft_core.rundir import RECORD_CSV, RunDir

    st = Storage(tmp_path)
    run = RunDir(st.job_dir("j1"))
    assert st.checkpoint_path("j1", 3) == run.checkpoint(3)
    assert st.preview_png_path("j1", 3) == run.preview_png(3)
    assert st.preview_tif_path("j1", 3) == run.preview_tif(3)
    assert st.record_csv("j1") == run.record_csv and st.record_csv("j1").name == RECORD_CSV
    assert st.run_json("j1") == run.run_json
    assert st.relative(st.dataset_path("d1")) == "datasets/d1.tif"
    assert st.resolve("datasets/d1.tif") == st.dataset_path("d1")
    assert st.tmp_path(".tif").parent.parent == tmp_path.resolve()
    for bad in ("../x", "/etc/passwd", "jobs/../../x"):
        with pytest.raises(ValueError, match="outside"):
            st.resolve(bad)
    with pytest.raises(ValueError, match="outside"):
        st.relative("/etc/passwd")


# ---- job state machine ------------------------------------------------------------------


def test_create_job_freezes_params_and_is_idempotent(db_url: str):
    with _session(db_url) as s:
        user, ds = _user_and_dataset(s)
        job = jobs.create_job(
            s, user, lr_dataset_id=ds.id, params={"sigma": "auto"}, idempotency_key="k1"
        )
        s.commit()
        assert job.state == "queued" and job.mode == "saft"
        assert job.params["iterations"] == 5 and job.params["sigma"] == "auto"
        assert job.enqueued_at is not None and job.software_version
        again = jobs.create_job(
            s, user, lr_dataset_id=ds.id, params={"sigma": "auto"}, idempotency_key="k1"
        )
        assert again.id == job.id
        other = jobs.create_job(s, user, lr_dataset_id=ds.id, params={})
        assert other.id != job.id
        with pytest.raises(InvalidParameterError) as err:
            jobs.create_job(s, user, lr_dataset_id=ds.id, params={"lr": 1.0})
        assert err.value.field == "lr"
        s.commit()
        events = s.scalars(select(JobEvent).where(JobEvent.job_id == job.id)).all()
        assert [(e.kind, e.data) for e in events] == [("state", {"state": "queued"})]


def test_claim_once_then_guarded_by_worker(db_url: str):
    with _session(db_url) as s:
        user, ds = _user_and_dataset(s)
        job = jobs.create_job(s, user, lr_dataset_id=ds.id, params={"iterations": 2})
        s.commit()
        w1, w2 = jobs.worker_name(), jobs.worker_name()
        assert w1 != w2
        assert jobs.claim_job(s, job.id, w1)
        s.commit()
        assert not jobs.claim_job(s, job.id, w2)
        assert jobs.heartbeat(s, Job, job.id, w1)
        assert not jobs.heartbeat(s, Job, job.id, w2)
        ok = jobs.record_iteration(
            s,
            job.id,
            w1,
            iteration=1,
            losses={"total": 1.0},
            rse=None,
            rsp=None,
            resolution=None,
            seconds=0.5,
            checkpoint_path="jobs/x/iteration_01.pth",
            preview_png_path="p.png",
            preview_tif_path="p.tif",
            progress=0.5,
            sigma_used=1.1,
        )
        assert ok
        assert not jobs.record_iteration(
            s,
            job.id,
            w2,
            iteration=2,
            losses={},
            rse=None,
            rsp=None,
            resolution=None,
            seconds=0,
            checkpoint_path="",
            preview_png_path="",
            preview_tif_path="",
            progress=1,
            sigma_used=None,
        )
        s.commit()
        assert jobs.last_iteration(s, job.id).iteration == 1
        assert not jobs.finish_job(s, job.id, "succeeded", worker=w2)
        assert jobs.finish_job(s, job.id, "succeeded", worker=w1, recommended_iteration=1)
        s.commit()
        s.refresh(job)
        assert (job.state, job.progress, job.iterations_done, job.sigma_used) == (
            "succeeded",
            1.0,
            1,
            1.1,
        )
        assert job.finished_at is not None and job.started_at is not None
        assert not jobs.finish_job(s, job.id, "failed")  # final states are final
        kinds = s.scalars(
            select(JobEvent.kind).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
        ).all()
        assert kinds == ["state", "state", "iteration", "state"]


def test_cancel_queued_at_once_running_by_request(db_url: str):
    with _session(db_url) as s:
        user, ds = _user_and_dataset(s)
        queued = jobs.create_job(s, user, lr_dataset_id=ds.id, params={})
        running = jobs.create_job(s, user, lr_dataset_id=ds.id, params={})
        s.commit()
        w = jobs.worker_name()
        assert jobs.claim_job(s, running.id, w)
        s.commit()
        assert jobs.request_cancel(s, queued).state == "cancelled"
        r = jobs.request_cancel(s, running)
        s.commit()
        assert r.state == "running" and r.cancel_requested
        assert not jobs.claim_job(s, queued.id, w)  # a late message cannot revive it
        assert jobs.cancel_requested(s, Job, running.id)
        assert jobs.finish_job(s, running.id, "cancelled", worker=w)
        s.commit()
        assert jobs.request_cancel(s, running).state == "cancelled"


def test_iteration_rewrite_on_resume_keeps_one_row(db_url: str):
    with _session(db_url) as s:
        user, ds = _user_and_dataset(s)
        job = jobs.create_job(s, user, lr_dataset_id=ds.id, params={})
        s.commit()
        w = jobs.worker_name()
        jobs.claim_job(s, job.id, w)
        for seconds in (1.0, 2.0):
            jobs.record_iteration(
                s,
                job.id,
                w,
                iteration=1,
                losses={"total": seconds},
                rse=None,
                rsp=None,
                resolution=None,
                seconds=seconds,
                checkpoint_path="c",
                preview_png_path="p",
                preview_tif_path="t",
                progress=0.2,
                sigma_used=None,
            )
            s.commit()
        rows = s.scalars(select(Iteration).where(Iteration.job_id == job.id)).all()
        assert [(r.iteration, r.seconds) for r in rows] == [(1, 2.0)]


@pytest.mark.postgres
def test_atomic_claim_race_on_postgresql(pg_url: str):
    """Many sessions on real concurrent connections claim the same jobs: one winner each."""
    engine = make_engine(pg_url)
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as s:
        user, ds = _user_and_dataset(s)
        ids = [jobs.create_job(s, user, lr_dataset_id=ds.id, params={}).id for _ in range(10)]
        s.commit()

    n_threads = 8
    results: dict[str, list[str]] = {i: [] for i in ids}
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    def contender() -> None:
        me = jobs.worker_name()
        for job_id in ids:
            barrier.wait()
            with Session(engine) as s:
                won = jobs.claim_job(s, job_id, me)
                s.commit()
            if won:
                with lock:
                    results[job_id].append(me)

    threads = [threading.Thread(target=contender) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(w) == 1 for w in results.values()), results
    with Session(engine) as s:
        rows = s.execute(select(Job.id, Job.worker, Job.state).where(Job.id.in_(ids))).all()
    assert {r.id: [r.worker] for r in rows} == results
    assert {r.state for r in rows} == {"running"}
    engine.dispose()


@pytest.mark.postgres
def test_claim_waits_for_the_row_lock_then_loses(pg_url: str):
    """The loser blocks on the winner's uncommitted UPDATE and then sees state='running'."""
    from sqlalchemy.orm import Session

    engine = make_engine(pg_url)
    with Session(engine, expire_on_commit=False) as s:
        user, ds = _user_and_dataset(s)
        job_id = jobs.create_job(s, user, lr_dataset_id=ds.id, params={}).id
        s.commit()
    first = Session(engine)
    assert jobs.claim_job(first, job_id, "first")  # row locked, not committed
    outcome: list[bool] = []
    t = threading.Thread(target=lambda: outcome.append(_claim_and_commit(engine, job_id, "second")))
    t.start()
    t.join(1.0)
    assert t.is_alive(), "the second claim should wait for the first transaction"
    first.commit()
    first.close()
    t.join(30)
    assert outcome == [False]
    with Session(engine) as s:
        assert s.scalar(select(Job.worker).where(Job.id == job_id)) == "first"
        assert s.scalar(select(func.count()).select_from(Job)) == 1
    engine.dispose()


def _claim_and_commit(engine, job_id: str, worker: str) -> bool:
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        won = jobs.claim_job(s, job_id, worker)
        s.commit()
        return won


def test_saft_users_add_prints_a_working_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    import click
    from click.testing import CliRunner

    from persistence.db import reset_engines
    from persistence.settings import get_settings
    from saft_cli.service_commands import register

    for k in [k for k in os.environ if k.startswith("SAFT_")]:
        monkeypatch.delenv(k)
    # The command exports SAFT_DATA_DIR for its children; monkeypatch undoes it afterwards.
    monkeypatch.setenv("SAFT_DATA_DIR", str(tmp_path))
    cli = click.Group()
    register(cli)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(cli, ["users", "add", "carol", "--data-dir", str(tmp_path)])
        assert res.exit_code == 0, res.output
        key = res.output.strip()
        with _session(f"sqlite:///{tmp_path / 'saft.db'}") as s:
            assert auth.authenticate(s, key).name == "carol"
        again = CliRunner().invoke(cli, ["users", "add", "carol", "--data-dir", str(tmp_path)])
        assert again.exit_code != 0
    finally:
        get_settings.cache_clear()
        reset_engines()
