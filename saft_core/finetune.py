"""The SAFT fine-tuning loop (and its SAFT-WSF variant).

One iteration is one pass over the LR tile grid; each step takes one tile with a random
window of adjacent frames. Randomness is drawn from a generator seeded by (seed, iteration),
so resuming after iteration k replays exactly what an uninterrupted run would have done.
With ``ema > 0`` an exponential moving average of the SR weights is kept beside the trained
weights; it is what previews, metrics and checkpoints show (the trained weights ride along in
the checkpoint for resuming).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from saft_core import losses
from saft_core.device import describe_device, select_device
from saft_core.errors import Cancelled, InvalidParameterError, ShapeMismatchError
from saft_core.networks import load_model
from saft_core.normalise import normalise_edges, normalise_lr
from saft_core.params import SaftParams
from saft_core.recommend import recommend_iteration
from saft_core.rsf import degrade, degrade_over_background, degrade_with_background
from saft_core.tiling import tiled_apply

log = logging.getLogger(__name__)

HESSIAN_WEIGHT = 0.025  # reference weight of the continuity term, times continuity_level
HESSIAN_LT = 0.5  # temporal weight inside the Hessian
GRAD_CLIP = 1.5
DEN_LR_FACTOR = 0.1
FROZEN_IN_MEMORY_BYTES = 2 * 1024**3  # above this the frozen outputs go to a memmap on disk
INFERENCE_TILE = 128
INFERENCE_OVERLAP = 24

ProgressFn = Callable[[int, int, dict[str, Any]], None]


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
class _Window:
    """One training window on the device: input (N, 2, h, w) and per-pixel targets."""

    inp: torch.Tensor
    y0: torch.Tensor
    y_rot: torch.Tensor
    bg: torch.Tensor | None
    empty: torch.Tensor | None  # 0/1 on the SR grid


@dataclass
class FinetuneSummary:
    """The run's outcome: per-iteration records and the recommended iteration."""

    records: list[dict[str, Any]]
    sigma: float | None
    device: str
    recommended_iteration: int | None
    stopped_early: bool = False
    params: dict[str, Any] = field(default_factory=dict)


def finetune(
    lr: np.ndarray,
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
    lr = _as_stack(lr, "lr")
    if edges is None:
        from saft_core.edges import compute_edges

        edges = compute_edges(lr)
    edges = _as_stack(edges, "edge")
    if edges.shape != lr.shape:
        raise ShapeMismatchError(
            f"edge map shape {edges.shape} does not match LR stack shape {lr.shape}",
            field="edge",
        )
    model = _load(sr_model, "sr").to(dev)
    scale = int(model.config.scale)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)

    x = torch.from_numpy(normalise_lr(lr))
    e = torch.from_numpy(normalise_edges(edges))
    run = _Run(params, model, frozen, dev, scale, x, e, on_progress, should_cancel)
    run.compute_metrics = compute_metrics

    if params.mode == "wsf":
        if smlm is None:
            raise InvalidParameterError("mode 'wsf' needs an SMLM image", field="smlm")
        run.setup_wsf(np.asarray(smlm, dtype=np.float32))
    else:
        run.setup_saft(_load(den_model or "default", "den").to(dev))

    start = 0
    if resume is not None:
        start = run.restore(_load_resume(resume))
    records = run.records
    if start == 0:
        run.emit(0, {}, 0.0, on_iteration)

    stopped_early = False
    try:
        for k in range(start + 1, params.n_iterations + 1):
            t0 = time.perf_counter()
            step_losses = run.iteration(k)
            run.emit(k, step_losses, time.perf_counter() - t0, on_iteration)
            if params.early_stop and recommend_iteration(records) is not None:
                stopped_early = k < params.n_iterations
                break
    finally:
        run.close()
    return FinetuneSummary(
        records=records,
        sigma=run.sigma,
        device=describe_device(dev),
        recommended_iteration=recommend_iteration(records, final=True),
        stopped_early=stopped_early,
        params=params.to_dict(),
    )


