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
import re
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


# ---- one worker per GPU ------------------------------------------------------------------

_DEVICE = re.compile(r"^(cpu|cuda(?::(\d+))?)$")
COUNT_GPUS = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"


def check_device(device: str, visible: int) -> str:
    """``--device`` normalised ('cuda' -> 'cuda:0'); InvalidParameterError if bad or absent.

    ``visible`` is the number of GPUs this process can see (after CUDA_VISIBLE_DEVICES).
    """
    from saft_core.errors import InvalidParameterError

    match = _DEVICE.match(device.strip().lower())
    if match is None:
        raise InvalidParameterError(
            f"--device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}", field="device"
        )
    if match.group(1) == "cpu":
        return "cpu"
    index = int(match.group(2) or 0)
    if index >= visible:
        seen = f"{visible} GPU(s) visible" if visible else "no CUDA GPU is visible"
        raise InvalidParameterError(f"--device {device}: {seen}", field="device")
    return f"cuda:{index}"


def worker_devices(gpus: str, visible: int) -> list[str]:
    """``--gpus all|0,1`` -> the device of each worker to start, one per GPU.

    'all' with no GPU visible falls back to one CPU worker (``["cpu"]``); listed indices
    must exist and be distinct (two workers never share a GPU).
    """
    from saft_core.errors import InvalidParameterError

    spec = gpus.strip().lower()
    if spec == "all":
        return [f"cuda:{i}" for i in range(visible)] or ["cpu"]
    parts = [p.strip() for p in spec.split(",")]
    if not all(p.isdigit() for p in parts):
        raise InvalidParameterError(
            f"--gpus must be 'all' or GPU indices such as 0,1; got {gpus!r}", field="gpus"
        )
    indices = [int(p) for p in parts]
    for i in indices:
        if indices.count(i) > 1:
            raise InvalidParameterError(
                f"--gpus lists GPU {i} twice; jobs never share a GPU", field="gpus"
            )
        if i >= visible:
            seen = f"{visible} GPU(s) visible" if visible else "no CUDA GPU is visible"
            raise InvalidParameterError(f"--gpus {gpus}: no GPU {i} ({seen})", field="gpus")
    return [f"cuda:{i}" for i in indices]


def pin_env(device: str, cuda_visible_devices: str | None) -> dict[str, str]:
    """Environment that pins a worker to ``device``: it sees only that GPU, as cuda:0.

    Indices count the GPUs this process sees, so under ``CUDA_VISIBLE_DEVICES=2,3``
    ``cuda:1`` is physical GPU 3. Pinning by visibility (not ``SAFT_DEVICE=cuda:N``) keeps
    any library that defaults to GPU 0 off the other workers' GPUs.
    """
    if device == "cpu":
        return {"SAFT_DEVICE": "cpu"}
    index = int(device.split(":")[1])
    listed = [v.strip() for v in (cuda_visible_devices or "").split(",") if v.strip()]
    if cuda_visible_devices is not None and index >= len(listed):
        raise ValueError(f"{device} is not in CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}")
    return {
        "CUDA_VISIBLE_DEVICES": listed[index] if listed else str(index),
        "SAFT_DEVICE": "cuda:0",
    }


