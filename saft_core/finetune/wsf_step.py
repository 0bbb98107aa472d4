"""The SAFT-WSF training step: the sum of all SR frames against an SMLM image (no RSF)."""

from __future__ import annotations

import numpy as np
import torch

from saft_core import losses
from saft_core.errors import InvalidParameterError, ShapeMismatchError
from saft_core.finetune.run import TrainingRun, TrainingStep


class WsfStep(TrainingStep):
    """SAFT-WSF: L1 between the normalised frame sum and the SMLM image, one tile per step."""

    def __init__(self, run: TrainingRun, smlm: np.ndarray) -> None:
        """``smlm`` must lie on the SR grid of the LR stack; it is peak-normalised here."""
        self.run = run
        self.objective = losses.Objective.from_params(run.params)
        _, height, width = run.x.shape
        expected = (height * run.scale, width * run.scale)
        if smlm.ndim == 3 and smlm.shape[0] == 1:
            smlm = smlm[0]
        if smlm.shape != expected:
            raise ShapeMismatchError(
                f"SMLM image shape {smlm.shape} must be the SR grid {expected} "
                f"({run.scale}x the LR frame)",
                field="smlm",
            )
        if not np.isfinite(smlm).all() or smlm.max() <= 0:
            raise InvalidParameterError("SMLM image must be finite and not blank", field="smlm")
        self.target = torch.from_numpy(smlm / smlm.max()).float()
        self.frame_sum: torch.Tensor | None = None

    def begin_iteration(self) -> None:
        """Sum over all frames of the current SR output (detached), (sH, sW) on the CPU."""
        total = None
        for t in range(self.run.x.shape[0]):
            y = self.run.infer(self.run.model, slice(t, t + 1))[0, 0]
            total = y if total is None else total + y
        self.frame_sum = torch.from_numpy(total)

    def __call__(
        self, origin: tuple[int, int], t0: int, rng: np.random.Generator
    ) -> dict[str, float]:
        """Gradients flow through a random set of frames; the others enter as the detached sum.

        Normalisation uses the max of the whole detached sum so tiles share one scale.
        """
        run = self.run
        s, tile, dev = run.scale, run.tile, run.dev
        n_frames = run.x.shape[0]
        frames = np.sort(rng.choice(n_frames, size=run.window, replace=False))
        iy, ix = origin
        sr = (slice(iy * s, (iy + tile) * s), slice(ix * s, (ix + tile) * s))
        inp = run.input(torch.from_numpy(frames), slice(iy, iy + tile), slice(ix, ix + tile))
        run.model.train()
        y = run.model(inp.to(dev)).abs()[:, 0]
        with torch.no_grad():
            y_sel_detached = y.detach().sum(0)
        rest = self.frame_sum[sr].to(dev) - y_sel_detached
        terms = self.objective.wsf_terms(
            rest + y.sum(0), self.target[sr].to(dev), self.frame_sum.max().to(dev)
        )
        total = self.objective.total(terms)
        run.sr_update(total)
        return {"total": float(total.detach()), "wsf": float(terms["wsf"].detach())}
