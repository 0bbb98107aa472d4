"""Alembic environment: one migration history for SQLite and PostgreSQL.

URL precedence: ``-x url=...``, then ``sqlalchemy.url`` set on the Config (programmatic
callers, tests), then the service settings. ``render_as_batch`` lets the same migrations
alter SQLite tables (which have almost no ALTER TABLE) by copy-and-move.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from sqlalchemy import create_engine, pool, text

from alembic import context
from persistence.settings import get_settings, normalise_database_url
from persistence.tables import Base, UTCDateTime

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata
# Serialises concurrent `upgrade` runs (API and workers starting together) on PostgreSQL.
PG_LOCK_ID = 0x5AF7


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().database_url
    )
    return normalise_database_url(url)


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations must not import model code: render our UTC type as its plain column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kw: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
        **kw,
    )


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        is_pg = conn.dialect.name == "postgresql"
        if is_pg:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_ID})
            conn.commit()
        try:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_pg:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_ID})
                conn.commit()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
