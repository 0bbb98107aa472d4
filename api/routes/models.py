"""/v1/models: the default networks and the user's uploaded checkpoints."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from api import model_check
from api.deps import SessionDep, SettingsDep, StorageDep, UserDep, new_session, owned, root_path
from api.pagination import PageDep, PageParams, fetch_page, make_page
from api.problems import Problem, invalid, problem_responses
from api.schemas import ModelOut, Page, model_out
from api.uploads import ReceivedFile, receive_multipart, upload_request_body
from persistence.settings import Settings
from persistence.storage import Storage
from persistence.tables import Job, ModelFile, User, new_id
from saft_core.states import ACTIVE_STATES

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(401))

ModelId = Annotated[str, Path(description="model id")]
Kind = Literal["sr", "den"]
KINDS: tuple[Kind, ...] = ("sr", "den")
DEFAULT_NAMES = {"sr": "default SR network", "den": "default DEN network"}


def _defaults(kind: Kind | None) -> list[ModelOut]:
    summaries = model_check.default_summaries()
    out = []
    for k in KINDS:
        if kind is not None and k != kind:
            continue
        s = summaries.get(k) or {}
        out.append(
            ModelOut(
                id="default",
                kind=k,
                name=DEFAULT_NAMES[k],
                default=True,
                config=s.get("config"),
                parameters=s.get("parameters"),
            )
        )
    return out


@router.get("", response_model=Page[ModelOut], summary="List the default and your uploaded models")
def list_models(
    request: Request,
    user: UserDep,
    session: SessionDep,
    page: PageDep,
    kind: Annotated[Kind | None, Query(description="only this kind")] = None,
):
    """The defaults come first (id 'default'), then uploads, newest first."""
    defaults = _defaults(kind)
    stmt = select(ModelFile).where(ModelFile.owner_id == user.id)
    if kind is not None:
        stmt = stmt.where(ModelFile.kind == kind)
    stmt = stmt.order_by(ModelFile.created_at.desc(), ModelFile.id.desc())
    head = defaults[page.offset : page.offset + page.limit]
    inner = PageParams(page.limit - len(head), max(page.offset - len(defaults), 0))
    rows, n_uploaded = fetch_page(session, stmt, inner)
    root = root_path(request)
    items = head + [model_out(m, root) for m in rows]
    return make_page(request, items, len(defaults) + n_uploaded, page)


@router.post(
    "",
    status_code=201,
    response_model=ModelOut,
    summary="Upload an SR or DEN checkpoint (.pth)",
    openapi_extra={
        "requestBody": upload_request_body(
            extra_fields={
                "kind": {"type": "string", "enum": list(KINDS), "required": True},
                "name": {"type": "string", "maxLength": 255},
            }
        )
    },
    responses=problem_responses(400, 413, 415, 422, 507),
)
async def upload_model(
    request: Request,
    response: Response,
    user: UserDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> ModelOut:
    """Validated by loading it in a subprocess (the API never imports torch)."""
    async with receive_multipart(
        request, storage, max_file_bytes=settings.max_upload_bytes
    ) as upload:
        unknown = sorted(set(upload.fields) - {"kind", "name"})
        if unknown:
            raise invalid(unknown[0], f"unexpected form field '{unknown[0]}'")
        kind = upload.fields.get("kind", "").strip().lower()
        if kind not in KINDS:
            raise invalid("kind", "form field 'kind' must be 'sr' or 'den'")
        received = upload.files.get("file")
        if received is None:
            raise invalid("file", "the checkpoint must be sent in multipart form field 'file'")
        name = upload.fields.get("name", "").strip()[:255] or received.filename
        m = await run_in_threadpool(_store, received, kind, name, user, settings, storage)
    out = model_out(m, root_path(request))
    response.headers["Location"] = out.url or ""
    return out


def _store(
    received: ReceivedFile,
    kind: str,
    name: str,
    user: User,
    settings: Settings,
    storage: Storage,
) -> ModelFile:
    result = model_check.check_model(received.path, kind)
    if not result.ok or not result.summary:
        message = result.error or f"not a loadable {kind.upper()} checkpoint"
        # Name the client's file, not our temp file.
        raise invalid("file", message.replace(received.path.name, received.filename))
    if result.summary.get("kind") != kind:
        raise invalid("kind", f"the file holds a {result.summary.get('kind')} network")
    m_id = new_id()
    final = storage.model_path(m_id)
    os.replace(received.path, final)
    try:
        with new_session(settings) as session:
            m = ModelFile(
                id=m_id,
                owner_id=user.id,
                kind=kind,
                name=name,
                path=storage.relative(final),
                config=result.summary.get("config") or {},
                sha256=received.sha256,
                bytes=received.size,
                parameters=int(result.summary.get("parameters") or 0),
            )
            session.add(m)
            session.commit()
            return m
    except BaseException:
        final.unlink(missing_ok=True)
        raise


@router.get(
    "/{model_id}",
    response_model=ModelOut,
    summary="Show an uploaded model",
    responses=problem_responses(404),
)
def get_model(model_id: ModelId, request: Request, user: UserDep, session: SessionDep) -> ModelOut:
    return model_out(owned(session, ModelFile, model_id, user, "model"), root_path(request))


@router.delete(
    "/{model_id}",
    status_code=204,
    summary="Delete an uploaded model no queued or running job needs",
    responses=problem_responses(404, 409),
)
def delete_model(
    model_id: ModelId, user: UserDep, session: SessionDep, storage: StorageDep
) -> Response:
    m = owned(session, ModelFile, model_id, user, "model")
    busy = session.scalar(
        select(Job.id)
        .where(
            Job.state.in_(ACTIVE_STATES),
            (Job.sr_model == m.id) | (Job.den_model == m.id),
        )
        .limit(1)
    )
    if busy is not None:
        raise Problem(409, f"model {m.id} is used by active job {busy}", slug="in-use")
    path = storage.resolve(m.path)
    session.delete(m)
    session.commit()
    path.unlink(missing_ok=True)
    return Response(status_code=204)
