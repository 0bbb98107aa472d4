"""Runs one job or reconstruction: the only place where the service calls the science.

A run claims its row, heartbeats it from a thread, commits every finished iteration at once
(files first, then one transaction: iteration row, job counters, event), and resumes from the
last committed iteration when a previous worker died. Errors end the run with a message fit
for users; tracebacks go to the worker log only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import select

from persistence.db import session_scope
from persistence.joblog import JOB_LOG, job_log
from persistence.jobs import (
    Task,
    add_event,
    cancel_requested,
    claim_job,
    claim_reconstruction,
    finish_job,
    finish_reconstruction,
    last_iteration,
    record_iteration,
    set_device,
    update_progress,
    worker_name,
)
from persistence.settings import Settings, get_settings
from persistence.storage import Storage
from persistence.tables import Dataset, Iteration, Job, ModelFile, Reconstruction
from saft_core.capabilities import cached
from saft_core.errors import Cancelled, SaftError
from saft_core.params import SaftParams
from worker.heartbeat import Heartbeat

log = logging.getLogger(__name__)
T = TypeVar("T")

CANCEL_POLL_S = 1.0  # should_cancel reads the database at most this often
PROGRESS_EVERY_S = 1.0  # progress rows/events at most this often


class ClaimLost(Exception):
    """The row was taken from us (declared dead and requeued): stop, write nothing."""


@dataclass
class Control:
    """The engine's ``should_cancel``: a cancel request, a lost claim or the time limit."""

    cls: type[Task]
    task_id: str
    heartbeat: Heartbeat
    deadline: float  # time.monotonic() value
    reason: str | None = None  # "cancel" | "lost" | "timeout"
    _last_poll: float = field(default=-math.inf)

    def __call__(self) -> bool:
        if self.reason is not None:
            return True
        now = time.monotonic()
        if self.heartbeat.lost.is_set():
            self.reason = "lost"
        elif now > self.deadline:
            self.reason = "timeout"
        elif now - self._last_poll >= CANCEL_POLL_S:
            self._last_poll = now
            with session_scope() as s:
                if cancel_requested(s, self.cls, self.task_id):
                    self.reason = "cancel"
        return self.reason is not None


class Throttle:
    """True at most once per ``every`` seconds."""

    def __init__(self, every: float) -> None:
        self.every, self.last = every, -math.inf

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            return True
        return False


# ---- fine-tuning jobs -------------------------------------------------------------------


def run_job(job_id: str, settings: Settings | None = None) -> str:
    """Claim and run one job; returns the outcome (a final state, "skipped" or "lost")."""
    settings = settings or get_settings()
    worker = worker_name()
    not_queued = "job %s is not queued (already taken, cancelled or gone)"
    if not _claim(claim_job, job_id, worker, not_queued):
        return "skipped"
    with job_log(job_id, Storage(settings.data_dir).job_dir(job_id) / JOB_LOG):
        log.info("job %s claimed by %s", job_id, worker)
        ran = _run_claimed(Job, job_id, worker, settings, _finetune)
        if isinstance(ran, str):
            return ran
        with session_scope() as s:
            finish_job(s, job_id, "succeeded", worker=worker, recommended_iteration=ran.value)
        log.info("job %s succeeded", job_id)
        return "succeeded"


def _claim(claim: Callable[[Any, str, str], bool], task_id: str, worker: str, why: str) -> bool:
    """Claim the queued row for this worker; if it is not queued, log ``why`` and skip."""
    with session_scope() as s:
        if claim(s, task_id, worker):
            return True
    log.info(why + ": skipped", task_id)
    return False


@dataclass
class _Ran(Generic[T]):
    """What a claimed run's work returned (an outcome string means it did not succeed)."""

    value: T


def _run_claimed(
    cls: type[Task],
    task_id: str,
    worker: str,
    settings: Settings,
    work: Callable[[str, str, Settings, Control], T],
) -> _Ran[T] | str:
    """Run ``work`` under the claim's heartbeat and time limit; a stop or failure is recorded
    on the row and its outcome returned."""
    with Heartbeat(cls, task_id, worker, settings.heartbeat_s) as hb:
        control = Control(cls, task_id, hb, time.monotonic() + settings.job_time_limit_s)
        try:
            return _Ran(work(task_id, worker, settings, control))
        except (Cancelled, ClaimLost) as exc:
            return _stopped(cls, task_id, worker, control, settings, exc)
        except SaftError as exc:
            return _fail(cls, task_id, worker, exc.message)
        except Exception as exc:
            log.exception("%s %s failed", cls.__name__.lower(), task_id)
            return _fail(cls, task_id, worker, _internal(exc))


