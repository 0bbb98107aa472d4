"""Reconstructions: apply one iteration's checkpoint to a job's whole LR stack."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep, UserDep, owned, root_path
from api.pagination import PageDep, fetch_page, make_page
from api.problems import Problem, invalid, problem_responses
from api.schemas import JobState, Page, ReconstructionCreate, ReconstructionOut, reconstruction_out
from persistence.jobs import create_reconstruction, request_cancel_reconstruction
from persistence.tables import Job, Reconstruction
from persistence.workers import live_workers, missing_everywhere
from saft_core.states import DONE_STATES
from worker import queue as job_queue

router = APIRouter(tags=["reconstructions"], responses=problem_responses(401))

JobId = Annotated[str, Path(description="job id")]
ReconId = Annotated[str, Path(description="reconstruction id")]


@router.post(
    "/v1/jobs/{job_id}/reconstructions",
    status_code=202,
    response_model=ReconstructionOut,
    summary="Reconstruct the job's LR stack with the checkpoint of one iteration",
    responses=problem_responses(404, 422),
)
def submit_reconstruction(
    job_id: JobId,
    body: ReconstructionCreate,
    request: Request,
    response: Response,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ReconstructionOut:
    """The iteration must be finished (listed by /iterations); 422 naming ``iteration``.

    ``video: true`` is refused (422 naming ``video``) when workers are running and none of
    them can write MP4 (no ffmpeg); with no live worker the request is queued as usual.
    """
    job = owned(session, Job, job_id, user, "job")
    if body.video and (
        why := missing_everywhere(live_workers(session, settings.stale_after_s), "video")
    ):
        raise invalid("video", f"no running worker can write MP4 video ({why}): send video: false")
    rec = create_reconstruction(session, user, job, body.iteration, video=body.video)
    session.commit()
    job_queue.enqueue_reconstruction(rec.id, settings)
    out = reconstruction_out(rec, root_path(request))
    response.headers["Location"] = out.url
    return out


@router.get(
    "/v1/jobs/{job_id}/reconstructions",
    response_model=Page[ReconstructionOut],
    summary="Reconstructions of a job",
    responses=problem_responses(404),
)
def list_job_reconstructions(
    job_id: JobId, request: Request, user: UserDep, session: SessionDep, page: PageDep
):
    job = owned(session, Job, job_id, user, "job")
    stmt = (
        select(Reconstruction)
        .where(Reconstruction.job_id == job.id, Reconstruction.owner_id == user.id)
        .order_by(Reconstruction.created_at.desc(), Reconstruction.id.desc())
    )
    rows, total = fetch_page(session, stmt, page)
    root = root_path(request)
    return make_page(request, [reconstruction_out(r, root) for r in rows], total, page)


@router.get(
    "/v1/reconstructions",
    response_model=Page[ReconstructionOut],
    summary="List your reconstructions",
)
def list_reconstructions(
    request: Request,
    user: UserDep,
    session: SessionDep,
    page: PageDep,
    state: Annotated[JobState | None, Query(description="only in this state")] = None,
):
    stmt = select(Reconstruction).where(Reconstruction.owner_id == user.id)
    if state is not None:
        stmt = stmt.where(Reconstruction.state == state)
    stmt = stmt.order_by(Reconstruction.created_at.desc(), Reconstruction.id.desc())
    rows, total = fetch_page(session, stmt, page)
    root = root_path(request)
    return make_page(request, [reconstruction_out(r, root) for r in rows], total, page)


@router.get(
    "/v1/reconstructions/{recon_id}",
    response_model=ReconstructionOut,
    summary="Show a reconstruction (state, progress, download links)",
    responses=problem_responses(404),
)
def get_reconstruction(
    recon_id: ReconId, request: Request, user: UserDep, session: SessionDep
) -> ReconstructionOut:
    rec = owned(session, Reconstruction, recon_id, user, "reconstruction")
    return reconstruction_out(rec, root_path(request))


@router.post(
    "/v1/reconstructions/{recon_id}/cancel",
    response_model=ReconstructionOut,
    summary="Cancel a reconstruction (idempotent)",
    responses={
        202: {"description": "running: the worker stops at its next frame"},
        **problem_responses(404, 409),
    },
)
def cancel_reconstruction(
    recon_id: ReconId, request: Request, response: Response, user: UserDep, session: SessionDep
) -> ReconstructionOut:
    rec = owned(session, Reconstruction, recon_id, user, "reconstruction")
    if rec.state in DONE_STATES:
        raise Problem(409, f"reconstruction {rec.id} already {rec.state}", slug="job-finished")
    rec = request_cancel_reconstruction(session, rec)
    session.commit()
    if rec.state in DONE_STATES:
        raise Problem(409, f"reconstruction {rec.id} already {rec.state}", slug="job-finished")
    response.status_code = 200 if rec.state == "cancelled" else 202
    return reconstruction_out(rec, root_path(request))