def count_gpus() -> int:
    """GPUs visible to a worker started from here, counted in a child process so that this
    process (the API of ``saft serve``) never imports torch or initialises CUDA."""
    from saft_core.errors import SaftError

    done = subprocess.run(
        [sys.executable, "-c", COUNT_GPUS], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise SaftError(f"cannot count the GPUs (torch failed: {last})", field="device")
    return int(done.stdout.strip().splitlines()[-1])


# ---- serve ------------------------------------------------------------------------------


@click.command()
@_data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="API listen address.")
@click.option("--port", default=8000, show_default=True, type=int, help="API port.")
@click.option(
    "--workers",
    "n_workers",
    default=None,
    type=click.IntRange(min=0),
    help="Local worker processes on the default device (default 1; 0: API only, workers "
    "run elsewhere).",
)
@click.option(
    "--gpus",
    default=None,
    help="One worker per GPU: 'all' or indices such as 0,1 (with no GPU, 'all' starts one "
    "CPU worker). Each worker runs one job at a time on its own GPU.",
)
def serve(
    data_dir: Path | None, host: str, port: int, n_workers: int | None, gpus: str | None
) -> None:
    """Run the API, local worker(s) and (unless SAFT_BROKER_URL is set) an embedded Redis."""
    from saft_core.errors import InvalidParameterError

    if gpus is not None and n_workers is not None:
        raise InvalidParameterError("give --gpus or --workers, not both", field="gpus")
    envs: list[dict[str, str]] = [{}] * (1 if n_workers is None else n_workers)
    if gpus is not None:
        devices = worker_devices(gpus, count_gpus())
        if devices == ["cpu"]:
            click.echo("saft: --gpus all: no GPU found; starting one CPU worker", err=True)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        envs = [pin_env(d, visible) for d in devices]
        for d, env in zip(devices, envs, strict=True):
            click.echo(f"saft: worker on {d} ({_describe_pin(env)})", err=True)
    settings = _settings(data_dir)
    _upgrade_and_admin(settings, create_admin=True)
    broker = None
    if settings.embedded_broker:
        from worker.embedded import EmbeddedRedis

        broker = EmbeddedRedis(settings.redis_socket, settings.data_dir / "redis").start()
        click.echo(f"saft: embedded Redis on {settings.redis_socket}", err=True)
    supervisors = [
        _WorkerSupervisor(settings.queue, f"saft{i}-{os.getpid()}@%h", env).start()
        for i, env in enumerate(envs)
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

    def __init__(self, queue: str, name: str, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **(env or {})}  # e.g. the GPU this worker is pinned to
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

        self.proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=die_with_parent)

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
@click.option(
    "--device",
    default=None,
    help="Pin this worker to one device: cpu or cuda:N (N counts the visible GPUs). "
    "Run one worker per GPU.",
)
@click.option(
    "--gpu",
    default=None,
    help="Sets CUDA_VISIBLE_DEVICES as given (a physical GPU id); prefer --device.",
)
@click.option("--queue", default=None, help="Queue to consume (default: $SAFT_QUEUE or gpu).")
@click.option("--name", default=None, help="Celery node name (default: saft-<pid>@<host>).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(
    data_dir: Path | None,
    device: str | None,
    gpu: str | None,
    queue: str | None,
    name: str | None,
    loglevel: str,
) -> None:
    """Run one Celery worker (one task at a time) against the configured broker and database."""
    from saft_core.errors import InvalidParameterError

    if gpu is not None and device is not None:
        raise InvalidParameterError("give --device or --gpu, not both", field="device")
    if device is not None:
        device = check_device(device, visible=sys.maxsize)  # the spelling, before counting
        if device != "cpu":  # counted in a child: this process must not touch CUDA before the pin
            device = check_device(device, count_gpus())
        os.environ.update(pin_env(device, os.environ.get("CUDA_VISIBLE_DEVICES")))
        click.echo(f"saft: worker on {device} ({_describe_pin(os.environ)})", err=True)
    if gpu is not None:
        # Before anything imports torch: each worker sees exactly one GPU as cuda:0.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    from persistence.settings import get_settings

    get_settings.cache_clear()  # SAFT_DEVICE may have been set just now
    settings = _settings(data_dir)
    _upgrade_and_admin(settings, create_admin=False)
    from worker.celery_app import app

    app.worker_main(
        worker_argv(queue or settings.queue, name or f"saft-{os.getpid()}@%h", loglevel)
    )


def _describe_pin(env: Any) -> str:
    visible = env.get("CUDA_VISIBLE_DEVICES")
    pinned = f", CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
    return f"SAFT_DEVICE={env.get('SAFT_DEVICE')}{pinned}"


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
