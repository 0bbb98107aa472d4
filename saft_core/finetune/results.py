"""What a fine-tuning run hands back: one result per iteration and the run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from saft_core.record import METRIC_NAMES, make_record


@dataclass
class IterationResult:
    """What one finished iteration hands to the caller (iteration 0 = the pretrained model)."""

    iteration: int
    losses: dict[str, float]
    seconds: float
    rse: float | None
    rsp: float | None
    resolution: float | None  # decorrelation, SR pixels
    frc_resolution: float | None  # FRC of even vs odd frames, SR pixels (None: one frame)
    haze_ratio: float | None  # SR where the pretrained output is empty / on its structure
    sigma: float | None  # RSF sigma used, LR pixels (None in SAFT-WSF)
    preview: np.ndarray  # SR frame 0, normalised intensities, (sH, sW) float32
    checkpoint: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float | None]:
        """The quality metrics of the record declaration (saft_core.record)."""
        return {name: getattr(self, name, None) for name in METRIC_NAMES if name != "seconds"}

    def record(self) -> dict[str, Any]:
        """Flat, JSON-ready row for CSV files and database rows (no arrays)."""
        return make_record(self.iteration, self.losses, self.metrics, seconds=self.seconds)


@dataclass
class FinetuneSummary:
    """The run's outcome: per-iteration records and the recommended iteration."""

    records: list[dict[str, Any]]
    sigma: float | None
    device: str
    recommended_iteration: int | None
    stopped_early: bool = False
    params: dict[str, Any] = field(default_factory=dict)