def _finetune(job_id: str, worker: str, settings: Settings, control: Control) -> int | None:
    from saft_core.device import describe_device, select_device
    from saft_core.finetune import IterationResult
    from saft_core.io import read_stack
    from saft_core.networks import load_model
    from saft_core.rundir import RunDir, run_into

    storage = Storage(settings.data_dir)
    with session_scope() as s:
        job = s.get_one(Job, job_id)
        lr_path = _dataset_path(s, storage, job.lr_dataset_id)
        edge_path = _dataset_path(s, storage, job.edge_dataset_id)
        smlm_path = _dataset_path(s, storage, job.smlm_dataset_id)
        sr_spec = _model_spec(s, storage, job.sr_model, "sr")
        den_spec = _model_spec(s, storage, job.den_model, "den")
        # The database, not the directory, says which iterations exist (files may be newer).
        last = last_iteration(s, job_id)
        resume = last.iteration if last is not None else False
        params = SaftParams.from_dict(dict(job.params))
        attempts = job.attempts

    device = select_device(settings.device)
    compute_metrics = _metrics_available(job_id, worker, settings)
    with session_scope() as s:
        set_device(s, Job, job_id, worker, describe_device(device))
        if last is not None:
            add_event(s, job_id, "log", {"message": f"resuming after iteration {resume}"})
    stack = read_stack(lr_path)
    edges = read_stack(edge_path).data if edge_path else None
    smlm = read_stack(smlm_path).data if smlm_path else None
    sr_model = load_model(sr_spec, "sr")
    den_model = load_model(den_spec, "den") if den_spec and params.mode == "saft" else None

    job_dir = storage.job_dir(job_id)
    files = RunDir(job_dir)  # paths only: run_into writes the files
    n = params.n_iterations

    def on_iteration(result: IterationResult) -> None:
        """After the iteration's files are written: one transaction, or stop when not ours."""
        k = result.iteration
        with session_scope() as s:
            ok = record_iteration(
                s,
                job_id,
                worker,
                iteration=k,
                losses=_clean(result.losses),
                rse=_num(result.rse),
                rsp=_num(result.rsp),
                resolution=_num(result.resolution),
                frc_resolution=_num(result.frc_resolution),
                haze_ratio=_num(result.haze_ratio),
                seconds=float(result.seconds),
                checkpoint_path=storage.relative(files.checkpoint(k)),
                preview_png_path=storage.relative(files.preview_png(k)),
                preview_tif_path=storage.relative(files.preview_tif(k)),
                progress=k / n,
                sigma_used=_num(result.sigma),
            )
            if not ok:
                raise ClaimLost(job_id)
        log.info("job %s: iteration %d committed", job_id, k)

    progress_due = Throttle(PROGRESS_EVERY_S)

    def on_progress(steps: int, total: int, info: dict[str, Any]) -> None:
        if not progress_due() or total <= 0:
            return
        p = steps / total
        with session_scope() as s:
            if not update_progress(s, Job, job_id, worker, p):
                raise ClaimLost(job_id)
            add_event(s, job_id, "progress", _clean({"progress": round(p, 4), **info}))

    summary = run_into(
        job_dir,
        stack.data,
        edges,
        params,
        sr_model=sr_model,
        den_model=den_model,
        smlm=smlm,
        device=device,
        resume=resume,
        on_iteration=on_iteration,
        on_progress=on_progress,
        should_cancel=control,
        compute_metrics=compute_metrics,
        pixel_size=stack.pixel_size,
        run_info={"job_id": job_id, "attempts": attempts + 1, "worker": worker},
    )
    return summary.recommended_iteration


def _metrics_available(job_id: str, worker: str, settings: Settings) -> bool:
    """Whether this worker can compute the artifact metrics (nanopyx).

    Missing metrics do not fail a job: they are recorded once as a note on the job (shown
    with it) and logged once, instead of a traceback per iteration.
    """
    caps = cached(settings.device)
    if not caps.metrics.available:
        _add_note(Job, job_id, worker, f"metrics unavailable: {caps.metrics.reason}")
    return caps.metrics.available


def _add_note(cls: type[Task], task_id: str, worker: str, note: str) -> None:
    """Record what a run could not do on its row (once) and in its log (one line)."""
    log.warning("%s %s: %s", cls.__name__.lower(), task_id, note)
    with session_scope() as s:
        row = s.get_one(cls, task_id)
        if row.worker != worker:
            raise ClaimLost(task_id)
        if note in (row.notes or []):  # a resumed run
            return
        row.notes = [*(row.notes or []), note]
        if cls is Job:
            add_event(s, task_id, "log", {"message": note})


# ---- reconstructions --------------------------------------------------------------------


def run_reconstruction(recon_id: str, settings: Settings | None = None) -> str:
    """Claim and run one reconstruction; returns the outcome as ``run_job``."""
    settings = settings or get_settings()
    worker = worker_name()
    if not _claim(claim_reconstruction, recon_id, worker, "reconstruction %s is not queued"):
        return "skipped"
    ran = _run_claimed(Reconstruction, recon_id, worker, settings, _reconstruct)
    if isinstance(ran, str):
        return ran
    tiff, mp4 = ran.value
    with session_scope() as s:
        finish_reconstruction(s, recon_id, "succeeded", worker=worker, tiff_path=tiff, mp4_path=mp4)
    return "succeeded"


