"""What a fine-tuning run hands back: one result per iteration and the run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class IterationResult:
    """What one finished iteration hands to the caller (iteration 0 = the pretrained model)."""

    iteration: int
    losses: dict[str, float]
    seconds: float
    rse: float | None
    rsp: float | None
    resolution: float | None
    sigma: float | None  # RSF sigma used, LR pixels (None in SAFT-WSF)
    preview: np.ndarray  # SR frame 0, normalised intensities, (sH, sW) float32
    checkpoint: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """Flat, JSON-ready row for CSV files and database rows (no arrays)."""
        return {
            "iteration": self.iteration,
            **self.losses,
            "rse": self.rse,
            "rsp": self.rsp,
            "resolution": self.resolution,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class FinetuneSummary:
    """The run's outcome: per-iteration records and the recommended iteration."""

    records: list[dict[str, Any]]
    sigma: float | None
    device: str
    recommended_iteration: int | None
    stopped_early: bool = False
    params: dict[str, Any] = field(default_factory=dict)
