"""Request dependencies: settings, storage, a database session and the authenticated user.

Settings are resolved per request (``get_settings()`` is cached) unless ``create_app`` was
given explicit settings, so tests and ``saft serve`` can set ``SAFT_*`` before the first call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.problems import Problem, not_found
from persistence.auth import authenticate
from persistence.db import get_engine
from persistence.settings import Settings, get_settings
from persistence.storage import Storage
from persistence.tables import Dataset, Job, ModelFile, Reconstruction, User

T = TypeVar("T", Dataset, Job, ModelFile, Reconstruction)

_WWW_AUTH = 'Bearer realm="saft"'


def app_settings(request: Request) -> Settings:
    """The app's explicit settings, else the process settings (``SAFT_*``)."""
    override: Settings | None = getattr(request.app.state, "settings", None)
    return override if override is not None else get_settings()


SettingsDep = Annotated[Settings, Depends(app_settings)]

_storages: dict[str, Storage] = {}


def storage(settings: SettingsDep) -> Storage:
    """The artifact layout under the data dir (one object per data dir)."""
    key = str(settings.data_dir)
    st = _storages.get(key)
    if st is None:
        st = _storages[key] = Storage(settings.data_dir)
    return st


StorageDep = Annotated[Storage, Depends(storage)]


def new_session(settings: Settings) -> Session:
    """A session on the settings' database; objects stay readable after commit."""
    return Session(get_engine(settings.database_url), expire_on_commit=False)


def db_session(settings: SettingsDep) -> Iterator[Session]:
    """One session per request; handlers commit explicitly, anything else is rolled back."""
    session = new_session(settings)
    try:
        yield session
    finally:
        session.close()


# Closed when the handler returns, before the response body is sent: a streamed download or
# an SSE stream never pins a pooled connection.
SessionDep = Annotated[Session, Depends(db_session, scope="function")]


def bearer_key(request: Request) -> str:
    """The key of ``Authorization: Bearer <key>``; 401 with WWW-Authenticate otherwise."""
    header = request.headers.get("authorization")
    if not header:
        raise Problem(
            401,
            "missing Authorization header; send 'Authorization: Bearer <API key>'",
            slug="unauthenticated",
            headers={"WWW-Authenticate": _WWW_AUTH},
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Problem(
            401,
            "the Authorization header must be 'Bearer <API key>'",
            slug="unauthenticated",
            headers={"WWW-Authenticate": f'{_WWW_AUTH}, error="invalid_request"'},
        )
    return key


def current_user(session: SessionDep, key: Annotated[str, Depends(bearer_key)]) -> User:
    """The user owning the bearer key; 401 for an unknown key (checked before any body)."""
    user = authenticate(session, key)
    # End the read transaction now: a long upload must not hold a pooled connection.
    session.commit()
    if user is None:
        raise Problem(
            401,
            "invalid API key",
            slug="unauthenticated",
            headers={"WWW-Authenticate": f'{_WWW_AUTH}, error="invalid_token"'},
        )
    return user


UserDep = Annotated[User, Depends(current_user)]


def owned(session: Session, cls: type[T], ident: str, user: User, what: str) -> T:
    """The row ``ident`` of ``cls`` if ``user`` owns it; 404 alike for missing and foreign."""
    row = session.scalar(select(cls).where(cls.id == ident, cls.owner_id == user.id))
    if row is None:
        raise not_found(what, ident)
    return row


def root_path(request: Request) -> str:
    """Prefix of URLs built by the API (non-empty behind a proxy mounting it on a sub-path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")