def _reconstruct(
    recon_id: str, worker: str, settings: Settings, control: Control
) -> tuple[str, str | None]:
    from saft_core.device import describe_device, select_device
    from saft_core.io import read_stack
    from saft_core.networks import load_model
    from saft_core.reconstruct import reconstruct

    storage = Storage(settings.data_dir)
    with session_scope() as s:
        rec = s.get_one(Reconstruction, recon_id)
        job = s.get_one(Job, rec.job_id)
        it = s.scalar(
            select(Iteration).where(
                Iteration.job_id == job.id, Iteration.iteration == rec.iteration
            )
        )
        if it is None:
            raise SaftError(f"job {job.id} has no iteration {rec.iteration}", field="iteration")
        lr_path = _dataset_path(s, storage, job.lr_dataset_id)
        edge_path = _dataset_path(s, storage, job.edge_dataset_id)
        checkpoint = storage.resolve(it.checkpoint_path)
        video = rec.video

    device = select_device(settings.device)
    with session_scope() as s:
        set_device(s, Reconstruction, recon_id, worker, describe_device(device))
    lr = read_stack(lr_path)
    edges = read_stack(edge_path).data if edge_path else None
    model = load_model(checkpoint, "sr")
    tiff = storage.reconstruction_tiff(recon_id)
    mp4 = storage.reconstruction_mp4(recon_id) if video else None
    caps = cached(settings.device)
    if edges is None and not caps.edges.available:
        raise SaftError(
            f"the job has no edge map and this worker cannot compute one: {caps.edges.reason}",
            field="edge_dataset",
        )
    if mp4 is not None and not caps.video.available:  # the TIFF is the result, the MP4 a view
        _add_note(Reconstruction, recon_id, worker, f"video unavailable: {caps.video.reason}")
        mp4 = None
    progress_due = Throttle(PROGRESS_EVERY_S)

    def on_progress(done: int, total: int) -> None:
        if progress_due() and total > 0:
            with session_scope() as s:
                if not update_progress(s, Reconstruction, recon_id, worker, done / total):
                    raise ClaimLost(recon_id)

    reconstruct(
        lr.data,
        edges,
        model,
        tiff,
        video=mp4,
        pixel_size=lr.pixel_size,
        device=device,
        on_progress=on_progress,
        should_cancel=control,
    )
    return storage.relative(tiff), storage.relative(mp4) if mp4 else None


# ---- shared -----------------------------------------------------------------------------


def _finish(cls: type[Task], task_id: str, state: str, worker: str, error: str | None) -> bool:
    with session_scope() as s:
        if cls is Job:
            return finish_job(s, task_id, state, worker=worker, error=error)
        return finish_reconstruction(s, task_id, state, worker=worker, error=error)


def _stopped(
    cls: type[Task],
    task_id: str,
    worker: str,
    control: Control,
    settings: Settings,
    exc: BaseException,
) -> str:
    if isinstance(exc, ClaimLost) or control.reason == "lost":
        log.warning("%s %s: claim lost; another worker owns it now", cls.__name__, task_id)
        return "lost"
    if control.reason == "timeout":
        return _fail(cls, task_id, worker, f"time limit of {settings.job_time_limit_s} s exceeded")
    _finish(cls, task_id, "cancelled", worker, None)
    log.info("%s %s cancelled", cls.__name__, task_id)
    return "cancelled"


def _fail(cls: type[Task], task_id: str, worker: str, message: str) -> str:
    _finish(cls, task_id, "failed", worker, message[:2000])
    log.info("%s %s failed: %s", cls.__name__, task_id, message)
    return "failed"


def _internal(exc: BaseException) -> str:
    """A short message for users; the traceback stays in the worker log."""
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller tile or stack"
    return f"internal error ({type(exc).__name__}); see the worker log"


def _dataset_path(s: Any, storage: Storage, dataset_id: str | None) -> Path | None:
    if dataset_id is None:
        return None
    ds = s.get(Dataset, dataset_id)
    if ds is None:
        raise SaftError(f"dataset {dataset_id} not found (deleted?)", field="dataset")
    return storage.resolve(ds.path)


def _model_spec(s: Any, storage: Storage, spec: str | None, kind: str) -> str | Path | None:
    """'default', None, or the file of an uploaded model (checked to be of ``kind``)."""
    if spec is None or spec == "default":
        return spec
    m = s.get(ModelFile, spec)
    if m is None:
        raise SaftError(f"{kind} model {spec} not found", field=f"{kind}_model")
    if m.kind != kind:
        raise SaftError(f"model {spec} is a {m.kind} model, not {kind}", field=f"{kind}_model")
    return storage.resolve(m.path)


def _num(v: Any) -> float | None:
    """JSON/SQL-safe float: NaN and inf become None (PostgreSQL JSON rejects NaN)."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    try:
        return _num(obj)
    except (TypeError, ValueError):
        return str(obj)
