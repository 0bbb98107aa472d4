"""End to end, embedded default: ``saft serve`` (API + worker + embedded Redis + SQLite)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.client.service_fixtures import serve_env, start_serve
from tests.service.api_fixtures import Server, e2e_flow, free_port
from tests.service.conftest import REPO

pytestmark = pytest.mark.slow


def test_saft_serve_upload_finetune_reconstruct_cancel(short_tmp: Path) -> None:
    """No configuration at all; the default networks; a second user made with the CLI."""
    env = serve_env()
    data = short_tmp / "d"  # short: the embedded Redis socket lives in the data dir
    port = free_port()
    log_path = short_tmp / "serve.log"
    proc = start_serve(data, port, log_path)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        server.wait_ready(timeout=120)
        key = (data / "admin-api-key").read_text().strip()
        other_key = subprocess.run(
            [sys.executable, "-m", "saft_cli.main", "users", "add", "bob", "--data-dir", str(data)],
            env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
        ).stdout.strip()  # fmt: skip
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            figures = e2e_flow(http, key, other_key, checkpoints=None)
        print(f"\nE2E (saft serve, embedded): {figures}")
    except BaseException:
        print(f"--- saft serve log ---\n{server.log()[-8000:]}")
        raise
    finally:
        server.stop(signal.SIGINT)
    assert proc.returncode == 0, server.log()[-4000:]  # Ctrl-C is a clean shutdown
    assert not (data / "redis.sock").exists()
