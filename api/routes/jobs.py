"""/v1/jobs: submit, list, inspect, cancel fine-tuning jobs and follow their events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep, StorageDep, UserDep, owned, root_path
from api.job_checks import check_job_request
from api.pagination import PageDep, fetch_page, make_page
from api.problems import Problem, invalid, problem_responses
from api.schemas import (
    IterationList,
    JobCreate,
    JobOut,
    JobState,
    Page,
    iteration_out,
    job_out,
)
from api.sse import SSEConfig, job_event_stream
from persistence.joblog import read_job_log
from persistence.jobs import create_job, find_idempotent, request_cancel
from persistence.tables import Iteration, Job
from saft_core.states import DONE_STATES
from worker import queue as job_queue

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401))

JobId = Annotated[str, Path(description="job id")]
IDEMPOTENCY_HELP = (
    "Any string up to 255 characters. Retrying with the same key returns the job created "
    "by the first request (202 again, header Idempotent-Replayed: true); the same key with "
    "a different request is a 409."
)


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Submit a fine-tuning job",
    responses=problem_responses(409, 422),
)
def submit_job(
    body: JobCreate,
    request: Request,
    response: Response,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, description=IDEMPOTENCY_HELP),
    ] = None,
) -> JobOut:
    """Validate everything, insert the queued row, commit, then send the broker message."""
    checked = check_job_request(session, user, body)
    job = find_idempotent(session, user.id, idempotency_key) if idempotency_key else None
    replayed = job is not None
    if job is None:
        job = create_job(
            session,
            user,
            lr_dataset_id=checked.lr_dataset_id,
            params=checked.params,
            edge_dataset_id=checked.edge_dataset_id,
            smlm_dataset_id=checked.smlm_dataset_id,
            sr_model=checked.sr_model,
            den_model=checked.den_model,
            idempotency_key=idempotency_key,
        )
    if not checked.same_request_as(job):  # a replay, or lost a race with the same key
        session.rollback()
        raise Problem(
            409,
            f"Idempotency-Key {idempotency_key!r} was already used for a different request "
            f"(job {job.id})",
            slug="idempotency-conflict",
        )
    session.commit()
    if not replayed:
        # After the commit: a worker that gets the message must find the row. If the
        # broker is down the job stays queued and the reconciler re-sends it.
        job_queue.enqueue_job(job.id, settings)
    out = job_out(job, root_path(request))
    response.headers["Location"] = out.links.self
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return out


@router.get("", response_model=Page[JobOut], summary="List your jobs")
def list_jobs(
    request: Request,
    user: UserDep,
    session: SessionDep,
    page: PageDep,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
):
    """Newest first."""
    stmt = select(Job).where(Job.owner_id == user.id)
    if state is not None:
        stmt = stmt.where(Job.state == state)
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc())
    rows, total = fetch_page(session, stmt, page)
    root = root_path(request)
    return make_page(request, [job_out(j, root) for j in rows], total, page)


@router.get(
    "/{job_id}", response_model=JobOut, summary="Show a job", responses=problem_responses(404)
)
def get_job(job_id: JobId, request: Request, user: UserDep, session: SessionDep) -> JobOut:
    return job_out(owned(session, Job, job_id, user, "job"), root_path(request))


@router.get(
    "/{job_id}/iterations",
    response_model=IterationList,
    summary="Finished iterations with losses, quality metrics and artifact links",
    responses=problem_responses(404),
)
def list_iterations(
    job_id: JobId, request: Request, user: UserDep, session: SessionDep
) -> IterationList:
    """Iteration 0 is the pretrained network, for comparison."""
    job = owned(session, Job, job_id, user, "job")
    rows = session.scalars(
        select(Iteration).where(Iteration.job_id == job.id).order_by(Iteration.iteration)
    ).all()
    root = root_path(request)
    return IterationList(
        job_id=job.id,
        state=job.state,  # type: ignore[arg-type]
        recommended_iteration=job.recommended_iteration,
        items=[iteration_out(it, job, root) for it in rows],
    )


@router.get(
    "/{job_id}/log",
    response_class=PlainTextResponse,
    summary="The job's worker log (JSON lines)",
    responses={
        200: {
            "description": "one JSON object per line (time, level, logger, job_id, message); "
            "empty until the job starts",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problem_responses(404),
    },
)
def job_log(
    job_id: JobId, user: UserDep, session: SessionDep, storage: StorageDep
) -> PlainTextResponse:
    job = owned(session, Job, job_id, user, "job")
    return PlainTextResponse(read_job_log(storage.job_dir(job.id)))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job (idempotent)",
    responses={
        202: {"description": "running: the worker stops at its next step", "model": JobOut},
        **problem_responses(404, 409),
    },
)
def cancel_job(
    job_id: JobId, request: Request, response: Response, user: UserDep, session: SessionDep
) -> JobOut:
    """Queued -> cancelled now (200); running -> stops between steps (202); final -> 409."""
    job = owned(session, Job, job_id, user, "job")
    if job.state in DONE_STATES:
        raise Problem(409, f"job {job.id} already {job.state}", slug="job-finished")
    job = request_cancel(session, job)
    session.commit()
    if job.state in DONE_STATES:  # finished while we asked
        raise Problem(409, f"job {job.id} already {job.state}", slug="job-finished")
    response.status_code = 200 if job.state == "cancelled" else 202
    return job_out(job, root_path(request))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    summary="Progress as server-sent events (resumable with Last-Event-ID)",
    responses={
        200: {
            "description": "text/event-stream of `state`, `progress`, `iteration` and `log` "
            "events; the id is the event's sequence number; the stream ends after the "
            "final state",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(404, 422),
    },
)
def job_events(
    job_id: JobId,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="resume after this event id")
    ] = None,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            description="resume after this event id (for clients that "
            "cannot set headers); Last-Event-ID wins",
        ),
    ] = None,
) -> StreamingResponse:
    job = owned(session, Job, job_id, user, "job")
    start = after or 0
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise invalid("Last-Event-ID", "Last-Event-ID must be an event id (an integer)")
        start = int(last_event_id)
    config: SSEConfig = getattr(request.app.state, "sse", None) or SSEConfig()
    return StreamingResponse(
        job_event_stream(settings, job.id, start, config),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
