"""The run directory: the on-disk record of one fine-tuning run, and ``run_into``, the one
path that runs a fine-tune into it (used by the CLI and the worker alike).

The service keeps one per job under ``<data dir>/jobs/<id>/``, so a job directory is also a
valid CLI run directory. Every file is replaced atomically, so a crash leaves the previous
complete state, never a half-written one.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from saft_core.atomic import write_text
from saft_core.errors import InvalidParameterError
from saft_core.finetune import FinetuneSummary, IterationResult
from saft_core.finetune.run_state import load_checkpoint
from saft_core.networks import save_checkpoint_dict
from saft_core.params import SaftParams
from saft_core.record import RECORD_CSV, csv_columns
from saft_core.video import write_preview

RUN_JSON = "run.json"


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
        columns = csv_columns(self.mode)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for rec in records:
            writer.writerow({c: _fmt(rec.get(c)) for c in columns})
        write_text(self.record_csv, buf.getvalue())

    def write_run_json(self, info: dict[str, Any]) -> None:
        """run.json; NaN and infinities become null (they are not JSON)."""
        text = json.dumps(_json_safe(info), indent=2, sort_keys=True, default=str)
        write_text(self.run_json, text + "\n")

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


def resume_after(run_dir: str | Path, resume: bool | int) -> int | None:
    """The iteration a run into ``run_dir`` continues after: None for a fresh run (False),
    the last checkpoint in the directory (True) or the given iteration (an int)."""
    if resume is False:
        return None
    if resume is True:
        last = RunDir(run_dir).last_iteration()
        if last is None:
            raise InvalidParameterError(f"nothing to resume in {run_dir}", field="resume")
        return last
    return int(resume)


def run_into(
    run_dir: str | Path,
    stack: np.ndarray,
    edges: np.ndarray | None,
    params: SaftParams,
    *,
    resume: bool | int = False,
    on_iteration: Callable[[IterationResult], None] | None = None,
    pixel_size: float | None = None,
    run_info: dict[str, Any] | None = None,
    **engine_options: Any,
) -> FinetuneSummary:
    """Fine-tune into ``run_dir``: each iteration's checkpoint, previews and CSV row are
    written before ``on_iteration`` sees it; run.json (``run_info`` added) at the end.

    ``resume`` as in ``resume_after``; rows after the resumed iteration are dropped from the
    CSV, so the directory ends as after an uninterrupted run. ``pixel_size``: LR pixel size
    (for the previews). ``engine_options``: the other keywords of ``finetune`` (``sr_model``,
    ``den_model``, ``smlm``, ``device``, ``on_progress``, ``should_cancel``,
    ``compute_metrics``), passed on as they are.
    """
    run = RunDir(run_dir, params.mode)
    start = resume_after(run_dir, resume)
    checkpoint = None
    if start is not None:
        checkpoint = load_checkpoint(run.checkpoint(start))
        # The checkpoint carries the records up to its iteration; later CSV rows are stale.
        saved = checkpoint.get("saft", {}).get("records")
        if saved is None:  # a checkpoint from before records travelled with it
            run.load_records()
            saved = [r for r in run.records if r["iteration"] <= start]
        run.records = [dict(r) for r in saved]

    def write_iteration(result: IterationResult) -> None:
        run.write_iteration(result, pixel_size)
        if on_iteration is not None:
            on_iteration(result)

    # Looked up at call time, so tests can stand in for the engine. (``saft_core.finetune`` as
    # an attribute is the function, by the public-surface rule; the module is in sys.modules.)
    engine = importlib.import_module("saft_core.finetune")
    summary = engine.finetune(
        stack, edges, params, resume=checkpoint, on_iteration=write_iteration, **engine_options
    )
    run.write_run_json(summary_json(summary, **(run_info or {})))
    return summary


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


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _parse(v: str) -> float | None:
    return float(v) if v not in ("", None) else None
