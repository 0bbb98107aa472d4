"""Shared set-up of a fine-tuning run: inputs, frozen network, tile grid, optimiser, weight
averaging and warm-up, the iteration loop and what each iteration reports.

The training step itself is a strategy (``saft_step.SaftStep`` or ``wsf_step.WsfStep``)
that works on this shared state.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from saft_core.errors import Cancelled
from saft_core.finetune.results import IterationResult
from saft_core.finetune.run_state import checkpoint
from saft_core.params import SaftParams
from saft_core.tiling import tiled_apply

log = logging.getLogger(__name__)

GRAD_CLIP = 1.5
FROZEN_IN_MEMORY_BYTES = 2 * 1024**3  # above this the frozen outputs go to a memmap on disk
INFERENCE_TILE = 128
INFERENCE_OVERLAP = 24
FRC_FRAMES = 8  # frames (half even, half odd) whose SR outputs the FRC compares
FRC_CROP = 96  # LR px: side of the central window the FRC is measured on
# haze_ratio: structure is above HAZE_STRUCTURE x the pretrained peak; empty is farther than
# HAZE_MARGIN_SR_PX from anything above HAZE_EMPTY x that peak.
HAZE_STRUCTURE = 0.25
HAZE_EMPTY = 0.02
HAZE_MARGIN_SR_PX = 4

ProgressFn = Callable[[int, int, dict[str, Any]], None]


class TrainingStep:
    """A training strategy over a ``TrainingRun``; the defaults are those of a step without
    a DEN, RSF or background map (SAFT-WSF)."""

    den: nn.Module | None = None
    den_opt: torch.optim.Optimizer | None = None
    sigma: float | None = None  # RSF sigma, LR pixels
    bg: np.ndarray | None = None  # background map (T, H, W), LR grid

    def begin_iteration(self) -> None:
        """Called before the first step of every iteration."""

    def __call__(
        self, origin: tuple[int, int], t0: int, rng: np.random.Generator
    ) -> dict[str, float]:
        """One optimiser step on the tile at ``origin`` (LR pixels); returns its losses.

        ``t0`` is the first frame of this step's window (drawn by the loop); ``rng`` is the
        iteration's generator, for any further draws (in the same order on resume).
        """
        raise NotImplementedError

    def fixed_window_objective(self) -> dict[str, float]:
        """Extra per-iteration figures of the shown network (none by default)."""
        return {}

    def close(self) -> None:
        """Release arrays that may be memmaps of the run's temporary directory."""


