"""docker/entrypoint.sh's healthcheck-worker, run for real against the broker and database."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from persistence import jobs
from persistence.db import session_scope
from persistence.tables import Job, utcnow
from tests.service.conftest import REPO
from tests.test_compose import worker_healthcheck_script

pytestmark = pytest.mark.slow  # each check spends 5 s on the ping


def _check(env: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-"],
        input=worker_healthcheck_script(),
        env=env.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_worker_healthcheck_follows_this_hosts_job_heartbeat(
    make_saft_env: Any, redis_url: str, tiny_job_inputs: Any
) -> None:
    """No worker answers the ping here: healthy only while this host's job heartbeat is fresh."""
    # The check spends up to 5 s on the ping first: a heartbeat must stay fresh longer than that.
    saft_env = make_saft_env(broker_url=redis_url, stale_after_s=120)
    inputs = tiny_job_inputs(saft_env)
    job_id = inputs.create_job()
    idle = _check(saft_env)
    assert idle.returncode == 1, idle.stderr
    assert "does not answer and runs no job" in idle.stderr

    with session_scope() as s:
        assert jobs.claim_job(s, job_id, jobs.worker_name())
    busy = _check(saft_env)
    assert busy.returncode == 0, busy.stderr

    stale = utcnow() - timedelta(seconds=saft_env.settings.stale_after_s + 60)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=stale))
    assert _check(saft_env).returncode == 1

    with session_scope() as s:  # fresh, but claimed by a worker on another host
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(heartbeat_at=utcnow(), worker="other-host:1:abcd1234")
        )
    assert _check(saft_env).returncode == 1
