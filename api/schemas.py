"""Wire schemas of API v1: what clients send and receive (deliberately not the tables).

Outputs are built from rows by the ``*_out`` functions so URLs, renamed fields and hidden
columns (paths on disk, worker names, key hashes) are decided in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)

from persistence.models import Dataset, Iteration, Job, ModelFile, Reconstruction
from saft_core.params import Background

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Mode = Literal["saft", "wsf"]
Preset = Literal["reference", "adaptive"]  # the keys of saft_core.params.PRESETS (tested)
StrictNumber = Annotated[float, Field(strict=True)]


def _sigma(v: Any) -> float | str | None:
    """A positive number of LR pixels or "auto" (range is checked by SaftParams)."""
    if v is None or v == "auto":
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise ValueError("sigma must be a number of LR pixels or 'auto'")


Sigma = Annotated[
    float | str | None,
    PlainValidator(_sigma),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"const": "auto"}],
            "description": "RSF Gaussian sigma in LR pixels, or 'auto' to estimate it",
        }
    ),
]


def _windows_per_tile(v: Any) -> int | str | None:
    """An integer number of windows or "auto" (range is checked by SaftParams)."""
    if v is None or v == "auto":
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise ValueError("windows_per_tile must be an integer or 'auto'")


WindowsPerTile = Annotated[
    int | str | None,
    PlainValidator(_windows_per_tile),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": 100}, {"const": "auto"}],
            "description": "random frame windows per training tile in one iteration, 1..100, "
            "or 'auto' (enough to visit every frame about once: ceil(T / window)); default 1 "
            "(reference), 4 (adaptive preset)",
        }
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---- datasets ---------------------------------------------------------------------------


class DatasetOut(_Out):
    """An uploaded TIFF stack (LR widefield, edge map or SMLM image)."""

    id: str
    filename: str
    shape: list[int] = Field(description="[T, H, W]")
    dtype: str
    pixel_size: float | None = Field(description="micrometres per pixel, from the TIFF tags")
    sha256: str
    bytes: int
    created_at: datetime
    url: str
    download_url: str


def dataset_out(ds: Dataset, root: str = "") -> DatasetOut:
    return DatasetOut(
        id=ds.id,
        filename=ds.filename,
        shape=[int(x) for x in ds.shape],
        dtype=ds.dtype,
        pixel_size=ds.pixel_size,
        sha256=ds.sha256,
        bytes=ds.bytes,
        created_at=ds.created_at,
        url=f"{root}/v1/datasets/{ds.id}",
        download_url=f"{root}/v1/datasets/{ds.id}/file",
    )


# ---- models -----------------------------------------------------------------------------


class ModelOut(_Out):
    """A network usable as ``sr_model`` / ``den_model``: the shipped default or an upload."""

    id: str = Field(description="'default' or the id of an uploaded model")
    kind: Literal["sr", "den"]
    name: str
    default: bool
    config: dict[str, Any] | None = None
    parameters: int | None = None
    sha256: str | None = None
    bytes: int | None = None
    created_at: datetime | None = None
    url: str | None = None
    download_url: str | None = None


def model_out(m: ModelFile, root: str = "") -> ModelOut:
    return ModelOut(
        id=m.id,
        kind=m.kind,  # type: ignore[arg-type]
        name=m.name,
        default=False,
        config=m.config,
        parameters=m.parameters,
        sha256=m.sha256,
        bytes=m.bytes,
        created_at=m.created_at,
        url=f"{root}/v1/models/{m.id}",
        download_url=f"{root}/v1/models/{m.id}/file",
    )


# ---- jobs -------------------------------------------------------------------------------


class ParamsIn(_In):
    """SAFT parameters; omitted (or null) fields take the preset's values, and without a
    preset the documented (reference) defaults. Explicit fields win over the preset."""

    preset: Preset | None = Field(
        None,
        description="named parameter set: 'reference' (the authors' schedule, the default) or "
        "'adaptive' (this project's schedule: lr 1e-3, tile 32, windows_per_tile 4, "
        "consistency_level 0.1, ema 0.95, warmup 30, background 'map', haze_level 0.3); the "
        "job stores the resolved values, not the name",
    )
    iterations: StrictInt | None = Field(None, description="1 to 50; default 5 (saft) or 3 (wsf)")
    lr: StrictNumber | None = Field(
        None, description="learning rate in (0, 1e-3]; default 1e-5 (adaptive: 1e-3)"
    )
    sigma: Sigma = None
    ksize: StrictInt | None = Field(None, description="odd RSF kernel size 3..31; default 5")
    continuity_level: StrictNumber | None = Field(None, description="0..100; default 1")
    sparse_level: StrictNumber | None = Field(None, description="0..100; default 1")
    consistency_level: StrictNumber | None = Field(
        None, description="rotation consistency weight 0..100; default 1 (adaptive: 0.1)"
    )
    seed: StrictInt | None = Field(None, description=">= 0; default 0")
    early_stop: StrictBool | None = Field(
        None, description="stop once an iteration is recommended; default false"
    )
    background: Background | None = Field(
        None,
        description="how the degraded SR is matched to the LR: 'fit' (gain and offset, the "
        "default), 'mean' (the reference's mean matching) or 'map' (gain over an estimated "
        "background map; adaptive)",
    )
    tile: StrictInt | None = Field(
        None, description="training tile side, LR px, 16..512; default 64 (adaptive: 32)"
    )
    window: StrictInt | None = Field(
        None, description="odd number of adjacent frames, 3..15; default 5"
    )
    windows_per_tile: WindowsPerTile = None
    ema: StrictNumber | None = Field(
        None,
        description="decay of the moving average of the SR weights in [0, 1); 0 = off, the "
        "default (adaptive: 0.95)",
    )
    warmup: StrictInt | None = Field(
        None,
        description="optimiser steps of linear learning-rate warm-up, 0..10000; default 0 "
        "(adaptive: 30)",
    )
    haze_level: StrictNumber | None = Field(
        None, description="haze penalty weight 0..100; default 0 = off (adaptive: 0.3)"
    )

    def given(self) -> dict[str, Any]:
        """Only the fields the client set to a value (the rest stay the preset's or the
        SaftParams defaults); ``preset`` is not a parameter and is left out."""
        out = {
            k: v
            for k, v in self.model_dump(exclude_unset=True).items()
            if v is not None and k != "preset"
        }
        if out.get("windows_per_tile") == "auto":
            out["windows_per_tile"] = None  # SaftParams spells "auto" as None
        return out


class JobCreate(_In):
    """A fine-tuning request; datasets and models are ids from /v1/datasets and /v1/models."""

    lr_dataset: str = Field(description="id of the LR widefield stack (T, H, W)")
    edge_dataset: str | None = Field(
        None, description="id of its edge map (same shape); null: computed by the worker"
    )
    smlm_dataset: str | None = Field(
        None, description="id of the SMLM image on the SR grid; required for mode 'wsf'"
    )
    mode: Mode = "saft"
    sr_model: str = Field("default", description="'default' or the id of an uploaded SR model")
    den_model: str | None = Field(
        "default", description="'default' or the id of an uploaded DEN model (mode 'saft')"
    )
    params: ParamsIn = Field(default_factory=ParamsIn)


class JobLinks(BaseModel):
    self: str
    iterations: str
    events: str
    cancel: str
    reconstructions: str


class JobOut(_Out):
    """A fine-tuning job as clients see it."""

    id: str
    state: JobState
    progress: float = Field(description="0..1")
    iterations_done: int
    iterations_total: int
    recommended_iteration: int | None
    error: str | None
    cancel_requested: bool
    mode: Mode
    params: dict[str, Any] = Field(description="the validated parameters, as frozen at submission")
    sigma_used: float | None
    lr_dataset: str
    edge_dataset: str | None
    smlm_dataset: str | None
    sr_model: str
    den_model: str | None
    device: str | None
    notes: list[str] = Field(
        description="what the run could not do and why, e.g. 'metrics unavailable: ...'"
    )
    attempts: int
    software_version: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks


def job_out(job: Job, root: str = "") -> JobOut:
    base = f"{root}/v1/jobs/{job.id}"
    return JobOut(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        progress=job.progress,
        iterations_done=job.iterations_done,
        iterations_total=int(job.params.get("iterations") or 0),
        recommended_iteration=job.recommended_iteration,
        error=job.error,
        cancel_requested=job.cancel_requested,
        mode=job.mode,  # type: ignore[arg-type]
        params=job.params,
        sigma_used=job.sigma_used,
        lr_dataset=job.lr_dataset_id,
        edge_dataset=job.edge_dataset_id,
        smlm_dataset=job.smlm_dataset_id,
        sr_model=job.sr_model,
        den_model=job.den_model,
        device=job.device,
        notes=list(job.notes or []),
        attempts=job.attempts,
        software_version=job.software_version,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        links=JobLinks(
            self=base,
            iterations=f"{base}/iterations",
            events=f"{base}/events",
            cancel=f"{base}/cancel",
            reconstructions=f"{base}/reconstructions",
        ),
    )


class IterationOut(_Out):
    """One finished iteration (0 is the pretrained network) with its quality metrics."""

    iteration: int
    losses: dict[str, Any]
    rse: float | None
    rsp: float | None
    resolution: float | None = Field(description="decorrelation resolution, SR pixels")
    seconds: float
    recommended: bool
    created_at: datetime
    preview_url: str
    preview_tif_url: str
    checkpoint_url: str


def iteration_out(it: Iteration, job: Job, root: str = "") -> IterationOut:
    base = f"{root}/v1/jobs/{job.id}/iterations/{it.iteration}"
    return IterationOut(
        iteration=it.iteration,
        losses=it.losses,
        rse=it.rse,
        rsp=it.rsp,
        resolution=it.resolution,
        seconds=it.seconds,
        recommended=job.recommended_iteration == it.iteration,
        created_at=it.created_at,
        preview_url=f"{base}/preview.png",
        preview_tif_url=f"{base}/preview.tif",
        checkpoint_url=f"{base}/checkpoint",
    )


class IterationList(BaseModel):
    job_id: str
    state: JobState
    recommended_iteration: int | None
    items: list[IterationOut]


# ---- reconstructions --------------------------------------------------------------------


class ReconstructionCreate(_In):
    """Apply the checkpoint of one finished iteration to the job's whole LR stack."""

    iteration: StrictInt = Field(ge=0, description="an iteration listed by /iterations")
    video: StrictBool = Field(True, description="also render an MP4 preview")