class TrainingRun:
    """State shared by both training steps: models, optimiser, inputs and the tile grid."""

    def __init__(
        self,
        params: SaftParams,
        model: nn.Module,
        dev: torch.device,
        x: torch.Tensor,
        e: torch.Tensor,
        *,
        on_progress: ProgressFn | None = None,
        should_cancel: Callable[[], bool] | None = None,
        compute_metrics: bool = True,
    ) -> None:
        self.params, self.model, self.dev = params, model, dev
        self.scale = int(model.config.scale)
        self.frozen = copy.deepcopy(model).eval().requires_grad_(False)
        self.x, self.e = x, e  # (T, H, W) on the CPU; tiles move to the device per step
        self.on_progress, self.should_cancel = on_progress, should_cancel
        self.compute_metrics = compute_metrics
        n_frames, height, width = x.shape
        self.tile = min(params.tile, height, width)
        self.window = min(params.window, n_frames)
        self.origins = tile_origins(height, width, self.tile)
        # Reference: one random window per tile per iteration; None draws enough windows per
        # tile to visit every frame about once.
        self.windows_per_tile = params.windows_per_tile or math.ceil(n_frames / self.window)
        self.steps_per_iteration = len(self.origins) * self.windows_per_tile
        self.total_steps = params.n_iterations * self.steps_per_iteration
        self.steps_done = 0
        self.opt = torch.optim.Adam(model.parameters(), lr=params.lr)
        # The averaged weights live in a copy of the network (None: averaging is off).
        self.averaged: nn.Module | None = (
            copy.deepcopy(model).eval().requires_grad_(False) if params.ema > 0 else None
        )
        self.step: TrainingStep = TrainingStep()
        self.records: list[dict[str, Any]] = []
        self.haze_masks: tuple[np.ndarray, ...] | None = None  # (empty, structure), SR grid
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def shown(self) -> nn.Module:
        """The network that previews, metrics and checkpoints show (averaged when ema > 0)."""
        return self.averaged if self.averaged is not None else self.model

    def input(self, frames: Any, rows: slice = slice(None), cols: slice = slice(None)):
        """Network input [edge, LR] for the given frames and LR window, (N, 2, h, w)."""
        return torch.stack([self.e[frames, rows, cols], self.x[frames, rows, cols]], dim=1)

    def infer(self, model: nn.Module, frames: Any) -> np.ndarray:
        """|model| on whole frames by tiled inference, (N, 1, sH, sW) on the CPU."""
        return infer(model, self.input(frames), self.scale)

    def buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array for frozen outputs: in memory when small, a disk memmap when large."""
        if math.prod(shape) * 4 <= FROZEN_IN_MEMORY_BYTES:
            return np.empty(shape, np.float32)
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="saft-frozen-")
        path = Path(self._tmpdir.name) / f"{name}.f32"
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)

    def close(self) -> None:
        self.step.close()  # release the memmaps before deleting their files
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def iteration(self, k: int) -> dict[str, float]:
        """One pass over the tile grid; returns the mean of each loss component."""
        rng = np.random.default_rng([self.params.seed, k])
        order = rng.permutation(np.repeat(np.arange(len(self.origins)), self.windows_per_tile))
        n_frames = self.x.shape[0]
        sums: dict[str, float] = {}
        self.step.begin_iteration()
        for i in order:
            if self.should_cancel is not None and self.should_cancel():
                raise Cancelled("cancelled by request")
            t0 = int(rng.integers(0, n_frames - self.window + 1))
            step = self.step(self.origins[i], t0, rng)
            for name, value in step.items():
                sums[name] = sums.get(name, 0.0) + value
            self.steps_done += 1
            if self.on_progress is not None:
                self.on_progress(
                    self.steps_done, self.total_steps, {"iteration": k, "loss": step["total"]}
                )
        return {name: value / len(order) for name, value in sums.items()}

    def sr_update(self, total: torch.Tensor) -> None:
        """One optimiser step of the SR network: warm-up rate, clipping, weight averaging."""
        p = self.params
        rate = p.lr * min(1.0, (self.steps_done + 1) / p.warmup) if p.warmup else p.lr
        for group in self.opt.param_groups:
            group["lr"] = rate
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.opt.step()
        if self.averaged is not None:
            with torch.no_grad():
                for avg, cur in zip(
                    self.averaged.state_dict().values(),
                    self.model.state_dict().values(),
                    strict=True,
                ):
                    if avg.is_floating_point():
                        avg.lerp_(cur, 1.0 - p.ema)
                    else:
                        avg.copy_(cur)

    def report(self, k: int, step_losses: dict[str, float], seconds: float) -> IterationResult:
        """Preview, metrics and checkpoint of iteration k; its record joins ``records``."""
        preview = self.infer(self.shown, slice(0, 1))[0, 0]
        step_losses = {**step_losses, **self.step.fixed_window_objective()}
        if self.compute_metrics:
            # with a background map, RSE/RSP (and so the guard) judge the structure signal
            bg0 = self.step.bg[0] if self.step.bg is not None else None
            metrics = _safe_metrics(preview, self.x[0].numpy(), self.scale, bg0)
        else:
            metrics = {"rse": None, "rsp": None, "resolution": None}
        metrics["frc_resolution"] = self.frc_resolution()
        metrics["haze_ratio"] = self.haze_ratio(preview)
        result = IterationResult(
            iteration=k,
            losses=step_losses,
            seconds=seconds,
            sigma=self.step.sigma,
            preview=preview,
            checkpoint=checkpoint(self, k, step_losses),
            **metrics,
        )
        self.records.append(result.record())
        result.checkpoint["saft"]["records"] = list(self.records)
        return result

    def haze_ratio(self, preview: np.ndarray) -> float | None:
        """Mean SR (frame 0) where the pretrained output is empty / mean SR on its structure.

        Why: fitting the LR data ever better, a network can paint out-of-focus light and
        background into the SR image as haze; the pretrained network's output (structure
        only) says where nothing should be, so haze growth is measured without a truth."""
        if self.haze_masks is None:  # from the frozen (pretrained) network: resume-safe
            self.haze_masks = background_masks(self.infer(self.frozen, slice(0, 1))[0, 0]) or ()
        if not self.haze_masks:
            return None
        empty, structure = self.haze_masks
        on_structure = float(preview[structure].mean())
        if on_structure <= 0:
            return None
        return _finite_or_none(float(preview[empty].mean()) / on_structure)

    def frc_resolution(self) -> float | None:
        """FRC resolution (SR px) of the shown network: its SR of the even vs the odd frames
        of a central window. The halves carry independent noise, so texture the network makes
        of noise does not count as resolution. None for a single frame."""
        n_frames, height, width = self.x.shape
        count = min(FRC_FRAMES, n_frames - n_frames % 2)
        if count < 2:
            return None
        start = (n_frames - count) // 2
        ch, cw = min(FRC_CROP, height), min(FRC_CROP, width)
        y0, x0 = (height - ch) // 2, (width - cw) // 2
        inp = self.input(slice(start, start + count), slice(y0, y0 + ch), slice(x0, x0 + cw))
        sr = infer(self.shown, inp, self.scale)[:, 0]
        from saft_core.resolution import stack_frc_resolution

        try:
            return _finite_or_none(stack_frc_resolution(sr[0::2].mean(0), sr[1::2].mean(0)))
        except Exception:  # noqa: BLE001 - metrics are advisory
            log.warning("FRC resolution failed", exc_info=True)
            return None


def background_masks(sr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(empty, structure) masks of an SR frame: far from anything above 2% of its peak,
    and above 25% of it; None when either is missing (a blank or a filled frame)."""
    from scipy.ndimage import binary_dilation

    peak = float(np.percentile(sr, 99.9))
    if peak <= 0:
        return None
    structure = sr > HAZE_STRUCTURE * peak
    empty = ~binary_dilation(sr > HAZE_EMPTY * peak, iterations=HAZE_MARGIN_SR_PX)
    if not structure.any() or empty.mean() < 0.05:
        return None
    return empty, structure


