"""Worker: embedded broker, real Celery worker subprocesses, the runner, crash and resume."""

from __future__ import annotations

import csv
import json
import stat
import threading
import time
from typing import Any

import pytest
import torch
from sqlalchemy import select

from persistence import jobs
from persistence.db import session_scope
from persistence.storage import Storage
from persistence.tables import Iteration, Job, JobEvent, Reconstruction
from saft_core.recommend import recommend_iteration
from tests.client.service_fixtures import free_port, start_serve
from tests.service.api_fixtures import wait_for
from worker import queue, runner


def _create_job(inputs: Any, **params: Any) -> str:
    return str(inputs.create_job(**{"lr": 1e-4, **params}))


def _job(job_id: str) -> Job:
    with session_scope() as s:
        return s.get_one(Job, job_id)


def _iterations(job_id: str) -> list[int]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(Iteration.iteration)
                .where(Iteration.job_id == job_id)
                .order_by(Iteration.iteration)
            )
        )


def _wait_final(job_id: str, timeout: float = 180) -> Job:
    return wait_for(
        lambda: (j := _job(job_id)).state in ("succeeded", "failed", "cancelled") and j,
        timeout,
        f"job {job_id} to finish",
        poll=0.2,
    )


# ---- embedded broker --------------------------------------------------------------------


def test_embedded_broker_socket_aof_and_a_real_worker_consumes(
    embedded_redis: Any, make_saft_env: Any, start_worker: Any
):
    r = embedded_redis.client()
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    assert r.config_get("port") == {"port": "0"}  # no TCP listener
    assert r.config_get("unixsocket") == {"unixsocket": str(embedded_redis.socket_path)}
    mode = embedded_redis.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o700
    assert embedded_redis.url == f"redis+socket://{embedded_redis.socket_path}"

    env = make_saft_env(broker_url=embedded_redis.url)
    assert queue.enqueue_job("no-such-job")
    assert queue.pending_ids(env.settings) == {"no-such-job"}
    worker = start_worker(env).wait_ready()
    worker.wait_for_log("job no-such-job is not queued", timeout=30)
    wait_for(lambda: not queue.pending_ids(env.settings), 10, "the message to be acked")
    r.close()


def test_embedded_broker_keeps_messages_across_restart(short_tmp: Any, make_saft_env: Any):
    from worker.embedded import EmbeddedRedis

    broker = EmbeddedRedis(short_tmp / "r.sock", short_tmp / "redis").start()
    env = make_saft_env(broker_url=broker.url)
    assert queue.enqueue_job("kept")
    broker.stop()
    assert not (short_tmp / "r.sock").exists()
    assert (short_tmp / "redis" / "appendonly.aof").stat().st_size > 0
    broker = EmbeddedRedis(short_tmp / "r.sock", short_tmp / "redis").start()
    try:
        # A new producer: the old connection pool points at the dead server.
        queue._apps.clear()
        assert queue.pending_ids(env.settings) == {"kept"}
    finally:
        broker.stop()


def test_second_embedded_broker_on_the_same_socket_is_refused(embedded_redis: Any):
    from worker.embedded import EmbeddedRedis

    with pytest.raises(RuntimeError, match="already answers"):
        EmbeddedRedis(embedded_redis.socket_path, embedded_redis.data_dir).start()


# ---- the runner, in-process --------------------------------------------------------------


def test_runner_success_writes_a_cli_run_dir(saft_env: Any, tiny_job_inputs: Any):
    inputs = tiny_job_inputs(saft_env)
    job_id = _create_job(inputs)
    assert runner.run_job(job_id) == "succeeded"
    assert runner.run_job(job_id) == "skipped"  # a redelivered message is a no-op
    job = _job(job_id)
    assert (job.state, job.iterations_done, job.progress) == ("succeeded", 2, 1.0)
    assert job.device.startswith("cpu") and job.error is None
    last = torch.load(Storage(saft_env.data_dir).checkpoint_path(job_id, 2), weights_only=True)
    assert job.recommended_iteration == recommend_iteration(last["saft"]["records"], final=True)
    assert _iterations(job_id) == [0, 1, 2]
    st = Storage(saft_env.data_dir)
    for k in (0, 1, 2):
        assert st.checkpoint_path(job_id, k).is_file()
        assert st.preview_png_path(job_id, k).is_file()
        assert st.preview_tif_path(job_id, k).is_file()
    with st.record_csv(job_id).open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["iteration"] for r in rows] == ["0", "1", "2"]
    run = json.loads(st.run_json(job_id).read_text())
    assert run["recommended_iteration"] == job.recommended_iteration
    with session_scope() as s:
        kinds = s.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id)).all()
    assert kinds.count("iteration") == 3 and kinds[0] == "state" and kinds[-1] == "state"
    # The per-job log (served by GET /v1/jobs/{id}/log): JSON lines naming the job.
    log_lines = [json.loads(x) for x in (st.job_dir(job_id) / "job.log").read_text().splitlines()]
    assert log_lines and all(r["job_id"] == job_id for r in log_lines)
    assert any("iteration 2 committed" in r["message"] for r in log_lines)

    # Reconstruction with iteration 1's checkpoint, streamed to a TIFF.
    import tifffile

    with session_scope() as s:
        rec = jobs.create_reconstruction(s, inputs.user, s.get_one(Job, job_id), 1, video=False)
        rec_id = rec.id
    assert runner.run_reconstruction(rec_id) == "succeeded"
    with session_scope() as s:
        rec = s.get_one(Reconstruction, rec_id)
    assert rec.state == "succeeded" and rec.mp4_path is None
    assert tifffile.imread(st.resolve(rec.tiff_path)).shape == (6, 128, 128)


