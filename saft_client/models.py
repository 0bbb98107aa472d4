"""Typed, immutable results of the SAFT API (mirrors of the API v1 wire schemas).

Each class has ``from_json`` that reads the documented fields and ignores unknown ones, so
a newer service does not break an older client; ``raw`` keeps the whole JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from saft_client.errors import SaftProtocolError
from saft_core.states import FINAL_STATES


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 timestamp (Python 3.10's ``fromisoformat`` does not take a trailing Z)."""
    if not value:
        return None
    text = str(value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _require(data: Mapping[str, Any], what: str, *keys: str) -> None:
    """A clear error instead of a KeyError when the service answers something else."""
    if not isinstance(data, Mapping):
        raise SaftProtocolError(f"expected a {what} object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise SaftProtocolError(f"{what} answer lacks {', '.join(missing)}")


@dataclass(frozen=True)
class Dataset:
    """An uploaded TIFF stack (LR widefield, edge map or SMLM image)."""

    id: str
    filename: str
    shape: tuple[int, ...]
    dtype: str
    pixel_size: float | None
    sha256: str
    bytes: int
    created_at: datetime | None
    url: str
    download_url: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Dataset:
        _require(d, "dataset", "id", "shape")
        return cls(
            id=str(d["id"]),
            filename=str(d.get("filename", "")),
            shape=tuple(int(x) for x in d["shape"]),
            dtype=str(d.get("dtype", "")),
            pixel_size=_opt_float(d.get("pixel_size")),
            sha256=str(d.get("sha256", "")),
            bytes=int(d.get("bytes", 0)),
            created_at=parse_time(d.get("created_at")),
            url=str(d.get("url", "")),
            download_url=str(d.get("download_url", "")),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Model:
    """A network usable as ``sr_model``/``den_model``: a shipped default or an upload."""

    id: str
    kind: str
    name: str
    default: bool
    config: Mapping[str, Any] | None
    parameters: int | None
    sha256: str | None
    bytes: int | None
    created_at: datetime | None
    url: str | None
    download_url: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Model:
        _require(d, "model", "id", "kind")
        return cls(
            id=str(d["id"]),
            kind=str(d["kind"]),
            name=str(d.get("name", "")),
            default=bool(d.get("default", False)),
            config=d.get("config"),
            parameters=_opt_int(d.get("parameters")),
            sha256=d.get("sha256"),
            bytes=_opt_int(d.get("bytes")),
            created_at=parse_time(d.get("created_at")),
            url=d.get("url"),
            download_url=d.get("download_url"),
            raw=dict(d),
        )


class _Stateful:
    """Shared by jobs and reconstructions: both move through the same final states."""

    state: str  # one of saft_core.states.JOB_STATES

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


@dataclass(frozen=True)
class Job(_Stateful):
    """A fine-tuning job; ``finished`` once it is succeeded, failed or cancelled."""

    id: str
    state: str
    progress: float
    iterations_done: int
    iterations_total: int
    recommended_iteration: int | None
    error: str | None
    cancel_requested: bool
    mode: str
    params: Mapping[str, Any]
    sigma_used: float | None
    lr_dataset: str
    edge_dataset: str | None
    smlm_dataset: str | None
    sr_model: str
    den_model: str | None
    device: str | None
    attempts: int
    software_version: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    links: Mapping[str, str]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Job:
        _require(d, "job", "id", "state")
        return cls(
            id=str(d["id"]),
            state=str(d["state"]),
            progress=float(d.get("progress") or 0.0),
            iterations_done=int(d.get("iterations_done") or 0),
            iterations_total=int(d.get("iterations_total") or 0),
            recommended_iteration=_opt_int(d.get("recommended_iteration")),
            error=d.get("error"),
            cancel_requested=bool(d.get("cancel_requested", False)),
            mode=str(d.get("mode", "saft")),
            params=dict(d.get("params") or {}),
            sigma_used=_opt_float(d.get("sigma_used")),
            lr_dataset=str(d.get("lr_dataset", "")),
            edge_dataset=d.get("edge_dataset"),
            smlm_dataset=d.get("smlm_dataset"),
            sr_model=str(d.get("sr_model", "default")),
            den_model=d.get("den_model"),
            device=d.get("device"),
            attempts=int(d.get("attempts") or 0),
            software_version=str(d.get("software_version", "")),
            created_at=parse_time(d.get("created_at")),
            started_at=parse_time(d.get("started_at")),
            finished_at=parse_time(d.get("finished_at")),
            links=dict(d.get("links") or {}),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Iteration:
    """One finished iteration (0 is the pretrained network) with its quality metrics."""

    iteration: int
    losses: Mapping[str, Any]
    rse: float | None
    rsp: float | None
    resolution: float | None  # decorrelation, SR px
    frc_resolution: float | None  # FRC of even vs odd frames, SR px (what the stop rule judges)
    haze_ratio: float | None  # SR where the pretrained output is empty / on structure (guarded)
    seconds: float
    recommended: bool
    created_at: datetime | None
    preview_url: str
    preview_tif_url: str
    checkpoint_url: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def total_loss(self) -> float | None:
        value = self.losses.get("total")
        return None if value is None else float(value)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Iteration:
        _require(d, "iteration", "iteration")
        return cls(
            iteration=int(d["iteration"]),
            losses=dict(d.get("losses") or {}),
            rse=_opt_float(d.get("rse")),
            rsp=_opt_float(d.get("rsp")),
            resolution=_opt_float(d.get("resolution")),
            frc_resolution=_opt_float(d.get("frc_resolution")),
            haze_ratio=_opt_float(d.get("haze_ratio")),
            seconds=float(d.get("seconds") or 0.0),
            recommended=bool(d.get("recommended", False)),
            created_at=parse_time(d.get("created_at")),
            preview_url=str(d.get("preview_url", "")),
            preview_tif_url=str(d.get("preview_tif_url", "")),
            checkpoint_url=str(d.get("checkpoint_url", "")),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Reconstruction(_Stateful):
    """A whole-stack reconstruction with one iteration's checkpoint."""

    id: str
    job_id: str
    iteration: int
    state: str
    progress: float
    error: str | None
    video: bool
    cancel_requested: bool
    device: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    url: str
    tiff_url: str | None
    mp4_url: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Reconstruction:
        _require(d, "reconstruction", "id", "state")
        return cls(
            id=str(d["id"]),
            job_id=str(d.get("job_id", "")),
            iteration=int(d.get("iteration") or 0),
            state=str(d["state"]),
            progress=float(d.get("progress") or 0.0),
            error=d.get("error"),
            video=bool(d.get("video", False)),
            cancel_requested=bool(d.get("cancel_requested", False)),
            device=d.get("device"),
            created_at=parse_time(d.get("created_at")),
            started_at=parse_time(d.get("started_at")),
            finished_at=parse_time(d.get("finished_at")),
            url=str(d.get("url", "")),
            tiff_url=d.get("tiff_url"),
            mp4_url=d.get("mp4_url"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class JobEvent:
    """One server-sent event of a job: ``state``, ``progress``, ``iteration`` or ``log``.

    ``id`` is the service's event sequence number (None for events the client synthesised
    while polling), usable as ``last_event_id`` to resume a stream.
    """

    kind: str
    data: Mapping[str, Any]
    id: int | None = None
    at: datetime | None = None

    @property
    def state(self) -> str | None:
        return self.data.get("state") if self.kind == "state" else None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def progress(self) -> float | None:
        value = self.data.get("progress")
        return None if value is None else float(value)

    @property
    def iteration(self) -> int | None:
        value = self.data.get("iteration")
        return None if value is None else int(value)
