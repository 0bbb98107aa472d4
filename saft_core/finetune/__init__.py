"""The SAFT fine-tuning loop (and its SAFT-WSF variant).

One iteration is one pass over the LR tile grid; each step takes one tile with a random
window of adjacent frames. Randomness is drawn from a generator seeded by (seed, iteration),
so resuming after iteration k replays exactly what an uninterrupted run would have done.
With ``ema > 0`` an exponential moving average of the SR weights is kept beside the trained
weights; it is what previews, metrics and checkpoints show (the trained weights ride along in
the checkpoint for resuming).

Where things are: ``run`` (shared set-up, the iteration loop, the SR update), ``saft_step``
and ``wsf_step`` (the two training steps), ``run_state`` (checkpoint and resume), the
weighted objective in ``saft_core.losses.Objective``.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from saft_core.device import describe_device, select_device
from saft_core.errors import InvalidParameterError, ShapeMismatchError
from saft_core.finetune.results import FinetuneSummary, IterationResult
from saft_core.finetune.run import ProgressFn, TrainingRun
from saft_core.finetune.run_state import load_checkpoint, restore
from saft_core.finetune.saft_step import SaftStep
from saft_core.finetune.wsf_step import WsfStep
from saft_core.networks import load_model
from saft_core.normalise import normalise_edges, normalise_lr
from saft_core.params import SaftParams
from saft_core.recommend import recommend_iteration

__all__ = ["FinetuneSummary", "IterationResult", "finetune"]

log = logging.getLogger(__name__)


def finetune(
    stack: np.ndarray,
    edges: np.ndarray | None,
    params: SaftParams,
    *,
    sr_model: nn.Module | str | Path = "default",
    den_model: nn.Module | str | Path | None = "default",
    smlm: np.ndarray | None = None,
    device: str | torch.device | None = None,
    resume: dict[str, Any] | str | Path | None = None,
    on_iteration: Callable[[IterationResult], None] | None = None,
    on_progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
    compute_metrics: bool = True,
) -> FinetuneSummary:
    """Fine-tune ``sr_model`` on one LR stack (T, H, W); see docs/architecture.md.

    ``compute_metrics=False`` skips the per-iteration SQUIRREL/decorrelation metrics.
    """
    params = params.validate()
    dev = select_device(str(device) if device is not None else None)
    stack = _as_stack(stack, "lr")
    if edges is None:
        from saft_core.edges import compute_edges

        edges = compute_edges(stack)
    edges = _as_stack(edges, "edge")
    if edges.shape != stack.shape:
        raise ShapeMismatchError(
            f"edge map shape {edges.shape} does not match LR stack shape {stack.shape}",
            field="edge",
        )
    model = _load(sr_model, "sr")
    estimated_sigma = None
    if params.mode == "saft" and params.sigma == "auto" and resume is None:
        estimated_sigma = _estimate_sigma(stack, getattr(model, "training_condition", None))
    run = TrainingRun(
        params,
        model.to(dev),
        dev,
        torch.from_numpy(normalise_lr(stack)),
        torch.from_numpy(normalise_edges(edges)),
        on_progress=on_progress,
        should_cancel=should_cancel,
        compute_metrics=compute_metrics,
    )
    if params.mode == "wsf":
        if smlm is None:
            raise InvalidParameterError("mode 'wsf' needs an SMLM image", field="smlm")
        run.step = WsfStep(run, np.asarray(smlm, dtype=np.float32))
    else:
        den = _load(den_model or "default", "den").to(dev)
        run.step = SaftStep(run, den, estimated_sigma=estimated_sigma)

    def report(k: int, step_losses: dict[str, float], seconds: float) -> None:
        result = run.report(k, step_losses, seconds)
        if on_iteration is not None:
            on_iteration(result)

    start = 0 if resume is None else restore(run, load_checkpoint(resume))
    if start == 0:
        report(0, {}, 0.0)
    stopped_early = False
    try:
        for k in range(start + 1, params.n_iterations + 1):
            t0 = time.perf_counter()
            step_losses = run.iteration(k)
            report(k, step_losses, time.perf_counter() - t0)
            if params.early_stop and recommend_iteration(run.records) is not None:
                stopped_early = k < params.n_iterations
                break
    finally:
        run.close()
    return FinetuneSummary(
        records=run.records,
        sigma=run.step.sigma,
        device=describe_device(dev),
        recommended_iteration=recommend_iteration(run.records, final=True),
        stopped_early=stopped_early,
        params=params.to_dict(),
    )


def _load(spec: nn.Module | str | Path, kind: str) -> nn.Module:
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    return load_model(spec, kind)


def _estimate_sigma(stack: np.ndarray, condition: dict | None) -> float:
    """sigma 'auto': the stack's PSF sigma (LR px), checked against the model's training
    sampling; a stack too weak to estimate falls back to the reference value with a warning."""
    from saft_core.params import SPEC_BY_NAME
    from saft_core.psf import sigma_for_model

    try:
        sigma, plan = sigma_for_model(stack, condition)
    except InvalidParameterError as exc:
        if exc.field != "psf":
            raise
        fallback = float(SPEC_BY_NAME["sigma"].in_preset("reference"))
        log.warning("sigma 'auto': %s; using %.2f LR px", exc, fallback)
        return fallback
    log.info("sigma 'auto': PSF sigma %.3f LR px (%s)", sigma, plan.reason)
    return sigma


def _as_stack(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ShapeMismatchError(f"{name} must be (T, H, W), got shape {arr.shape}", field=name)
    return arr