def _reconstruct_iteration(inputs: Any, job_id: str, iteration: int, storage: Storage) -> Any:
    import tifffile

    with session_scope() as s:
        rec = jobs.create_reconstruction(
            s, inputs.user, s.get_one(Job, job_id), iteration, video=False
        )
        rec_id = rec.id
    assert runner.run_reconstruction(rec_id) == "succeeded"
    with session_scope() as s:
        return tifffile.imread(storage.resolve(s.get_one(Reconstruction, rec_id).tiff_path))


def test_reconstruction_uses_the_requested_iterations_weights(
    saft_env: Any, tiny_job_inputs: Any, tmp_path: Any
):
    """Iteration 0 is the pretrained network exactly; a trained iteration gives another image."""
    import numpy as np
    import tifffile

    from persistence.tables import Dataset, ModelFile
    from saft_core.reconstruct import reconstruct

    inputs = tiny_job_inputs(saft_env)
    job_id = _create_job(inputs, lr=1e-3)
    assert runner.run_job(job_id) == "succeeded"
    st = Storage(saft_env.data_dir)
    first = _reconstruct_iteration(inputs, job_id, 0, st)
    last = _reconstruct_iteration(inputs, job_id, 2, st)
    assert first.shape == last.shape == (6, 128, 128)
    assert not np.allclose(first, last, rtol=0, atol=1e-6)

    with session_scope() as s:
        lr = tifffile.imread(st.resolve(s.get_one(Dataset, inputs.lr_dataset_id).path))
        edges = tifffile.imread(st.resolve(s.get_one(Dataset, inputs.edge_dataset_id).path))
        pretrained = st.resolve(s.get_one(ModelFile, inputs.sr_model_id).path)
    reconstruct(lr.astype(np.float32), edges.astype(np.float32), pretrained, tmp_path / "p.tif")
    np.testing.assert_allclose(first, tifffile.imread(tmp_path / "p.tif"), rtol=1e-5, atol=1e-6)


def test_runner_wsf_job_trains_against_the_smlm_image(saft_env: Any, tiny_job_inputs: Any):
    """SAFT-WSF: no DEN network, the SMLM image is the target; iterations and checkpoints."""
    inputs = tiny_job_inputs(saft_env)
    job_id = _create_job(inputs, smlm=True, mode="wsf")
    assert runner.run_job(job_id) == "succeeded", _job(job_id).error
    job = _job(job_id)
    assert (job.iterations_done, job.error) == (2, None)
    assert job.mode == "wsf"
    assert _iterations(job_id) == [0, 1, 2]
    last = torch.load(Storage(saft_env.data_dir).checkpoint_path(job_id, 2), weights_only=True)
    assert "den" not in last["saft"] and last["saft"]["params"]["mode"] == "wsf"


def test_runner_cancel_while_running(saft_env: Any, tiny_job_inputs: Any):
    inputs = tiny_job_inputs(saft_env)
    job_id = _create_job(inputs, iterations=50)
    outcome: list[str] = []
    t = threading.Thread(target=lambda: outcome.append(runner.run_job(job_id)))
    t.start()
    wait_for(lambda: _iterations(job_id), 120, "the first committed iteration")
    with session_scope() as s:
        jobs.request_cancel(s, s.get_one(Job, job_id))
    t.join(120)
    assert outcome == ["cancelled"]
    job = _job(job_id)
    assert job.state == "cancelled" and job.iterations_done < 50


def test_runner_user_error_and_internal_error(
    saft_env: Any, tiny_job_inputs: Any, monkeypatch: pytest.MonkeyPatch
):
    inputs = tiny_job_inputs(saft_env)
    wsf = _create_job(inputs, mode="wsf")  # SAFT-WSF without an SMLM image: a user error
    assert runner.run_job(wsf) == "failed"
    assert "SMLM" in _job(wsf).error

    import importlib

    finetune_module = importlib.import_module("saft_core.finetune")

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(finetune_module, "finetune", boom)
    broken = _create_job(inputs)
    assert runner.run_job(broken) == "failed"
    error = _job(broken).error
    assert "RuntimeError" in error and "secret" not in error


