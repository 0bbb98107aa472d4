"""Everything checked about a job request before a row is written (422 naming the field).

Parameter ranges come from ``SaftParams`` (the same messages as the CLI), over a named
preset's values when ``params.preset`` is given (the job keeps the resolved values, so a
record shows every value used). References are checked against the caller's own datasets
and models (someone else's id reads as missing), and shapes against each other using the
dataset rows (validated at upload: (T, H, W), finite), so a job that is queued can
actually run.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.problems import Problem
from api.schemas import JobCreate
from persistence.tables import Dataset, Job, ModelFile, User
from saft_core.errors import InvalidParameterError
from saft_core.params import SaftParams

DEFAULT_SCALE = 4  # the default SR network's scale (see saft_core.networks)


@dataclass
class CheckedJob:
    """A request that passed every check, ready for ``persistence.jobs.create_job``."""

    params: SaftParams
    lr_dataset_id: str
    edge_dataset_id: str | None
    smlm_dataset_id: str | None
    sr_model: str
    den_model: str | None

    def same_request_as(self, job: Job) -> bool:
        """True if ``job`` was created from an equivalent request (idempotent replay)."""
        return (
            job.lr_dataset_id == self.lr_dataset_id
            and job.edge_dataset_id == self.edge_dataset_id
            and job.smlm_dataset_id == self.smlm_dataset_id
            and job.sr_model == self.sr_model
            and job.den_model == self.den_model
            and job.mode == self.params.mode
            and dict(job.params) == self.params.to_dict()
        )


def check_job_request(session: Session, user: User, body: JobCreate) -> CheckedJob:
    """Validate params, references and shapes; raise one 422 listing every bad field."""
    errors: list[tuple[str, str]] = []
    params: SaftParams | None = None
    given = body.params.given()
    preset = body.params.preset
    try:
        if preset is None:
            params = SaftParams.from_dict({**given, "mode": body.mode})
        else:  # the preset's values, then the explicit fields over them
            params = SaftParams.preset(preset, **given, mode=body.mode)
    except InvalidParameterError as exc:
        field = exc.field or "params"
        errors.append((field if field == "mode" else f"params.{field}", exc.message))

    lr = _dataset(session, user, body.lr_dataset, "lr_dataset", errors)
    edge = _dataset(session, user, body.edge_dataset, "edge_dataset", errors)
    smlm = _dataset(session, user, body.smlm_dataset, "smlm_dataset", errors)
    sr = _model(session, user, body.sr_model, "sr", "sr_model", errors)
    _model(session, user, body.den_model, "den", "den_model", errors)

    if lr is not None:
        shape = list(lr.shape)
        if len(shape) != 3:
            errors.append(("lr_dataset", f"the LR stack must be (T, H, W), got {shape}"))
        elif edge is not None and list(edge.shape) != shape:
            errors.append(
                (
                    "edge_dataset",
                    f"edge map shape {list(edge.shape)} does not match the LR stack {shape}",
                )
            )
        if body.mode == "wsf" and smlm is not None and len(shape) == 3:
            scale = DEFAULT_SCALE
            if isinstance(sr, ModelFile):
                scale = int((sr.config or {}).get("scale", DEFAULT_SCALE))
            want = [scale * shape[1], scale * shape[2]]
            got = list(smlm.shape)
            if got[-2:] != want or (len(got) == 3 and got[0] != 1):
                errors.append(
                    (
                        "smlm_dataset",
                        f"the SMLM image must be one {want[0]}x{want[1]} frame (the SR grid: "
                        f"{scale}x the {shape[1]}x{shape[2]} LR frame), got {got}",
                    )
                )
    if body.mode == "wsf" and body.smlm_dataset is None:
        errors.append(("smlm_dataset", "mode 'wsf' needs an SMLM image (smlm_dataset)"))
    if body.mode == "saft" and body.smlm_dataset is not None:
        errors.append(("smlm_dataset", "smlm_dataset is only used by mode 'wsf'"))

    if errors or params is None:
        parts = [f"{f}: {m}" for f, m in errors] or ["invalid job request"]
        detail = (
            parts[0] if len(parts) == 1 else f"{len(parts)} invalid fields: " + "; ".join(parts)
        )
        raise Problem(422, detail, slug="validation-error", errors=errors)
    return CheckedJob(
        params=params,
        lr_dataset_id=body.lr_dataset,
        edge_dataset_id=body.edge_dataset,
        smlm_dataset_id=body.smlm_dataset,
        sr_model=body.sr_model,
        den_model=body.den_model,
    )


def _dataset(
    session: Session, user: User, ident: str | None, field: str, errors: list[tuple[str, str]]
) -> Dataset | None:
    if ident is None:
        return None
    ds = session.scalar(select(Dataset).where(Dataset.id == ident, Dataset.owner_id == user.id))
    if ds is None:
        errors.append((field, f"dataset {ident} not found"))
    return ds


def _model(
    session: Session,
    user: User,
    ident: str | None,
    kind: str,
    field: str,
    errors: list[tuple[str, str]],
) -> ModelFile | str | None:
    if ident is None or ident == "default":
        return ident
    m = session.scalar(
        select(ModelFile).where(ModelFile.id == ident, ModelFile.owner_id == user.id)
    )
    if m is None:
        errors.append((field, f"model {ident} not found"))
        return None
    if m.kind != kind:
        errors.append((field, f"model {ident} is a {m.kind.upper()} network, not {kind.upper()}"))
    return m
