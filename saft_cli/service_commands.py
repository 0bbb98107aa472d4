"""Service commands of ``saft``: serve, worker, users add, db upgrade, doctor.

``saft serve`` with no configuration is the embedded default: the API (uvicorn), one Celery
worker subprocess and an embedded Redis (unix socket, AOF) over SQLite in the data dir — the
same Celery code path as a facility deployment, where ``saft worker`` processes on GPU
machines share a Redis broker, a PostgreSQL database and the data dir on shared storage.
Imports are lazy so ``saft --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)

WORKER_STOP_TIMEOUT_S = 15.0


def register(cli: click.Group) -> None:
    """Attach the service commands to the ``saft`` group."""
    cli.add_command(serve)
    cli.add_command(worker)
    cli.add_command(users)
    cli.add_command(db)
    from saft_cli.doctor import doctor

    cli.add_command(doctor)


def _data_dir_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data directory (default: $SAFT_DATA_DIR or ./saft-data).",
    )(f)


def _settings(data_dir: Path | None) -> Any:
    """Settings with ``--data-dir`` applied; exported so child processes agree."""
    from persistence.settings import get_settings

    if data_dir is not None:
        os.environ["SAFT_DATA_DIR"] = str(data_dir.resolve())
        get_settings.cache_clear()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["SAFT_DATA_DIR"] = str(settings.data_dir)
    return settings


def worker_argv(queue: str, name: str, loglevel: str = "INFO") -> list[str]:
    """Arguments of a Celery worker as the service runs it (see worker/celery_app.py)."""
    return [
        "worker",
        "--pool",
        "solo",  # the task runs in this process: CUDA is never initialised in a forking parent
        "--concurrency",
        "1",  # one task at a time per device
        "-Q",
        queue,
        "-n",
        name,
        "--without-mingle",  # nothing to synchronise between solo workers; starts 1 s faster
        "--without-gossip",
        "--loglevel",
        loglevel,
    ]


# ---- serve ------------------------------------------------------------------------------


@click.command()
@_data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="API listen address.")
@click.option("--port", default=8000, show_default=True, type=int, help="API port.")
@click.option(
    "--workers",
    "n_workers",
    default=1,
    show_default=True,
    type=int,
    help="Local worker processes (0: API only, workers run elsewhere).",
)
def serve(data_dir: Path | None, host: str, port: int, n_workers: int) -> None:
    """Run the API, local worker(s) and (unless SAFT_BROKER_URL is set) an embedded Redis."""
    settings = _settings(data_dir)
    _upgrade_and_admin(settings, create_admin=True)
    broker = None
    if settings.embedded_broker:
        from worker.embedded import EmbeddedRedis

        broker = EmbeddedRedis(settings.redis_socket, settings.data_dir / "redis").start()
        click.echo(f"saft: embedded Redis on {settings.redis_socket}", err=True)
    supervisors = [
        _WorkerSupervisor(settings.queue, f"saft{i}-{os.getpid()}@%h").start()
        for i in range(n_workers)
    ]
    try:
        import uvicorn

        click.echo(f"saft: API on http://{host}:{port}  (data dir {settings.data_dir})", err=True)
        uvicorn.run("api.main:app", host=host, port=port, log_level="info")
    finally:
        for sup in supervisors:
            sup.stop()
        if broker is not None:
            broker.stop()


class _WorkerSupervisor:
    """Keeps one Celery worker subprocess alive while serve runs (restarts it if it dies)."""

    def __init__(self, queue: str, name: str) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            *worker_argv(queue, name),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> _WorkerSupervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        # Own process group: Ctrl-C reaches serve only, which then stops the worker in order;
        # and the kernel SIGTERMs the worker if serve itself is killed (no orphan workers).
        from worker.embedded import die_with_parent

        self.proc = subprocess.Popen(self.argv, preexec_fn=die_with_parent)

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            if self.proc is not None and self.proc.poll() is not None:
                log.warning("worker exited with %s; restarting", self.proc.returncode)
                self._release(self.proc.pid)
                if self._stopping.wait(2.0):
                    return
                self._spawn()

    @staticmethod
    def _release(pid: int) -> None:
        """The worker is dead for sure: requeue its job now, not after the heartbeat expires."""
        import socket

        from worker.reconciler import release_dead_worker

        try:
            release_dead_worker(socket.gethostname(), pid)
        except Exception:
            log.exception("could not release the jobs of worker %s", pid)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL: an interrupted job is resumed later."""
        self._stopping.set()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release(proc.pid)


# ---- worker -----------------------------------------------------------------------------


@click.command()
@_data_dir_option
@click.option("--gpu", default=None, help="Sets CUDA_VISIBLE_DEVICES: run one worker per GPU.")
@click.option("--queue", default=None, help="Queue to consume (default: $SAFT_QUEUE or gpu).")
@click.option("--name", default=None, help="Celery node name (default: saft-<pid>@<host>).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(
    data_dir: Path | None, gpu: str | None, queue: str | None, name: str | None, loglevel: str
) -> None:
    """Run one Celery worker (one task at a time) against the configured broker and database."""
    if gpu is not None:
        # Before anything imports torch: each worker sees exactly one GPU as cuda:0.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    settings = _settings(data_dir)
    _upgrade_and_admin(settings, create_admin=False)
    from worker.celery_app import app

    app.worker_main(
        worker_argv(queue or settings.queue, name or f"saft-{os.getpid()}@%h", loglevel)
    )


# ---- users ------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Manage API users."""


@users.command("add")
@_data_dir_option
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage other users.")
def users_add(data_dir: Path | None, name: str, admin: bool) -> None:
    """Create user NAME and print its new API key (shown once; only its hash is stored)."""
    settings = _settings(data_dir)
    _upgrade_and_admin(settings, create_admin=False)
    from persistence.auth import create_user
    from persistence.db import session_scope

    with session_scope() as s:
        _, key = create_user(s, name, is_admin=admin)
    click.echo(key)


# ---- db ---------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@_data_dir_option
@click.option("--url", default=None, help="Database URL (default: $SAFT_DATABASE_URL).")
def db_upgrade(data_dir: Path | None, url: str | None) -> None:
    """Apply all migrations (serve and worker also do this on start)."""
    _settings(data_dir)
    from persistence.migrate import upgrade

    upgrade(url)
    click.echo("database is at the latest revision", err=True)


def _upgrade_and_admin(settings: Any, *, create_admin: bool) -> None:
    from persistence.migrate import upgrade

    upgrade()
    if not create_admin:
        return
    from persistence.auth import ensure_admin
    from persistence.db import session_scope

    with session_scope() as s:
        key = ensure_admin(s, settings)
    if key:
        click.echo(
            f"saft: created user 'admin'; its API key is in {settings.api_key_admin_file}",
            err=True,
        )
