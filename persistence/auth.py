"""API keys: random 32-byte tokens, stored only as their sha256 (keys are high-entropy)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence.settings import Settings
from persistence.tables import User
from saft_core.errors import InvalidParameterError

ADMIN_NAME = "admin"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


def create_user(session: Session, name: str, is_admin: bool = False) -> tuple[User, str]:
    """Add a user and return it with its plaintext key (shown once, never stored)."""
    if not _NAME_RE.match(name):
        raise InvalidParameterError(
            "user name must be 1-64 letters, digits, '_', '.' or '-'", field="name"
        )
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise InvalidParameterError(f"user {name!r} already exists", field="name")
    key = new_key()
    user = User(name=name, key_hash=hash_key(key), key_prefix=key[:8], is_admin=is_admin)
    session.add(user)
    session.flush()
    return user, key


def authenticate(session: Session, key: str | None) -> User | None:
    """The user owning ``key``, or None (lookup by hash, so no timing side channel)."""
    if not key:
        return None
    return session.scalar(select(User).where(User.key_hash == hash_key(key)))


def ensure_admin(session: Session, settings: Settings) -> str | None:
    """On first start (no users) create ``admin`` and write its key to a 0600 file.

    Commits. Returns the key, or None if users already exist (or another process starting at
    the same moment won the race).
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    path = Path(settings.api_key_admin_file or settings.data_dir / "admin-api-key")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Written before the commit and renamed after it: a key in the file always works.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    try:
        session.add(
            User(name=ADMIN_NAME, key_hash=hash_key(key), key_prefix=key[:8], is_admin=True)
        )
        session.commit()
    except IntegrityError:
        session.rollback()
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, path)
    return key
