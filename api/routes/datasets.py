"""/v1/datasets: upload, list, show and delete TIFF stacks."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from api.deps import SessionDep, SettingsDep, StorageDep, UserDep, new_session, owned, root_path
from api.pagination import PageDep, fetch_page, make_page
from api.problems import Problem, invalid, problem_responses
from api.schemas import DatasetOut, Page, dataset_out
from api.stacks import validate_stack
from api.uploads import ReceivedFile, receive_multipart, upload_request_body
from persistence.settings import Settings
from persistence.storage import Storage
from persistence.tables import Dataset, Job, User, new_id

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=problem_responses(401))

DatasetId = Annotated[str, Path(description="dataset id")]


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    summary="Upload a TIFF stack",
    openapi_extra={"requestBody": upload_request_body()},
    responses=problem_responses(400, 413, 415, 422, 507),
)
async def upload_dataset(
    request: Request,
    response: Response,
    user: UserDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> DatasetOut:
    """Stream field ``file`` to disk, check header then pixels, then publish atomically."""
    async with receive_multipart(
        request, storage, max_file_bytes=settings.max_upload_bytes
    ) as upload:
        extra = sorted(set(upload.fields))
        if extra:
            raise invalid(extra[0], f"unexpected form field '{extra[0]}'")
        received = upload.files.get("file")
        if received is None:
            raise invalid("file", "the TIFF must be sent in multipart form field 'file'")
        ds = await run_in_threadpool(_store, received, user, settings, storage)
    out = dataset_out(ds, root_path(request))
    response.headers["Location"] = out.url
    return out


def _store(received: ReceivedFile, user: User, settings: Settings, storage: Storage) -> Dataset:
    """Validate, move into place and insert the row; no file survives a failure."""
    facts = validate_stack(received.path, settings, received.filename)
    ds_id = new_id()
    final = storage.dataset_path(ds_id)
    os.replace(received.path, final)
    try:
        with new_session(settings) as session:
            ds = Dataset(
                id=ds_id,
                owner_id=user.id,
                filename=received.filename,
                path=storage.relative(final),
                shape=list(facts.shape),
                dtype=facts.dtype,
                pixel_size=facts.pixel_size,
                sha256=received.sha256,
                bytes=received.size,
            )
            session.add(ds)
            session.commit()
            return ds
    except BaseException:
        final.unlink(missing_ok=True)
        raise


@router.get("", response_model=Page[DatasetOut], summary="List your datasets")
def list_datasets(request: Request, user: UserDep, session: SessionDep, page: PageDep):
    """Newest first."""
    stmt = (
        select(Dataset)
        .where(Dataset.owner_id == user.id)
        .order_by(Dataset.created_at.desc(), Dataset.id.desc())
    )
    rows, total = fetch_page(session, stmt, page)
    root = root_path(request)
    return make_page(request, [dataset_out(d, root) for d in rows], total, page)


@router.get(
    "/{dataset_id}",
    response_model=DatasetOut,
    summary="Show a dataset",
    responses=problem_responses(404),
)
def get_dataset(
    dataset_id: DatasetId, request: Request, user: UserDep, session: SessionDep
) -> DatasetOut:
    return dataset_out(owned(session, Dataset, dataset_id, user, "dataset"), root_path(request))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    summary="Delete a dataset not used by any job",
    responses=problem_responses(404, 409),
)
def delete_dataset(
    dataset_id: DatasetId, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    """Jobs keep pointing at their inputs, so a dataset in use cannot go."""
    ds = owned(session, Dataset, dataset_id, user, "dataset")
    used = session.scalar(
        select(Job.id)
        .where(
            or_(
                Job.lr_dataset_id == ds.id,
                Job.edge_dataset_id == ds.id,
                Job.smlm_dataset_id == ds.id,
            )
        )
        .limit(1)
    )
    if used is not None:
        raise Problem(
            409, f"dataset {ds.id} is an input of job {used}; delete refused", slug="in-use"
        )
    path = storage.resolve(ds.path)
    session.delete(ds)
    try:
        session.commit()
    except IntegrityError:  # a job referencing it was created meanwhile
        session.rollback()
        raise Problem(409, f"dataset {ds.id} is an input of a job", slug="in-use") from None
    path.unlink(missing_ok=True)
    return Response(status_code=204)
