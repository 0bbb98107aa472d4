"""Fixtures of the client and client-CLI tests, a plugin listed in tests/conftest.py: a real
``saft serve`` (API + Celery worker + embedded Redis over SQLite in a temporary data dir) on a
free port, one per test module, with a tiny SR model uploaded through the client. No mocks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from saft_client import SaftClient

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


@dataclass
class Service:
    """A running ``saft serve`` and the admin key it created."""

    url: str
    key: str
    data_dir: Path
    log_path: Path

    def client(self, **kwargs: Any) -> SaftClient:
        return SaftClient(self.url, self.key, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_env() -> dict[str, str]:
    """This process's environment without SAFT_* settings, one torch thread, this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFT_")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start_serve(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``saft serve`` with defaults only, in its own session (SIGINT stops it in order)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "saft_cli.main", "serve", "--data-dir", str(data_dir),
             "--port", str(port)],
            cwd=REPO, env=serve_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop_serve(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (serve stops its worker and broker in order); its whole session killed after 60 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_for(check: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not up after {timeout} s:\n{log()[-4000:]}")


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """``saft serve`` in a short /tmp dir (the broker's unix socket path must be short)."""
    tmp = Path(tempfile.mkdtemp(prefix="saftc-", dir="/tmp"))
    data, log_path, port = tmp / "d", tmp / "serve.log", free_port()
    proc = start_serve(data, port, log_path)
    url = f"http://127.0.0.1:{port}"

    def read_log() -> str:
        return log_path.read_text(errors="replace")

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"saft serve exited with {proc.returncode}:\n{read_log()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait_for(healthy, START_TIMEOUT_S, "the API", read_log)
        _wait_for(lambda: " ready." in read_log(), START_TIMEOUT_S, "the worker", read_log)
        key = (data / "admin-api-key").read_text().strip()
        yield Service(url=url, key=key, data_dir=data, log_path=log_path)
    finally:
        stop_serve(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[SaftClient]:
    with service.client() as c:
        yield c


@pytest.fixture(scope="module")
def tiny_model(client: SaftClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Id of an uploaded 8-feature, 1-block SR network: each iteration takes a fraction of
    a second on one CPU thread."""
    import torch

    from saft_core.networks import SRConfig, build_sr, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_sr.pth"
    save_checkpoint(path, build_sr(SRConfig(nf=8, nb=1, gc=8)), "sr")
    return client.upload_model(path, "sr", name="tiny").id


def write_stack(
    path: Path, t: int = 4, h: int = 32, w: int = 32, seed: int = 0, edge: bool = False
) -> Path:
    """A small stack as acquisition software writes it: uint16 (edge maps: float32 0..255)."""
    import tifffile

    rng = np.random.default_rng(seed)
    if edge:
        data = (rng.random((t, h, w)) * 255).astype(np.float32)
    else:
        data = (rng.random((t, h, w)) * 1000 + 100).astype(np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def unique(prefix: str = "s") -> str:
    """A name no other test of the module uses (the service is shared)."""
    return f"{prefix}{secrets.token_hex(4)}"