def tile_origins(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Non-overlapping tile origins covering the frame; the last row/column is border-aligned."""

    def starts(n: int) -> list[int]:
        out = list(range(0, n - tile + 1, tile))
        if out[-1] + tile < n:
            out.append(n - tile)
        return out

    return [(y, x) for y in starts(height) for x in starts(width)]


def infer(model: nn.Module, inp: torch.Tensor, scale: int) -> np.ndarray:
    """|model(inp)| by tiled inference, as a numpy array on the SR grid."""
    was_training = model.training
    model.eval()
    out = tiled_apply(
        model, inp, scale, tile=INFERENCE_TILE, overlap=INFERENCE_OVERLAP, batch_size=4
    )
    model.train(was_training)
    return out.abs().float().cpu().numpy()


def _safe_metrics(
    sr: np.ndarray, lr_frame: np.ndarray, scale: int, background: np.ndarray | None = None
) -> dict[str, float | None]:
    """Artifact metrics; a failure here must never end a fine-tuning run."""
    from saft_core.metrics import artifact_metrics

    try:
        m = artifact_metrics(sr, lr_frame, scale, background=background)
    except Exception:  # noqa: BLE001 - metrics are advisory
        log.warning("artifact metrics failed", exc_info=True)
        return {"rse": None, "rsp": None, "resolution": None}
    return {k: _finite_or_none(m.get(k)) for k in ("rse", "rsp", "resolution")}


def _finite_or_none(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None
