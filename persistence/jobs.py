"""Job and reconstruction state machine: every state change is one guarded UPDATE.

States: queued -> running -> succeeded | failed | cancelled; queued -> cancelled; and
running -> queued | failed when the reconciler finds a dead worker. Each transition is an
``UPDATE ... WHERE state = <expected>`` so concurrent actors (two workers, a worker and the
reconciler, a worker and a cancel request) can never both win. A worker's ``worker`` string
is unique per claim, so a worker that lost its claim (declared dead, job requeued) can no
longer write to the job. Functions do not commit unless they say so: callers commit at once.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence.tables import Iteration, Job, JobEvent, Reconstruction, User, utcnow
from saft_core.errors import InvalidParameterError
from saft_core.params import SaftParams
from saft_core.record import event_data
from saft_core.states import FINAL_STATES

Task = TypeVar("Task", Job, Reconstruction)


def software_version() -> str:
    try:
        return metadata.version("saft-service")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def worker_name() -> str:
    """``host:pid:token``, unique per claim so a stale claim holder is locked out."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def add_event(session: Session, job_id: str, kind: str, data: dict[str, Any]) -> JobEvent:
    """Append to the job's event log (the SSE source); committed with the caller's change."""
    ev = JobEvent(job_id=job_id, kind=kind, data=data)
    session.add(ev)
    return ev


# ---- jobs -------------------------------------------------------------------------------


def create_job(
    session: Session,
    owner: User,
    *,
    lr_dataset_id: str,
    params: SaftParams | dict[str, Any],
    edge_dataset_id: str | None = None,
    smlm_dataset_id: str | None = None,
    sr_model: str = "default",
    den_model: str | None = "default",
    idempotency_key: str | None = None,
) -> Job:
    """Insert a queued job with frozen, validated params (does not send the message).

    With an ``idempotency_key`` already used by this owner, the existing job is returned
    unchanged (compare its fields to detect a conflicting retry). Flushes, does not commit.
    """
    p = params if isinstance(params, SaftParams) else SaftParams.from_dict(dict(params))
    frozen = p.validate().to_dict()
    if idempotency_key is not None:
        existing = find_idempotent(session, owner.id, idempotency_key)
        if existing is not None:
            return existing
    now = utcnow()
    job = Job(
        owner_id=owner.id,
        mode=frozen["mode"],
        lr_dataset_id=lr_dataset_id,
        edge_dataset_id=edge_dataset_id,
        smlm_dataset_id=smlm_dataset_id,
        sr_model=sr_model,
        den_model=den_model,
        params=frozen,
        state="queued",
        progress=0.0,
        iterations_done=0,
        attempts=0,
        cancel_requested=False,
        idempotency_key=idempotency_key,
        software_version=software_version(),
        created_at=now,
        enqueued_at=now,  # the caller sends the message right after commit
    )
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # A concurrent request with the same idempotency key won the insert.
        if idempotency_key is None:
            raise
        existing = find_idempotent(session, owner.id, idempotency_key)
        if existing is None:
            raise
        return existing
    add_event(session, job.id, "state", {"state": "queued"})
    session.flush()
    return job


def find_idempotent(session: Session, owner_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == key))


def claim_job(session: Session, job_id: str, worker: str) -> bool:
    """Atomically take a queued job (``UPDATE ... WHERE state='queued'``); exactly one wins.

    The caller must commit at once (the row lock is held until then on PostgreSQL).
    """
    won = _transition(
        session,
        Job,
        job_id,
        ["queued"],
        "running",
        extra=[Job.cancel_requested.is_(False)],
        worker=worker,
        heartbeat_at=utcnow(),
        started_at=func.coalesce(Job.started_at, utcnow()),
        error=None,
    )
    if won:
        add_event(session, job_id, "state", {"state": "running", "worker": worker})
    return won


