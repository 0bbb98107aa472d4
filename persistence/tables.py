"""SQLAlchemy 2 tables: the database is the source of truth for every job and artifact.

Ids are uuid4 hex strings (except ``job_events.id``, an autoincrement integer so it can be an
SSE ``Last-Event-ID``). Timestamps are timezone-aware UTC. Paths are relative to the data dir.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saft_core.params import Mode
from saft_core.states import EVENT_KINDS, JOB_STATES

MODEL_KINDS = ("sr", "den")
JOB_MODES: tuple[str, ...] = get_args(Mode)

# Named constraints: alembic batch mode on SQLite needs names to drop/recreate them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime that is always aware UTC in Python, although SQLite stores it naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use persistence.tables.utcnow()")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key
    key_prefix: Mapped[str] = mapped_column(String(8))  # shown in listings, never the key
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(512))
    shape: Mapped[list[Any]] = mapped_column(JSON)  # [T, H, W]
    dtype: Mapped[str] = mapped_column(String(16))
    pixel_size: Mapped[float | None] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelFile(Base):
    """An uploaded network checkpoint (table ``models``)."""

    __tablename__ = "models"
    __table_args__ = (CheckConstraint(_in("kind", MODEL_KINDS), name="kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(512))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    parameters: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """One fine-tuning run; ``params`` is the validated ``SaftParams.to_dict()``, frozen."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        CheckConstraint(_in("mode", JOB_MODES), name="mode"),
        UniqueConstraint("owner_id", "idempotency_key", name="uq_jobs_owner_idempotency"),
        # The reconciler scans by state; the API lists by owner, newest first.
        Index("ix_jobs_state_heartbeat", "state", "heartbeat_at"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    mode: Mapped[str] = mapped_column(String(8))
    lr_dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    edge_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"))
    smlm_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"))
    sr_model: Mapped[str] = mapped_column(String(32), default="default")  # "default" | model id
    den_model: Mapped[str | None] = mapped_column(String(32), default="default")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    iterations_done: Mapped[int] = mapped_column(Integer, default=0)
    recommended_iteration: Mapped[int | None] = mapped_column(Integer)
    sigma_used: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    # When the last broker message was sent: lets the reconciler spot lost messages.
    enqueued_at: Mapped[datetime | None] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # What the run could not do and why (e.g. "metrics unavailable: ..."), set by the worker.
    notes: Mapped[list[Any] | None] = mapped_column(JSON)
    software_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class Iteration(Base):
    """One finished iteration: committed together with its checkpoint and preview files."""

    __tablename__ = "iterations"
    __table_args__ = (UniqueConstraint("job_id", "iteration", name="uq_iterations_job_iteration"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(Integer)
    losses: Mapped[dict[str, Any]] = mapped_column(JSON)
    rse: Mapped[float | None] = mapped_column(Float)
    rsp: Mapped[float | None] = mapped_column(Float)
    resolution: Mapped[float | None] = mapped_column(Float)
    frc_resolution: Mapped[float | None] = mapped_column(Float)
    haze_ratio: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    checkpoint_path: Mapped[str] = mapped_column(String(512))
    preview_png_path: Mapped[str] = mapped_column(String(512))
    preview_tif_path: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reconstruction(Base):
    """Applying one iteration's checkpoint to a job's LR stack (TIFF + optional MP4)."""

    __tablename__ = "reconstructions"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        Index("ix_reconstructions_state_heartbeat", "state", "heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    iteration: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    tiff_path: Mapped[str | None] = mapped_column(String(512))
    mp4_path: Mapped[str | None] = mapped_column(String(512))
    video: Mapped[bool] = mapped_column(Boolean, default=True)  # also write the MP4
    notes: Mapped[list[Any] | None] = mapped_column(JSON)  # e.g. "video unavailable: ..."
    device: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    enqueued_at: Mapped[datetime | None] = mapped_column()
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class JobEvent(Base):
    """Append-only event log of a job; the row id is the SSE event id."""

    __tablename__ = "job_events"
    __table_args__ = (
        CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
        Index("ix_job_events_job_id_id", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkerRecord(Base):
    """A worker process as it reported itself at start, kept fresh by its presence thread.

    ``seen_at`` older than ``stale_after_s`` means the worker is gone; the API reads the
    ``capabilities`` of live workers to refuse jobs that none of them could run.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # "host:pid"
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queue: Mapped[str] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(255))  # e.g. "cuda:0 (NVIDIA H200)"
    # saft_core.capabilities.Capabilities.to_dict(): {name: {available, reason, detail}}
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    # torch/CUDA/cuDNN versions and GPUs (saft_core.capabilities.torch_build()), packages
    environment: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