class ReconstructionOut(_Out):
    id: str
    job_id: str
    iteration: int
    state: JobState
    progress: float
    error: str | None
    video: bool
    cancel_requested: bool
    device: str | None
    notes: list[str] = Field(description="e.g. 'video unavailable: ...' (the TIFF is still made)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str
    tiff_url: str | None = Field(description="set once the reconstruction succeeded")
    mp4_url: str | None


def reconstruction_out(rec: Reconstruction, root: str = "") -> ReconstructionOut:
    base = f"{root}/v1/reconstructions/{rec.id}"
    done = rec.state == "succeeded"
    return ReconstructionOut(
        id=rec.id,
        job_id=rec.job_id,
        iteration=rec.iteration,
        state=rec.state,  # type: ignore[arg-type]
        progress=rec.progress,
        error=rec.error,
        video=rec.video,
        cancel_requested=rec.cancel_requested,
        device=rec.device,
        notes=list(rec.notes or []),
        created_at=rec.created_at,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        url=base,
        tiff_url=f"{base}/tiff" if done and rec.tiff_path else None,
        mp4_url=f"{base}/mp4" if done and rec.mp4_path else None,
    )


# ---- pagination and health --------------------------------------------------------------

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first; follow ``next`` until it is null."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    database: str
    broker: str
