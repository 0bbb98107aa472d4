"""The SAFT training step: the SR network against RSF-degraded DEN targets, the DEN after it.

Targets that do not change during the run (the frozen network's plain and rotated outputs,
the background map, the empty mask, the fixed judging windows) are computed once here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from saft_core import losses
from saft_core.finetune.run import GRAD_CLIP, TrainingRun, TrainingStep, infer
from saft_core.rsf import (
    degrade,
    degrade_over_background,
    degrade_structure,
    degrade_with_background,
)

log = logging.getLogger(__name__)

DEN_LR_FACTOR = 0.1  # the DEN learns at this fraction of the SR learning rate


@dataclass
class _Window:
    """One training window on the device: input (N, 2, h, w) and per-pixel targets."""

    inp: torch.Tensor
    y0: torch.Tensor
    y_rot: torch.Tensor
    bg: torch.Tensor | None
    empty: torch.Tensor | None  # 0/1 on the SR grid


def rsf_kernel_size(ksize: int, sigma: float, *, auto: bool) -> int:
    """The RSF kernel side (LR px): the user's, or with sigma 'auto' at least +-2.5 sigma
    (an estimated wide PSF must not be cut off by the reference's 5-px kernel)."""
    if not auto:
        return ksize
    return min(max(ksize, 2 * math.ceil(2.5 * sigma) + 1), 31)


class SaftStep(TrainingStep):
    """SAFT: one tile and window of adjacent frames per step, the DEN following the SR net."""

    def __init__(
        self, run: TrainingRun, den: nn.Module, *, estimated_sigma: float | None = None
    ) -> None:
        self.run = run
        self.estimated_sigma = estimated_sigma
        p = run.params
        self.objective = losses.Objective.from_params(p)
        self.den = den.train()
        self.den_opt = torch.optim.Adam(den.parameters(), lr=p.lr * DEN_LR_FACTOR)
        n_frames, height, width = run.x.shape
        shape = (n_frames, height * run.scale, width * run.scale)
        self.y0: np.ndarray | None = run.buffer("frozen", shape)
        self.y_rot: np.ndarray | None = run.buffer("rotation", shape)
        for t in range(n_frames):
            inp = run.input(slice(t, t + 1))
            self.y0[t] = infer(run.frozen, inp, run.scale)[0, 0]
            rotated = infer(run.frozen, losses.rot180(inp), run.scale)
            self.y_rot[t] = losses.rot180_inv(torch.from_numpy(rotated))[0, 0].numpy()
        self.sigma = self._resolve_sigma()
        self.ksize = rsf_kernel_size(p.ksize, self.sigma, auto=p.sigma == "auto")
        self.empty: np.ndarray | None = None  # LR empty mask (T, H, W) for haze_level > 0
        if p.background == "map" or p.haze_level > 0:
            from saft_core.background import empty_mask, estimate_background

            bg = estimate_background(run.x.numpy())
            self.bg = bg if p.background == "map" else None
            self.empty = empty_mask(run.x.numpy(), bg) if p.haze_level > 0 else None
        self._fix_judging_windows()

    def _resolve_sigma(self) -> float:
        """The RSF sigma in LR px: the user's, or the stack's PSF estimate ('auto')."""
        if self.run.params.sigma != "auto":
            return float(self.run.params.sigma)
        if self.estimated_sigma is not None:
            return float(self.estimated_sigma)
        from saft_core.psf import estimate_psf_sigma  # a resumed run restores its sigma later

        return float(estimate_psf_sigma(self.run.x.numpy()))

    def close(self) -> None:
        self.y0 = self.y_rot = None

    def __call__(
        self, origin: tuple[int, int], t0: int, rng: np.random.Generator
    ) -> dict[str, float]:
        run, p = self.run, self.run.params
        win = self._window(origin, t0)
        x_tile = win.inp[:, 1:2]
        run.model.train()
        y = run.model(win.inp).abs()
        target = self.den(x_tile).abs().detach()
        terms = self._terms(y, target, win)
        total = self.objective.total(terms)
        run.sr_update(total)

        # The DEN follows the SR network: it learns to agree with the degraded SR output
        # while staying close to the raw LR frame.
        den_out = self.den(x_tile).abs()
        if p.background != "mean":
            den_target = self._degrade(y.detach(), den_out.detach(), win.bg)
        else:  # the reference: the raw RSF output, no matching
            den_target = degrade(y.detach(), run.scale, self.sigma, self.ksize)
        den_total = losses.den_loss(den_target, den_out, x_tile)
        self.den_opt.zero_grad(set_to_none=True)
        den_total.backward()
        nn.utils.clip_grad_norm_(self.den.parameters(), GRAD_CLIP)
        self.den_opt.step()

        out = {name: float(v.detach()) for name, v in terms.items()}
        out["total"] = float(total.detach())
        out["den"] = float(den_total.detach())
        return out

    def _terms(
        self, y: torch.Tensor, target: torch.Tensor, win: _Window
    ) -> dict[str, torch.Tensor]:
        """The weighted objective terms of SR output y against one window's targets."""
        return self.objective.saft_terms(
            y,
            self._degrade(y, target, win.bg),
            target,
            y0=win.y0,
            y_rot=win.y_rot,
            empty=win.empty,
        )

    def _window(self, origin: tuple[int, int], t0: int) -> _Window:
        """Network input and the per-pixel targets of one tile and frame window."""
        run = self.run
        s, tile, dev = run.scale, run.tile, run.dev
        iy, ix = origin
        frames = slice(t0, t0 + run.window)
        lr_win = (frames, slice(iy, iy + tile), slice(ix, ix + tile))
        sr_win = (frames, slice(iy * s, (iy + tile) * s), slice(ix * s, (ix + tile) * s))

        def tensor(arr: np.ndarray | None, win: tuple[slice, ...]) -> torch.Tensor | None:
            if arr is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(arr[win])).to(dev)[:, None]

        empty = tensor(self.empty, lr_win)
        if empty is not None:  # LR mask -> SR grid
            empty = empty.float().repeat_interleave(s, -2).repeat_interleave(s, -1)
        return _Window(
            inp=run.input(*lr_win).to(dev),
            y0=tensor(self.y0, sr_win),
            y_rot=tensor(self.y_rot, sr_win),
            bg=tensor(self.bg, lr_win),
            empty=empty,
        )

    def _degrade(
        self, y: torch.Tensor, target: torch.Tensor, bg: torch.Tensor | None = None
    ) -> torch.Tensor:
        """RSF(y) matched to the target per sample: over the background map ("map"), gain +
        offset ("fit") or mean only ("mean")."""
        p, s = self.run.params, self.run.scale
        if p.background == "map":
            return degrade_over_background(y, s, self.sigma, self.ksize, target, bg)
        if p.background == "structure":
            return degrade_structure(y, s, self.sigma, self.ksize, target)
        if p.background == "fit":
            return degrade_with_background(y, s, self.sigma, self.ksize, target)
        return degrade(y, s, self.sigma, self.ksize, reference=target)

    def _fix_judging_windows(self) -> None:
        """Fixed windows (the middle window of every tile) and their targets from the DEN as
        it was before fine-tuning: every iteration's network is judged on the same numbers."""
        run = self.run
        t0 = (run.x.shape[0] - run.window) // 2
        self.eval_windows = [(origin, t0) for origin in run.origins]
        self.eval_targets = []
        self.den.eval()
        with torch.no_grad():
            for origin, t in self.eval_windows:
                x_tile = self._window(origin, t).inp[:, 1:2]
                self.eval_targets.append(self.den(x_tile).abs().cpu())
        self.den.train()

    def fixed_window_objective(self) -> dict[str, float]:
        """The SAFT objective of the shown network on the fixed windows, and its data-fidelity
        part alone (``fidelity``: the degradation term); lower is better.

        Training losses are means over random windows and move with the draw; these are the
        same sums on the same windows every iteration (iteration 0 included), so the
        recommendation can tell convergence from noise.
        """
        net = self.run.shown
        was_training = net.training
        net.eval()
        total = fidelity = 0.0
        with torch.no_grad():
            for (origin, t0), target in zip(self.eval_windows, self.eval_targets, strict=True):
                win = self._window(origin, t0)
                y = net(win.inp).abs()
                terms = self._terms(y, target.to(self.run.dev), win)
                total += float(self.objective.total(terms))
                fidelity += float(terms["degradation"])
        net.train(was_training)
        n = len(self.eval_windows)
        return {"objective": total / n, "fidelity": fidelity / n}
