"""Artifact downloads: streamed from the data dir, with Range, owner-checked like the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import SessionDep, StorageDep, UserDep, owned
from api.problems import Problem, not_found, problem_responses
from api.ranges import file_response
from persistence.tables import Dataset, Iteration, Job, ModelFile, Reconstruction

router = APIRouter(tags=["artifacts"], responses=problem_responses(401, 404, 416))
F = TypeVar("F", bound=Callable[..., Any])

JobId = Annotated[str, Path(description="job id")]
ReconId = Annotated[str, Path(description="reconstruction id")]
K = Annotated[int, Path(ge=0, description="iteration number")]


def _binary(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": "the whole file", "content": {media_type: {}}},
        206: {"description": "the requested byte range(s)", "content": {media_type: {}}},
    }


def _download(path: str, **kwargs: Any) -> Callable[[F], F]:
    """GET (documented) and HEAD (same handler, not a second OpenAPI operation)."""

    def register(func: F) -> F:
        router.get(path, response_class=Response, **kwargs)(func)
        router.head(path, response_class=Response, include_in_schema=False)(func)
        return func

    return register


def _iteration(session: Any, job_id: str, k: int, user: Any) -> tuple[Job, Iteration]:
    job = owned(session, Job, job_id, user, "job")
    it = session.scalar(
        select(Iteration).where(Iteration.job_id == job.id, Iteration.iteration == k)
    )
    if it is None:
        raise not_found(f"iteration {k} of job", job.id)
    return job, it


@_download(
    "/v1/jobs/{job_id}/iterations/{k}/checkpoint",
    summary="The fine-tuned SR checkpoint after iteration k (.pth)",
    responses=_binary("application/octet-stream"),
)
def iteration_checkpoint(
    job_id: JobId, k: K, request: Request, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    job, it = _iteration(session, job_id, k, user)
    return file_response(
        request,
        storage.resolve(it.checkpoint_path),
        download_name=f"job-{job.id}-iteration_{k:02d}.pth",
        media_type="application/octet-stream",
    )


@_download(
    "/v1/jobs/{job_id}/iterations/{k}/preview.png",
    summary="Preview of SR frame 0 after iteration k (PNG)",
    responses=_binary("image/png"),
)
def iteration_preview_png(
    job_id: JobId, k: K, request: Request, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    job, it = _iteration(session, job_id, k, user)
    return file_response(
        request,
        storage.resolve(it.preview_png_path),
        download_name=f"job-{job.id}-iteration_{k:02d}.png",
        media_type="image/png",
        inline=True,
    )


@_download(
    "/v1/jobs/{job_id}/iterations/{k}/preview.tif",
    summary="SR frame 0 after iteration k, float32 TIFF",
    responses=_binary("image/tiff"),
)
def iteration_preview_tif(
    job_id: JobId, k: K, request: Request, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    job, it = _iteration(session, job_id, k, user)
    return file_response(
        request,
        storage.resolve(it.preview_tif_path),
        download_name=f"job-{job.id}-iteration_{k:02d}.tif",
        media_type="image/tiff",
    )


def _finished(rec: Reconstruction) -> Reconstruction:
    if rec.state != "succeeded":
        raise Problem(
            409,
            f"reconstruction {rec.id} is {rec.state}; its files exist once it has succeeded",
            slug="not-ready",
        )
    return rec


def _reconstruction_file(
    request: Request,
    storage: Any,
    rec: Reconstruction,
    rel_path: str | None,
    suffix: str,
    media_type: str,
) -> Response:
    """Stream one output file of a finished reconstruction (the MP4 plays inline)."""
    if not rel_path:
        raise not_found(f"{suffix.upper()} of reconstruction", rec.id)
    return file_response(
        request,
        storage.resolve(rel_path),
        download_name=f"reconstruction-{rec.id}.{suffix}",
        media_type=media_type,
        inline=media_type.startswith("video/"),
    )


@_download(
    "/v1/reconstructions/{recon_id}/tiff",
    summary="The reconstructed SR stack (T, scale*H, scale*W), float32 TIFF",
    responses={**_binary("image/tiff"), **problem_responses(409)},
)
def reconstruction_tiff(
    recon_id: ReconId, request: Request, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    rec = _finished(owned(session, Reconstruction, recon_id, user, "reconstruction"))
    return _reconstruction_file(request, storage, rec, rec.tiff_path, "tif", "image/tiff")


@_download(
    "/v1/reconstructions/{recon_id}/mp4",
    summary="The reconstruction as an 8-bit MP4 preview",
    responses={**_binary("video/mp4"), **problem_responses(409)},
)
def reconstruction_mp4(
    recon_id: ReconId, request: Request, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    rec = _finished(owned(session, Reconstruction, recon_id, user, "reconstruction"))
    return _reconstruction_file(request, storage, rec, rec.mp4_path, "mp4", "video/mp4")


@_download(
    "/v1/datasets/{dataset_id}/file",
    summary="Download an uploaded stack as it was sent",
    responses=_binary("image/tiff"),
)
def dataset_file(
    dataset_id: str, request: Request, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    ds = owned(session, Dataset, dataset_id, user, "dataset")
    return file_response(
        request, storage.resolve(ds.path), download_name=ds.filename, media_type="image/tiff"
    )


@_download(
    "/v1/models/{model_id}/file",
    summary="Download an uploaded model checkpoint",
    responses=_binary("application/octet-stream"),
)
def model_file(
    model_id: str, request: Request, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    m = owned(session, ModelFile, model_id, user, "model")
    return file_response(
        request,
        storage.resolve(m.path),
        download_name=f"{m.kind}-{m.id}.pth",
        media_type="application/octet-stream",
    )