def test_control_time_limit_and_lost_claim():
    class HB:
        lost = threading.Event()

    c = runner.Control(Job, "x", HB(), deadline=time.monotonic() - 1)
    assert c() and c.reason == "timeout"
    hb = HB()
    hb.lost = threading.Event()
    hb.lost.set()
    c = runner.Control(Job, "x", hb, deadline=time.monotonic() + 100)
    assert c() and c.reason == "lost"


# ---- real Celery workers -------------------------------------------------------------------


@pytest.mark.redis
def test_job_through_celery_with_a_duplicate_message(
    saft_env: Any, tiny_job_inputs: Any, celery_worker: Any
):
    inputs = tiny_job_inputs(saft_env)
    job_id = _create_job(inputs)
    assert queue.enqueue_job(job_id)
    assert queue.enqueue_job(job_id)  # e.g. a re-send by the reconciler: must not run twice
    job = _wait_final(job_id)
    assert job.state == "succeeded", job.error
    celery_worker.wait_for_log(f"job {job_id} is not queued", timeout=30)
    assert celery_worker.log().count(f"job {job_id} claimed") == 1
    assert _iterations(job_id) == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.redis
def test_sigkilled_worker_resumes_from_last_iteration(
    saft_env: Any, tiny_job_inputs: Any, start_worker: Any
):
    inputs = tiny_job_inputs(saft_env)
    job_id = _create_job(inputs, iterations=3)
    first = start_worker(saft_env).wait_ready()
    assert queue.enqueue_job(job_id)
    # Kill as soon as iteration 1 is committed (iterations 2-3 still to run).
    wait_for(lambda: 1 in _iterations(job_id), 120, "iteration 1", poll=0.01)
    first.kill()
    killed_at = _iterations(job_id)[-1]
    assert killed_at < 3, "the job finished before the kill; make iterations slower"
    job = _job(job_id)
    assert job.state == "running"

    second = start_worker(saft_env).wait_ready()
    job = _wait_final(job_id)
    assert job.state == "succeeded", job.error
    assert job.attempts == 1  # one lost run
    assert _iterations(job_id) == [0, 1, 2, 3]
    second.wait_for_log(f"job {job_id} claimed", timeout=5)
    with session_scope() as s:
        logs = [
            e.data.get("message")
            for e in s.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "log")
            )
        ]
    assert f"resuming after iteration {killed_at}" in logs
    st = Storage(saft_env.data_dir)
    with st.record_csv(job_id).open() as fh:
        assert [r["iteration"] for r in csv.DictReader(fh)] == ["0", "1", "2", "3"]


# ---- saft serve: the embedded default ------------------------------------------------------


@pytest.mark.slow
def test_saft_serve_embedded_default(short_tmp: Any, monkeypatch: pytest.MonkeyPatch):
    """API + one worker + embedded Redis over SQLite, no configuration; Ctrl-C stops all."""
    import os
    import signal
    import subprocess
    import urllib.request

    pytest.importorskip("api.main")
    port = free_port()
    data = short_tmp / "d"
    log_path = short_tmp / "serve.log"
    proc = start_serve(data, port, log_path)
    try:

        def healthy() -> bool:
            try:
                url = f"http://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.status == 200
            except OSError:
                return proc.poll() is not None

        wait_for(healthy, 90, "the API")
        assert proc.poll() is None, log_path.read_text()
        key_file = data / "admin-api-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_ISSOCK((data / "redis.sock").stat().st_mode)
        assert (data / "saft.db").is_file()
        wait_for(lambda: " ready." in log_path.read_text(), 60, "the worker")
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/jobs",
            headers={"Authorization": f"Bearer {key_file.read_text().strip()}"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert not (data / "redis.sock").exists()  # the broker was stopped cleanly
    assert "Warm shutdown" in log_path.read_text()


def _pids_with(needle: str) -> list[int]:
    """Live processes whose command line contains ``needle`` (Linux /proc)."""
    from pathlib import Path

    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(d.name))
            except OSError:
                continue
    return found


def test_killed_serve_leaves_no_orphan_worker_or_broker(short_tmp: Any):
    """SIGKILL on serve: the kernel stops its worker and Redis (no orphan burning a CPU)."""
    import os
    import signal

    data = short_tmp / "k"
    log_path = short_tmp / "serve-kill.log"
    proc = start_serve(data, 0, log_path)
    worker_tag = f"saft0-{proc.pid}@"
    try:
        wait_for(lambda: " ready." in log_path.read_text(), 90, "the worker")
        workers = _pids_with(worker_tag)
        brokers = _pids_with(str(data / "redis.sock"))
        assert workers and brokers, log_path.read_text()
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not _pids_with(worker_tag), 30, "the orphaned worker to exit")
        wait_for(lambda: not _pids_with(str(data / "redis.sock")), 30, "the broker to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _pids_with(worker_tag):
            os.kill(pid, signal.SIGKILL)