def heartbeat(session: Session, cls: type[Task], task_id: str, worker: str) -> bool:
    """Refresh ``heartbeat_at``; False if this worker no longer owns the row (stop work)."""
    res = session.execute(
        update(cls)
        .where(cls.id == task_id, cls.state == "running", cls.worker == worker)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1


def update_progress(
    session: Session, cls: type[Task], task_id: str, worker: str, progress: float
) -> bool:
    """Store progress (0..1) and heartbeat; False if the claim was lost."""
    res = session.execute(
        update(cls)
        .where(cls.id == task_id, cls.state == "running", cls.worker == worker)
        .values(progress=min(max(float(progress), 0.0), 1.0), heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1


def set_device(session: Session, cls: type[Task], task_id: str, worker: str, device: str) -> None:
    session.execute(
        update(cls)
        .where(cls.id == task_id, cls.worker == worker)
        .values(device=device[:255])
        .execution_options(synchronize_session=False)
    )


def cancel_requested(session: Session, cls: type[Task], task_id: str) -> bool:
    return bool(session.scalar(select(cls.cancel_requested).where(cls.id == task_id)))


def record_iteration(
    session: Session,
    job_id: str,
    worker: str,
    *,
    iteration: int,
    losses: dict[str, Any],
    rse: float | None,
    rsp: float | None,
    resolution: float | None,
    seconds: float,
    checkpoint_path: str,
    preview_png_path: str,
    preview_tif_path: str,
    progress: float,
    sigma_used: float | None,
    frc_resolution: float | None = None,
    haze_ratio: float | None = None,
) -> bool:
    """Iteration row + job counters + event, for one commit; False if the claim was lost."""
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "running", Job.worker == worker)
        .values(
            iterations_done=iteration,
            progress=min(max(float(progress), 0.0), 1.0),
            sigma_used=sigma_used,
            heartbeat_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        return False
    # A resumed run may redo an iteration whose files were written but never committed.
    session.execute(
        delete(Iteration).where(Iteration.job_id == job_id, Iteration.iteration == iteration)
    )
    session.add(
        Iteration(
            job_id=job_id,
            iteration=iteration,
            losses=losses,
            rse=rse,
            rsp=rsp,
            resolution=resolution,
            frc_resolution=frc_resolution,
            haze_ratio=haze_ratio,
            seconds=seconds,
            checkpoint_path=checkpoint_path,
            preview_png_path=preview_png_path,
            preview_tif_path=preview_tif_path,
        )
    )
    metrics = {
        "rse": rse,
        "rsp": rsp,
        "resolution": resolution,
        "frc_resolution": frc_resolution,
        "haze_ratio": haze_ratio,
        "seconds": seconds,
    }
    add_event(
        session, job_id, "iteration", event_data(iteration, losses, metrics, sigma=sigma_used)
    )
    return True


def last_iteration(session: Session, job_id: str) -> Iteration | None:
    """The newest committed iteration: where a resumed job continues from."""
    return session.scalar(
        select(Iteration)
        .where(Iteration.job_id == job_id)
        .order_by(Iteration.iteration.desc())
        .limit(1)
    )


def finish_job(
    session: Session,
    job_id: str,
    state: str,
    *,
    worker: str | None = None,
    error: str | None = None,
    recommended_iteration: int | None = None,
) -> bool:
    """running -> succeeded|failed|cancelled (guarded by ``worker`` when given)."""
    if state not in FINAL_STATES:
        raise ValueError(f"not a final state: {state}")
    values: dict[str, Any] = {"finished_at": utcnow(), "error": error}
    if state == "succeeded":
        values.update(progress=1.0, recommended_iteration=recommended_iteration)
    extra = [Job.worker == worker] if worker is not None else []
    won = _transition(session, Job, job_id, ["running"], state, extra=extra, **values)
    if won:
        data: dict[str, Any] = {"state": state}
        if error:
            data["error"] = error
        if recommended_iteration is not None:
            data["recommended_iteration"] = recommended_iteration
        add_event(session, job_id, "state", data)
    return won


def request_cancel(session: Session, job: Job) -> Job:
    """queued -> cancelled at once; running -> cancel_requested (the worker stops between
    steps); finished jobs are left alone. Returns the refreshed job; caller commits."""
    if _transition(
        session,
        Job,
        job.id,
        ["queued"],
        "cancelled",
        cancel_requested=True,
        finished_at=utcnow(),
    ):
        add_event(session, job.id, "state", {"state": "cancelled"})
    else:
        res = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == "running", Job.cancel_requested.is_(False))
            .values(cancel_requested=True)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount:
            add_event(session, job.id, "log", {"message": "cancel requested"})
    session.flush()
    session.refresh(job)
    return job


def recover_stale(
    session: Session,
    cls: type[Task],
    task_id: str,
    worker: str | None,
    cutoff: datetime,
    max_attempts: int,
) -> str | None:
    """Dead worker: requeue with attempts+1, or fail once attempts reach ``max_attempts``.

    Guarded by the stale heartbeat and the old worker, so a heartbeat that lands first wins.
    Returns the new state, or None if the row changed meanwhile.
    """
    row = session.get(cls, task_id, populate_existing=True)
    if row is None or row.state != "running":
        return None
    attempts = row.attempts + 1
    guard = [
        cls.worker.is_(None) if worker is None else cls.worker == worker,
        cls.attempts == row.attempts,
        (cls.heartbeat_at.is_(None)) | (cls.heartbeat_at < cutoff),
    ]
    if row.cancel_requested:
        state, values = "cancelled", {"finished_at": utcnow(), "error": None}
    elif attempts >= max_attempts:
        state = "failed"
        values = {
            "finished_at": utcnow(),
            "error": f"worker lost {attempts} times (max_attempts={max_attempts})",
        }
    else:
        state, values = "queued", {"worker": None, "enqueued_at": utcnow()}
    values["attempts"] = attempts
    if not _transition(session, cls, task_id, ["running"], state, extra=guard, **values):
        return None
    _task_event(
        session, cls, task_id, {"state": state, "attempts": attempts, "reason": "worker lost"}
    )
    return state


# ---- reconstructions -------------------------------------------------------------------


def create_reconstruction(
    session: Session, owner: User, job: Job, iteration: int, *, video: bool = True
) -> Reconstruction:
    """Queue applying ``job``'s checkpoint of ``iteration`` to its LR stack."""
    if job.state != "succeeded" and iteration > job.iterations_done:
        raise InvalidParameterError(
            f"iteration {iteration} of job {job.id} is not finished", field="iteration"
        )
    exists = session.scalar(
        select(Iteration.id).where(Iteration.job_id == job.id, Iteration.iteration == iteration)
    )
    if exists is None:
        raise InvalidParameterError(f"job {job.id} has no iteration {iteration}", field="iteration")
    now = utcnow()
    rec = Reconstruction(
        owner_id=owner.id,
        job_id=job.id,
        iteration=iteration,
        state="queued",
        progress=0.0,
        video=video,
        attempts=0,
        cancel_requested=False,
        created_at=now,
        enqueued_at=now,
    )
    session.add(rec)
    session.flush()
    return rec


def claim_reconstruction(session: Session, recon_id: str, worker: str) -> bool:
    """Atomic queued -> running, as ``claim_job``."""
    won = _transition(
        session,
        Reconstruction,
        recon_id,
        ["queued"],
        "running",
        extra=[Reconstruction.cancel_requested.is_(False)],
        worker=worker,
        heartbeat_at=utcnow(),
        started_at=func.coalesce(Reconstruction.started_at, utcnow()),
        error=None,
    )
    return won


def finish_reconstruction(
    session: Session,
    recon_id: str,
    state: str,
    *,
    worker: str | None = None,
    error: str | None = None,
    tiff_path: str | None = None,
    mp4_path: str | None = None,
) -> bool:
    """running -> final state, storing the artifact paths on success."""
    values: dict[str, Any] = {"finished_at": utcnow(), "error": error}
    if state == "succeeded":
        values.update(progress=1.0, tiff_path=tiff_path, mp4_path=mp4_path)
    extra = [Reconstruction.worker == worker] if worker is not None else []
    won = _transition(session, Reconstruction, recon_id, ["running"], state, extra=extra, **values)
    return won


def request_cancel_reconstruction(session: Session, rec: Reconstruction) -> Reconstruction:
    """As ``request_cancel`` for a reconstruction."""
    if not _transition(
        session,
        Reconstruction,
        rec.id,
        ["queued"],
        "cancelled",
        cancel_requested=True,
        finished_at=utcnow(),
    ):
        session.execute(
            update(Reconstruction)
            .where(Reconstruction.id == rec.id, Reconstruction.state == "running")
            .values(cancel_requested=True)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    session.refresh(rec)
    return rec


# ---- helpers ----------------------------------------------------------------------------


def stale_cutoff(stale_after_s: float) -> datetime:
    return utcnow() - timedelta(seconds=stale_after_s)


def _transition(
    session: Session,
    cls: type[Task],
    task_id: str,
    from_states: list[str],
    to_state: str,
    *,
    extra: list[ColumnElement[bool]] | None = None,
    **values: Any,
) -> bool:
    res = session.execute(
        update(cls)
        .where(cls.id == task_id, cls.state.in_(from_states), *(extra or []))
        .values(state=to_state, **values)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount == 1


def _task_event(session: Session, cls: type[Task], task_id: str, data: dict[str, Any]) -> None:
    """Only jobs have an event stream; reconstructions are polled."""
    if cls is Job:
        add_event(session, task_id, "state", data)
