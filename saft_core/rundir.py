"""The run directory: the on-disk record of one fine-tuning run.

The CLI writes it directly; the service keeps one per job under ``<data dir>/jobs/<id>/``,
so a job directory is also a valid CLI run directory. Every file is replaced atomically, so
a crash leaves the previous complete state, never a half-written one.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from saft_core.atomic import write_text
from saft_core.finetune import FinetuneSummary, IterationResult
from saft_core.networks import save_checkpoint_dict
from saft_core.video import write_preview

RECORD_CSV = "SFSRM-SAFT_Finetuning_Record.csv"
RUN_JSON = "run.json"
LOSS_COLUMNS = {
    "saft": [
        "total",
        "degradation",
        "hessian",
        "sparse",
        "rotation",
        "haze",
        "den",
        "objective",
        "fidelity",
    ],
    "wsf": ["total", "wsf"],
}
METRIC_COLUMNS = ["rse", "rsp", "resolution", "seconds"]


class RunDir:
    """Paths and writers of one run directory."""

    def __init__(self, root: str | Path, mode: str = "saft") -> None:
        self.root = Path(root)
        self.mode = mode
        self.records: list[dict[str, Any]] = []

    def checkpoint(self, k: int) -> Path:
        return self.root / f"iteration_{k:02d}.pth"

    def preview_png(self, k: int) -> Path:
        return self.root / "previews" / f"iteration_{k:02d}.png"

    def preview_tif(self, k: int) -> Path:
        return self.root / "previews" / f"iteration_{k:02d}.tif"

    @property
    def record_csv(self) -> Path:
        return self.root / RECORD_CSV

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    def write_iteration(self, result: IterationResult, pixel_size: float | None = None) -> None:
        """Checkpoint, previews and the updated CSV record of one finished iteration."""
        (self.root / "previews").mkdir(parents=True, exist_ok=True)
        save_checkpoint_dict(self.checkpoint(result.iteration), result.checkpoint)
        scale = int(result.checkpoint["config"]["scale"])
        sr_pixel = pixel_size / scale if pixel_size else None
        write_preview(
            self.preview_png(result.iteration),
            self.preview_tif(result.iteration),
            result.preview,
            sr_pixel,
        )
        self.records = [r for r in self.records if r["iteration"] != result.iteration]
        self.records.append(result.record())
        self.records.sort(key=lambda r: r["iteration"])
        self.write_records(self.records)

    def write_records(self, records: list[dict[str, Any]]) -> None:
        """The CSV: one row per iteration; training losses are blank for iteration 0 (the
        pretrained network), which has only its ``objective`` and ``fidelity``."""
        columns = ["iteration", *LOSS_COLUMNS[self.mode], *METRIC_COLUMNS]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for rec in records:
            writer.writerow({c: _fmt(rec.get(c)) for c in columns})
        write_text(self.record_csv, buf.getvalue())

    def write_run_json(self, info: dict[str, Any]) -> None:
        write_text(self.run_json, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def load_records(self) -> None:
        """Re-read the CSV (used when a run resumes in an existing directory)."""
        if not self.record_csv.exists():
            return
        with self.record_csv.open(newline="") as fh:
            self.records = [
                {k: (int(v) if k == "iteration" else _parse(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]

    def last_iteration(self) -> int | None:
        """Highest iteration with a checkpoint on disk, or None."""
        found = sorted(self.root.glob("iteration_*.pth"))
        return int(found[-1].stem.split("_")[1]) if found else None


def summary_json(summary: FinetuneSummary, **extra: Any) -> dict[str, Any]:
    """run.json content: parameters, sigma used, device, recommendation and its rule."""
    from saft_core import recommend

    return {
        "params": summary.params,
        "sigma_used": summary.sigma,
        "device": summary.device,
        "iterations_done": max((r["iteration"] for r in summary.records), default=0),
        "recommended_iteration": summary.recommended_iteration,
        "recommendation_rule": (recommend.__doc__ or "").strip().split("\n\n")[1],
        "stopped_early": summary.stopped_early,
        **extra,
    }


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _parse(v: str) -> float | None:
    return float(v) if v not in ("", None) else None
