"""End to end, facility style: PostgreSQL + Redis + a real Celery worker + uvicorn, over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.api_fixtures import e2e_flow, start_uvicorn, tiny_checkpoint_files
from tests.service.conftest import ServiceEnv

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_upload_finetune_reconstruct_cancel_over_http(
    saft_env_pg: ServiceEnv,
    start_worker: Callable[[ServiceEnv], Any],
    tmp_path: Path,
) -> None:
    from persistence.auth import create_user
    from persistence.db import session_scope

    assert saft_env_pg.settings.database_url.startswith("postgresql")
    worker = start_worker(saft_env_pg)
    server = start_uvicorn(saft_env_pg, tmp_path / "api.log")
    try:
        with session_scope() as s:
            _, key = create_user(s, "alice")
            _, other_key = create_user(s, "bob")
        checkpoints = tiny_checkpoint_files(tmp_path)
        worker.wait_ready()
        server.wait_ready()
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            figures = e2e_flow(http, key, other_key, checkpoints=checkpoints)
        print(f"\nE2E (PostgreSQL, Celery worker): {figures}")
    except BaseException:
        print(
            f"--- worker log ---\n{worker.log()[-5000:]}\n--- api log ---\n{server.log()[-5000:]}"
        )
        raise
    finally:
        server.stop()