class _Run:
    """State of one fine-tuning run: models, optimisers, frozen targets and the tile grid."""

    def __init__(
        self,
        params: SaftParams,
        model: nn.Module,
        frozen: nn.Module,
        dev: torch.device,
        scale: int,
        x: torch.Tensor,
        e: torch.Tensor,
        on_progress: ProgressFn | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.params, self.model, self.frozen, self.dev, self.scale = (
            params,
            model,
            frozen,
            dev,
            scale,
        )
        self.x, self.e = x, e  # (T, H, W) on the CPU; tiles move to the device per step
        self.on_progress, self.should_cancel = on_progress, should_cancel
        n_frames, height, width = x.shape
        self.tile = min(params.tile, height, width)
        self.window = min(params.window, n_frames)
        self.origins = _grid(height, width, self.tile)
        # Reference: one random window per tile per iteration; None draws enough windows per
        # tile to visit every frame about once.
        self.windows_per_tile = params.windows_per_tile or math.ceil(n_frames / self.window)
        self.steps_per_iteration = len(self.origins) * self.windows_per_tile
        self.total_steps = params.n_iterations * self.steps_per_iteration
        self.steps_done = 0
        self.compute_metrics = True
        self.opt = torch.optim.Adam(model.parameters(), lr=params.lr)
        # The averaged weights live in a copy of the network (None: averaging is off).
        self.averaged: nn.Module | None = (
            copy.deepcopy(model).eval().requires_grad_(False) if params.ema > 0 else None
        )
        self.bg: np.ndarray | None = None  # background map (T, H, W) for background="map"
        self.empty: np.ndarray | None = None  # LR empty mask (T, H, W) for haze_level > 0
        self.den: nn.Module | None = None
        self.den_opt: torch.optim.Optimizer | None = None
        self.sigma: float | None = None
        self.records: list[dict[str, Any]] = []
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # -- set-up -------------------------------------------------------------------------

    def setup_saft(self, den: nn.Module) -> None:
        """Prepare the DEN and the frozen network's outputs, computed once for the run."""
        self.den = den.train()
        self.den_opt = torch.optim.Adam(den.parameters(), lr=self.params.lr * DEN_LR_FACTOR)
        n_frames, height, width = self.x.shape
        shape = (n_frames, height * self.scale, width * self.scale)
        self.y0 = self._buffer("frozen", shape)
        self.y_rot = self._buffer("rotation", shape)
        for t in range(n_frames):
            inp = self._input(slice(t, t + 1))
            self.y0[t] = _infer(self.frozen, inp, self.scale)[0, 0]
            rotated = _infer(self.frozen, losses.rot180(inp), self.scale)
            self.y_rot[t] = losses.rot180_inv(torch.from_numpy(rotated))[0, 0].numpy()
        self.sigma = self._resolve_sigma()
        if self.params.background == "map" or self.params.haze_level > 0:
            from saft_core.background import empty_mask, estimate_background

            bg = estimate_background(self.x.numpy())
            self.bg = bg if self.params.background == "map" else None
            self.empty = empty_mask(self.x.numpy(), bg) if self.params.haze_level > 0 else None
        self._setup_objective()

    def setup_wsf(self, smlm: np.ndarray) -> None:
        """Normalise the SMLM target; it must lie on the SR grid of the LR stack."""
        _, height, width = self.x.shape
        expected = (height * self.scale, width * self.scale)
        if smlm.ndim == 3 and smlm.shape[0] == 1:
            smlm = smlm[0]
        if smlm.shape != expected:
            raise ShapeMismatchError(
                f"SMLM image shape {smlm.shape} must be the SR grid {expected} "
                f"({self.scale}x the LR frame)",
                field="smlm",
            )
        if not np.isfinite(smlm).all() or smlm.max() <= 0:
            raise InvalidParameterError("SMLM image must be finite and not blank", field="smlm")
        self.target = torch.from_numpy(smlm / smlm.max()).float()
        # SAFT-WSF compares with the SMLM image directly: no RSF is involved.
        self.sigma = None

    def _resolve_sigma(self) -> float:
        if self.params.sigma != "auto":
            return float(self.params.sigma)
        from saft_core.metrics import estimate_rsf_sigma

        sigma = float(estimate_rsf_sigma(self.y0[0], self.x[0].numpy(), self.scale))
        log.info("estimated RSF sigma: %.3f LR px", sigma)
        return sigma

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array for frozen outputs: in memory when small, a disk memmap when large."""
        if math.prod(shape) * 4 <= FROZEN_IN_MEMORY_BYTES:
            return np.empty(shape, np.float32)
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="saft-frozen-")
        path = Path(self._tmpdir.name) / f"{name}.f32"
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)

    def close(self) -> None:
        if self._tmpdir is not None:
            self.y0 = self.y_rot = None  # release the memmaps before deleting their files
            self._tmpdir.cleanup()
            self._tmpdir = None

    # -- one iteration --------------------------------------------------------------------

    def iteration(self, k: int) -> dict[str, float]:
        """One pass over the tile grid; returns the mean of each loss component."""
        rng = np.random.default_rng([self.params.seed, k])
        order = rng.permutation(np.repeat(np.arange(len(self.origins)), self.windows_per_tile))
        n_frames = self.x.shape[0]
        sums: dict[str, float] = {}
        if self.params.mode == "wsf":
            self.wsf_sum = self._full_sum()
        for i in order:
            if self.should_cancel is not None and self.should_cancel():
                raise Cancelled("cancelled by request")
            t0 = int(rng.integers(0, n_frames - self.window + 1))
            if self.params.mode == "wsf":
                frames = np.sort(rng.choice(n_frames, size=self.window, replace=False))
                step = self._wsf_step(self.origins[i], frames)
            else:
                step = self._saft_step(self.origins[i], t0)
            for name, value in step.items():
                sums[name] = sums.get(name, 0.0) + value
            self.steps_done += 1
            if self.on_progress is not None:
                self.on_progress(
                    self.steps_done, self.total_steps, {"iteration": k, "loss": step["total"]}
                )
        return {name: value / len(order) for name, value in sums.items()}

    def _saft_step(self, origin: tuple[int, int], t0: int) -> dict[str, float]:
        p, s = self.params, self.scale
        win = self._window(origin, t0)
        x_tile = win.inp[:, 1:2]
        self.model.train()
        y = self.model(win.inp).abs()
        target = self.den(x_tile).abs().detach()
        terms = self._terms(y, target, win)
        total = sum(terms.values())
        self._sr_update(total)

        # The DEN follows the SR network: it learns to agree with the degraded SR output
        # while staying close to the raw LR frame.
        den_out = self.den(x_tile).abs()
        if p.background in ("fit", "map"):
            den_target = self._degrade(y.detach(), den_out.detach(), win.bg)
        else:  # the reference: the raw RSF output, no matching
            den_target = degrade(y.detach(), s, self.sigma, p.ksize)
        den_total = losses.den_loss(den_target, den_out, x_tile)
        self.den_opt.zero_grad(set_to_none=True)
        den_total.backward()
        nn.utils.clip_grad_norm_(self.den.parameters(), GRAD_CLIP)
        self.den_opt.step()

        out = {name: float(v.detach()) for name, v in terms.items()}
        out["total"] = float(total.detach())
        out["den"] = float(den_total.detach())
        return out

    def _window(self, origin: tuple[int, int], t0: int) -> _Window:
        """Network input and the per-pixel targets of one tile and frame window."""
        s, tile = self.scale, self.tile
        iy, ix = origin
        frames = slice(t0, t0 + self.window)
        lr_win = (frames, slice(iy, iy + tile), slice(ix, ix + tile))
        sr_win = (frames, slice(iy * s, (iy + tile) * s), slice(ix * s, (ix + tile) * s))

        def tensor(arr: np.ndarray | None, win: tuple[slice, ...]) -> torch.Tensor | None:
            if arr is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(arr[win])).to(self.dev)[:, None]

        empty = tensor(self.empty, lr_win)
        if empty is not None:  # LR mask -> SR grid
            empty = empty.float().repeat_interleave(s, -2).repeat_interleave(s, -1)
        return _Window(
            inp=self._input(*lr_win).to(self.dev),
            y0=tensor(self.y0, sr_win),
            y_rot=tensor(self.y_rot, sr_win),
            bg=tensor(self.bg, lr_win),
            empty=empty,
        )

    def _terms(self, y: torch.Tensor, target: torch.Tensor, win: _Window) -> dict[str, Any]:
        """The weighted SAFT loss terms of SR output y against one window's targets."""
        p = self.params
        degraded = self._degrade(y, target, win.bg)
        terms = {"degradation": losses.degradation_loss(degraded, target)}
        if y.shape[0] >= 3 and p.continuity_level > 0:
            terms["hessian"] = (
                HESSIAN_WEIGHT
                * p.continuity_level
                * losses.hessian_loss(y[:, 0][None], lt=HESSIAN_LT)
            )
        if p.sparse_level > 0:
            terms["sparse"] = p.sparse_level * losses.intensity_loss(y, win.y0)
        if p.consistency_level > 0:
            terms["rotation"] = p.consistency_level * losses.rotation_loss(y, win.y_rot)
        if win.empty is not None:
            terms["haze"] = p.haze_level * losses.haze_loss(y, win.empty.to(y.dtype), win.y0)
        return terms

    def _setup_objective(self) -> None:
        """Fixed windows (the middle window of every tile) and their targets from the DEN as
        it was before fine-tuning: every iteration's network is judged on the same numbers."""
        t0 = (self.x.shape[0] - self.window) // 2
        self.eval_windows = [(origin, t0) for origin in self.origins]
        self.eval_targets = []
        self.den.eval()
        with torch.no_grad():
            for origin, t in self.eval_windows:
                x_tile = self._window(origin, t).inp[:, 1:2]
                self.eval_targets.append(self.den(x_tile).abs().cpu())
        self.den.train()

    def objective(self) -> dict[str, float]:
        """The SAFT objective of the shown network on the fixed windows, and its data-fidelity
        part alone (``fidelity``: the degradation term); lower is better.

        Training losses are means over random windows and move with the draw; these are the
        same sums on the same windows every iteration (iteration 0 included), so the
        recommendation can tell convergence from noise.
        """
        net = self.shown
        was_training = net.training
        net.eval()
        total = fidelity = 0.0
        with torch.no_grad():
            for (origin, t0), target in zip(self.eval_windows, self.eval_targets, strict=True):
                win = self._window(origin, t0)
                y = net(win.inp).abs()
                terms = self._terms(y, target.to(self.dev), win)
                total += float(sum(terms.values()))
                fidelity += float(terms["degradation"])
        net.train(was_training)
        n = len(self.eval_windows)
        return {"objective": total / n, "fidelity": fidelity / n}

    def _sr_update(self, total: torch.Tensor) -> None:
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

    @property
    def shown(self) -> nn.Module:
        """The network that previews, metrics and checkpoints show (averaged when ema > 0)."""
        return self.averaged if self.averaged is not None else self.model

    def _degrade(
        self, y: torch.Tensor, target: torch.Tensor, bg: torch.Tensor | None = None
    ) -> torch.Tensor:
        """RSF(y) matched to the target per sample: over the background map ("map"), gain +
        offset ("fit") or mean only ("mean")."""
        if self.params.background == "map":
            return degrade_over_background(y, self.scale, self.sigma, self.params.ksize, target, bg)
        if self.params.background == "fit":
            return degrade_with_background(y, self.scale, self.sigma, self.params.ksize, target)
        return degrade(y, self.scale, self.sigma, self.params.ksize, reference=target)

    def _full_sum(self) -> torch.Tensor:
        """Sum over all frames of the current SR output (detached), (sH, sW) on the CPU."""
        total = None
        for t in range(self.x.shape[0]):
            y = _infer(self.model, self._input(slice(t, t + 1)), self.scale)[0, 0]
            total = y if total is None else total + y
        return torch.from_numpy(total)

    def _wsf_step(self, origin: tuple[int, int], frames: np.ndarray) -> dict[str, float]:
        """SAFT-WSF: L1 between the normalised frame sum and the SMLM image, on one tile.

        Gradients flow through the selected frames; the others enter as the detached sum.
        Normalisation uses the max of the whole detached sum so tiles share one scale.
        """
        s, tile = self.scale, self.tile
        iy, ix = origin
        sr = (slice(iy * s, (iy + tile) * s), slice(ix * s, (ix + tile) * s))
        idx = torch.from_numpy(frames)
        inp = self._input(idx, slice(iy, iy + tile), slice(ix, ix + tile)).to(self.dev)
        self.model.train()
        y = self.model(inp).abs()[:, 0]
        with torch.no_grad():
            y_sel_detached = y.detach().sum(0)
        rest = self.wsf_sum[sr].to(self.dev) - y_sel_detached
        pred = (rest + y.sum(0)) / self.wsf_sum.max().clamp_min(1e-12).to(self.dev)
        target = self.target[sr].to(self.dev)
        total = (pred - target).abs().mean()
        self._sr_update(total)
        return {"total": float(total.detach()), "wsf": float(total.detach())}

    def _input(self, frames: Any, rows: slice = slice(None), cols: slice = slice(None)):
        """Network input [edge, LR] for the given frames and LR window, (N, 2, h, w)."""
        return torch.stack([self.e[frames, rows, cols], self.x[frames, rows, cols]], dim=1)

    # -- reporting and checkpoints --------------------------------------------------------

    def emit(
        self,
        k: int,
        step_losses: dict[str, float],
        seconds: float,
        on_iteration: Callable[[IterationResult], None] | None,
    ) -> dict[str, Any]:
        """Preview, metrics and checkpoint of iteration k, handed to the callback."""
        preview = _infer(self.shown, self._input(slice(0, 1)), self.scale)[0, 0]
        if self.den is not None:  # SAFT (not WSF): judge the shown network on fixed windows
            step_losses = {**step_losses, **self.objective()}
        if self.compute_metrics:
            # with a background map, RSE/RSP (and so the guard) judge the structure signal
            bg0 = self.bg[0] if self.bg is not None else None
            metrics = _safe_metrics(preview, self.x[0].numpy(), self.scale, bg0)
        else:
            metrics = {"rse": None, "rsp": None, "resolution": None}
        result = IterationResult(
            iteration=k,
            losses=step_losses,
            seconds=seconds,
            sigma=self.sigma,
            preview=preview,
            checkpoint=self.checkpoint(k, step_losses),
            **metrics,
        )
        self.records.append(result.record())
        result.checkpoint["saft"]["records"] = list(self.records)
        if on_iteration is not None:
            on_iteration(result)
        return result.record()

    def checkpoint(self, k: int, step_losses: dict[str, float]) -> dict[str, Any]:
        """A loadable SR checkpoint that also carries what resuming after k needs."""
        saft: dict[str, Any] = {
            "iteration": k,
            "params": self.params.to_dict(),
            "sigma": self.sigma,
            "losses": dict(step_losses),
            "sr_optimizer": _cpu(self.opt.state_dict()),
        }
        if self.averaged is not None:  # the trained (not averaged) weights, for resuming
            saft["trained_state_dict"] = _cpu(self.model.state_dict())
        if self.den is not None:
            saft["den"] = {
                "kind": "den",
                "config": _config_dict(self.den),
                "state_dict": _cpu(self.den.state_dict()),
            }
            saft["den_optimizer"] = _cpu(self.den_opt.state_dict())
        return {
            "format": "saft-checkpoint/1",
            "kind": "sr",
            "config": _config_dict(self.model),
            "state_dict": _cpu(self.shown.state_dict()),
            "saft": saft,
        }

    def restore(self, ckpt: dict[str, Any]) -> int:
        """Load the state saved after an iteration; returns that iteration's number."""
        saft = ckpt.get("saft")
        if not isinstance(saft, dict) or "sr_optimizer" not in saft:
            raise InvalidParameterError(
                "resume needs a checkpoint written by a SAFT run (iteration_NN.pth)",
                field="resume",
            )
        try:  # records from before a parameter existed mean its default
            saved = SaftParams.from_dict(dict(saft["params"])).to_dict()
        except InvalidParameterError:
            saved = None
        if saved != self.params.to_dict():
            raise InvalidParameterError(
                "resume checkpoint was made with other parameters than this run", field="resume"
            )
        if self.averaged is not None:
            self.averaged.load_state_dict(ckpt["state_dict"])
            self.model.load_state_dict(saft["trained_state_dict"])
        else:
            self.model.load_state_dict(ckpt["state_dict"])
        self.opt.load_state_dict(saft["sr_optimizer"])
        if self.den is not None:
            self.den.load_state_dict(saft["den"]["state_dict"])
            self.den_opt.load_state_dict(saft["den_optimizer"])
        self.sigma = None if saft["sigma"] is None else float(saft["sigma"])
        k = int(saft["iteration"])
        self.steps_done = k * self.steps_per_iteration
        self.records = [dict(r) for r in saft.get("records", [])]
        return k


def _load(spec: nn.Module | str | Path, kind: str) -> nn.Module:
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    return load_model(spec, kind)


def _load_resume(resume: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(resume, dict):
        return resume
    return torch.load(resume, map_location="cpu", weights_only=True)


def _as_stack(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ShapeMismatchError(f"{name} must be (T, H, W), got shape {arr.shape}", field=name)
    return arr


def _grid(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Non-overlapping tile origins covering the frame; the last row/column is border-aligned."""

    def starts(n: int) -> list[int]:
        out = list(range(0, n - tile + 1, tile))
        if out[-1] + tile < n:
            out.append(n - tile)
        return out

    return [(y, x) for y in starts(height) for x in starts(width)]


def _infer(model: nn.Module, inp: torch.Tensor, scale: int) -> np.ndarray:
    """|model(inp)| by tiled inference, as a numpy array on the SR grid."""
    was_training = model.training
    model.eval()
    out = tiled_apply(
        model, inp, scale, tile=INFERENCE_TILE, overlap=INFERENCE_OVERLAP, batch_size=4
    )
    model.train(was_training)
    return out.abs().float().cpu().numpy()


def _safe_metrics(
    sr: np.ndarray, lr: np.ndarray, scale: int, background: np.ndarray | None = None
) -> dict[str, float | None]:
    """Artifact metrics; a failure here must never end a fine-tuning run."""
    from saft_core.metrics import artifact_metrics

    try:
        m = artifact_metrics(sr, lr, scale, background=background)
    except Exception:  # noqa: BLE001 - metrics are advisory
        log.warning("artifact metrics failed", exc_info=True)
        return {"rse": None, "rsp": None, "resolution": None}
    return {k: _finite_or_none(m.get(k)) for k in ("rse", "rsp", "resolution")}


def _finite_or_none(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _config_dict(model: nn.Module) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(model.config)


def _cpu(obj: Any) -> Any:
    """Deep copy of a (nested) state dict with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj
