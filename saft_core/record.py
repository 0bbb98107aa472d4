"""The per-iteration record, declared once: its fields, their types, units and meanings.

A record is the flat row ``IterationResult.record()`` returns and the run directory's CSV
holds: ``iteration``, the loss terms of the run's mode, then the quality metrics. The
service stores the losses as one JSON object and the metrics as columns; the API, the SSE
``iteration`` event, the client and the dashboard read the same names. Standard library only:
the light client and the API import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

RECORD_CSV = "SFSRM-SAFT_Finetuning_Record.csv"  # the run directory's record (the authors' name)

Group = Literal["key", "loss", "metric"]
MODES = ("saft", "wsf")


@dataclass(frozen=True)
class RecordField:
    """One field of the record; ``column`` is its CSV header (and dict key)."""

    name: str
    group: Group
    type: type
    unit: str
    meaning: str
    modes: tuple[str, ...] = MODES  # the modes whose records carry it (losses differ)
    optional: bool = False  # None/blank when not computed (iteration 0's training losses)

    @property
    def column(self) -> str:
        return self.name

    @property
    def description(self) -> str:
        """The meaning with its unit, as the API schema shows it."""
        return f"{self.meaning} ({self.unit})" if self.unit else self.meaning

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["type"] = "integer" if self.type is int else "number"
        out["column"] = self.column
        return out


_SAFT = ("saft",)
_TRAIN = "training loss: mean over the iteration's random windows; blank for iteration 0"

FIELDS: tuple[RecordField, ...] = (
    RecordField("iteration", "key", int, "", "iteration number; 0 is the pretrained network"),
    RecordField("total", "loss", float, "", f"total weighted loss, {_TRAIN}", optional=True),
    RecordField(
        "degradation",
        "loss",
        float,
        "",
        f"RSF-degraded SR vs DEN target (data fidelity), {_TRAIN}",
        _SAFT,
        True,
    ),
    RecordField(
        "hessian", "loss", float, "", f"temporal-spatial continuity term, {_TRAIN}", _SAFT, True
    ),
    RecordField("sparse", "loss", float, "", f"sparsity (intensity) term, {_TRAIN}", _SAFT, True),
    RecordField("rotation", "loss", float, "", f"rotation consistency term, {_TRAIN}", _SAFT, True),
    RecordField(
        "haze",
        "loss",
        float,
        "",
        f"haze penalty on empty pixels (only when haze_level > 0), {_TRAIN}",
        _SAFT,
        True,
    ),
    RecordField("den", "loss", float, "", f"DEN network loss, {_TRAIN}", _SAFT, True),
    RecordField(
        "objective",
        "loss",
        float,
        "",
        "SAFT objective of the shown network on fixed windows (comparable across iterations, "
        "iteration 0 included); lower is better",
        _SAFT,
        True,
    ),
    RecordField(
        "fidelity",
        "loss",
        float,
        "",
        "degradation part of the objective on the same fixed windows; lower is better",
        _SAFT,
        True,
    ),
    RecordField(
        "wsf",
        "loss",
        float,
        "",
        f"widefield-sum fidelity vs the SMLM image, {_TRAIN}",
        ("wsf",),
        True,
    ),
    RecordField(
        "rse",
        "metric",
        float,
        "LR intensity units",
        "SQUIRREL RMS error of SR vs the LR frame",
        optional=True,
    ),
    RecordField(
        "rsp",
        "metric",
        float,
        "",
        "SQUIRREL Pearson correlation of SR vs the LR frame, -1..1",
        optional=True,
    ),
    RecordField(
        "resolution", "metric", float, "SR pixels", "decorrelation resolution", optional=True
    ),
    RecordField(
        "frc_resolution",
        "metric",
        float,
        "SR pixels",
        "Fourier ring correlation resolution between the SR outputs of the even and the odd "
        "frames (independent noise, so texture made from noise does not count); blank for a "
        "single frame",
        optional=True,
    ),
    RecordField(
        "haze_ratio",
        "metric",
        float,
        "",
        "mean SR of frame 0 where the pretrained output is empty / mean SR on its structure: "
        "haze the fine-tuning added (no ground truth needed)",
        optional=True,
    ),
    RecordField("seconds", "metric", float, "s", "wall-clock time of the iteration"),
)

BY_NAME: dict[str, RecordField] = {f.name: f for f in FIELDS}
METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS if f.group == "metric")


def loss_names(mode: str) -> tuple[str, ...]:
    """The loss terms a ``mode`` run records, in CSV order."""
    return tuple(f.name for f in FIELDS if f.group == "loss" and mode in f.modes)


def csv_columns(mode: str) -> list[str]:
    """The run directory CSV header of a ``mode`` run."""
    return ["iteration", *loss_names(mode), *METRIC_NAMES]


CSV_COLUMNS: dict[str, list[str]] = {mode: csv_columns(mode) for mode in MODES}


def make_record(
    iteration: int, losses: Mapping[str, float], metrics: Mapping[str, Any], *, seconds: float
) -> dict[str, Any]:
    """The flat, JSON-ready row of one iteration (no arrays); seconds rounded to ms. Every
    metric of the declaration is present (None when not computed)."""
    quality = {name: metrics.get(name) for name in METRIC_NAMES if name != "seconds"}
    return {"iteration": iteration, **losses, **quality, "seconds": round(seconds, 3)}


def event_data(
    iteration: int,
    losses: Mapping[str, Any],
    metrics: Mapping[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """The ``iteration`` event / stored shape: losses nested, metrics flat (plus ``extra``,
    e.g. the RSF ``sigma`` in LR pixels)."""
    return {
        "iteration": iteration,
        "losses": dict(losses),
        **{name: metrics.get(name) for name in METRIC_NAMES},
        **extra,
    }
