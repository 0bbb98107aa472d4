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
    create_model,
)

from persistence.tables import Dataset, Iteration, Job, ModelFile, Reconstruction
from saft_core.params import DEFAULT_PRESET, PRESET_NAMES, PRESET_PARAMS, Mode, Param
from saft_core.record import BY_NAME as RECORD_FIELDS
from saft_core.record import CSV_COLUMNS, loss_names
from saft_core.record import MODES as RECORD_MODES
from saft_core.states import (
    ACTIVE_STATES,
    EVENT_KINDS,
    FINAL_STATES,
    JOB_STATES,
    EventKind,
    JobState,
)

StrictNumber = Annotated[float, Field(strict=True)]


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


class _ParamsBase(_In):
    """SAFT parameters; omitted (or null) fields take the preset's values, and without a
    preset the default preset's. Explicit fields win over the preset. Ranges are checked by
    ``SaftParams.validate()`` so every bad field comes back together in one 422."""

    def given(self) -> dict[str, Any]:
        """Only the fields the client set to a value (the rest stay the preset's);
        ``preset`` is not a parameter and is left out."""
        return {
            k: v
            for k, v in self.model_dump(exclude_unset=True).items()
            if v is not None and k != "preset"
        }


def _special_validator(p: Param) -> Any:
    """A strict number of ``p.kind`` or one of its special strings ("auto")."""

    def check(v: Any) -> Any:
        if v is None or v in p.special:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float) if p.kind is float else int):
            raise ValueError(f"{p.name} must be {p.allowed()}")
        return float(v) if p.kind is float else v

    return check


def _wire_field(p: Param) -> tuple[Any, Any]:
    """(annotation, Field) of one spec parameter in ``ParamsIn``: strict types, optional;
    the JSON schema states the spec's range, checked later by ``SaftParams.validate()``."""
    description = f"{p.help} Allowed: {p.allowed()}. {p.default_text()}"
    if p.choices is not None:
        return Literal[p.choices] | None, Field(None, description=description)  # type: ignore[valid-type]
    if p.kind is bool:
        return StrictBool | None, Field(None, description=description)
    schema: dict[str, Any] = {"type": "integer" if p.kind is int else "number"}
    for key, bound, exclusive in (
        ("inimum", p.min, p.min_exclusive),
        ("aximum", p.max, p.max_exclusive),
    ):
        if bound is not None:
            schema[("exclusiveM" if exclusive else "m") + key] = bound
    check = PlainValidator(_special_validator(p)) if p.special else None
    base: Any = StrictInt if p.kind is int else StrictNumber
    wire_schema = {"anyOf": [schema, *({"const": s} for s in p.special), {"type": "null"}]}
    kind = Annotated[base | None, WithJsonSchema(wire_schema)]
    if check is not None:
        kind = Annotated[Any, check, WithJsonSchema(wire_schema)]
    return kind, Field(None, description=description)


ParamsIn = create_model(
    "ParamsIn",
    __base__=_ParamsBase,
    preset=(
        Literal[PRESET_NAMES] | None,  # type: ignore[valid-type]
        Field(
            None,
            description="named parameter set (see GET /v1/params for every value): "
            f"{', '.join(repr(n) for n in PRESET_NAMES)}; null = {DEFAULT_PRESET!r}. The job "
            "stores the resolved values, not the name",
        ),
    ),
    **{p.name: _wire_field(p) for p in PRESET_PARAMS},
)


class ParamFieldOut(BaseModel):
    """One SAFT parameter as ``saft_core.params.SPEC`` declares it (GET /v1/params)."""

    name: str
    type: Literal["float", "int", "bool", "choice", "string"]
    default: Any = Field(description="the value when neither the user nor a preset sets one")
    min: float | None
    max: float | None
    min_exclusive: bool
    max_exclusive: bool
    choices: list[str] | None
    nullable: bool
    null_means: str | None = Field(description="what null stands for, when nullable")
    special: list[str] | None = Field(description="strings accepted in place of a number")
    unit: str | None
    help: str
    advanced: bool


class ParamSpecOut(BaseModel):
    """The parameter spec: fields in declaration order and every preset's full values."""

    default_preset: str
    presets: dict[str, dict[str, Any]]
    fields: list[ParamFieldOut]


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


def _described(name: str) -> Any:
    """A required field documented from the iteration record's declaration."""
    return Field(description=RECORD_FIELDS[name].description)


class IterationOut(_Out):
    """One finished iteration (0 is the pretrained network) with its quality metrics; the
    fields are those of ``saft_core.record`` (losses nested, metrics flat)."""

    iteration: int = _described("iteration")
    losses: dict[str, Any] = Field(
        description="loss terms by name: "
        + "; ".join(f"mode {m}: {', '.join(loss_names(m))}" for m in RECORD_MODES)
    )
    rse: float | None = _described("rse")
    rsp: float | None = _described("rsp")
    resolution: float | None = _described("resolution")
    frc_resolution: float | None = _described("frc_resolution")
    haze_ratio: float | None = _described("haze_ratio")
    seconds: float = _described("seconds")
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
        frc_resolution=it.frc_resolution,
        haze_ratio=it.haze_ratio,
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


class RecordFieldOut(BaseModel):
    """One field of the per-iteration record (``saft_core.record``)."""

    name: str = Field(description="key in IterationOut (losses nested) and CSV column name")
    group: Literal["key", "loss", "metric"]
    type: Literal["integer", "number"]
    unit: str = Field(description="empty when unitless")
    meaning: str
    modes: list[Mode] = Field(description="the modes whose records carry the field")
    optional: bool = Field(description="null (blank in the CSV) when not computed")
    column: str


class Vocabulary(BaseModel):
    """Names every client shares, declared once (``saft_core.states``, ``saft_core.record``)."""

    job_states: list[JobState] = Field(description="states of jobs and reconstructions, in order")
    active_states: list[JobState] = Field(description="states that can still change")
    final_states: list[JobState] = Field(description="states that never change again")
    event_kinds: list[EventKind] = Field(description="kinds of /v1/jobs/{id}/events events")
    iteration_record: list[RecordFieldOut]
    csv_columns: dict[str, list[str]] = Field(
        description="header of the run directory's record CSV, by mode"
    )


def vocabulary() -> Vocabulary:
    return Vocabulary(
        job_states=list(JOB_STATES),
        active_states=[s for s in JOB_STATES if s in ACTIVE_STATES],
        final_states=[s for s in JOB_STATES if s in FINAL_STATES],
        event_kinds=list(EVENT_KINDS),
        iteration_record=[RecordFieldOut(**f.to_json()) for f in RECORD_FIELDS.values()],
        csv_columns=CSV_COLUMNS,
    )


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    database: str
    broker: str
