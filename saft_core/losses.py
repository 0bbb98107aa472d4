"""SAFT loss terms: pure functions of tensors, each a mean so it does not grow with tile size.

Intensities are in the normalised units of the network input (LR peak = 1); every loss is
in those intensity units (per pixel, or per pixel per squared pixel for the Hessian).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from saft_core.errors import ShapeMismatchError

EPS = 1e-12  # guards a maximum of ~0 in the SAFT-WSF normalisation
HESSIAN_WEIGHT = 0.025  # reference weight of the continuity term, times continuity_level
HESSIAN_LT = 0.5  # temporal weight inside the Hessian


def rot180(x: torch.Tensor) -> torch.Tensor:
    """Rotate by 180 degrees in the image plane (last two dims), for the rotation-consistency."""
    return torch.flip(x, dims=(-2, -1))


def rot180_inv(x: torch.Tensor) -> torch.Tensor:
    """Undo ``rot180`` (a 180-degree rotation is its own inverse)."""
    return torch.flip(x, dims=(-2, -1))


def hessian_loss(y: torch.Tensor, lt: float = 0.5) -> torch.Tensor:
    """Spatio-temporal Hessian (continuity) penalty of an SR time window y (N, T, H, W).

    With x = last dim, y = dim -2 and t = dim 1 (T >= 3 frames), and finite differences
      d_xx = f[x+1] - 2 f[x] + f[x-1]  (likewise d_yy, d_tt),
      d_xy = f[x+1, y+1] - f[x+1, y] - f[x, y+1] + f[x, y]  (likewise d_xt, d_yt),
    the loss is
      mean|d_xx| + mean|d_yy| + lt * mean|d_tt|
      + 2 mean|d_xy| + 2 sqrt(lt) mean|d_xt| + 2 sqrt(lt) mean|d_yt|,
    each mean taken over all positions where that difference is defined (and over N).
    Means rather than sums keep the value independent of tile size and window length;
    units: intensity per pixel^2 (or per pixel*frame). ``lt`` weights the time axis.
    """
    if y.ndim != 4:
        raise ShapeMismatchError(f"hessian_loss needs (N, T, H, W), got shape {tuple(y.shape)}")
    _, t, h, w = y.shape
    if t < 3 or h < 3 or w < 3:
        raise ShapeMismatchError(
            f"hessian_loss needs at least 3 frames and 3x3 pixels, got T={t}, H={h}, W={w}"
        )
    if lt < 0:
        raise ValueError(f"lt must be >= 0, got {lt}")
    st = math.sqrt(lt)
    d_x = y[..., 1:] - y[..., :-1]
    d_y = y[..., 1:, :] - y[..., :-1, :]
    d_xx = d_x[..., 1:] - d_x[..., :-1]
    d_yy = d_y[..., 1:, :] - d_y[..., :-1, :]
    d_tt = y[:, 2:] - 2 * y[:, 1:-1] + y[:, :-2]
    d_xy = d_x[..., 1:, :] - d_x[..., :-1, :]
    d_xt = d_x[:, 1:] - d_x[:, :-1]
    d_yt = d_y[:, 1:] - d_y[:, :-1]
    return (
        d_xx.abs().mean()
        + d_yy.abs().mean()
        + lt * d_tt.abs().mean()
        + 2 * d_xy.abs().mean()
        + 2 * st * d_xt.abs().mean()
        + 2 * st * d_yt.abs().mean()
    )


def degradation_loss(degraded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |RSF(y) - target| on the LR grid (intensity units per LR pixel)."""
    _same(degraded, target, "degraded", "target")
    return (degraded - target).abs().mean()


def intensity_loss(y: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """|mean(y) - mean(y0)|: keeps the overall SR brightness at the pretrained output's."""
    return (y.mean() - y0.mean()).abs()


def haze_loss(y: torch.Tensor, empty: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """mean(y * empty) / mean(y0): SR intensity where the LR shows nothing, relative.

    ``empty`` is a 0/1 mask on y's grid (the LR empty mask repeated ``scale`` times per
    axis); dividing by the pretrained output's mean makes the term unitless, so its weight
    means the same on dim and bright stacks.
    """
    _same(y, empty, "y", "empty")
    return (y * empty).mean() / y0.mean().clamp_min(EPS)


def rotation_loss(y: torch.Tensor, y_rot_target: torch.Tensor) -> torch.Tensor:
    """Mean |y - rot180_inv(f0(rot180([e, x])))|; the caller computes the rotated target."""
    _same(y, y_rot_target, "y", "y_rot_target")
    return (y - y_rot_target).abs().mean()


def den_loss(
    degraded_detached: torch.Tensor, den_out: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """DEN objective: mean|RSF(y) - DEN(x)| + mean|DEN(x) - x| on the LR grid.

    The degraded SR image is detached here as well, so this loss can never train the SR net.
    """
    _same(degraded_detached, den_out, "degraded", "den_out")
    _same(den_out, x, "den_out", "x")
    return (degraded_detached.detach() - den_out).abs().mean() + (den_out - x).abs().mean()


def wsf_loss(frame_sum: torch.Tensor, smlm: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """SAFT-WSF: mean |frame_sum / peak - smlm| on (a tile of) the SR grid.

    ``smlm`` is already peak-normalised; ``peak`` is the maximum of the whole frame sum, not
    of this tile, so every tile of the image is judged on one intensity scale.
    """
    _same(frame_sum, smlm, "frame_sum", "smlm")
    return (frame_sum / peak.clamp_min(EPS) - smlm).abs().mean()


@dataclass(frozen=True)
class Objective:
    """The weighted fine-tuning objective: which terms enter and with what weight, declared
    once for the training steps and the fixed-window objective alike (levels from SaftParams).
    """

    continuity_level: float = 0.0
    sparse_level: float = 0.0
    consistency_level: float = 0.0
    haze_level: float = 0.0

    @classmethod
    def from_params(cls, params: Any) -> Objective:
        """The objective a ``SaftParams`` asks for."""
        return cls(
            continuity_level=params.continuity_level,
            sparse_level=params.sparse_level,
            consistency_level=params.consistency_level,
            haze_level=params.haze_level,
        )

    def saft_terms(
        self,
        y: torch.Tensor,
        degraded: torch.Tensor,
        target: torch.Tensor,
        *,
        y0: torch.Tensor,
        y_rot: torch.Tensor,
        empty: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Weighted SAFT terms of an SR window y (N, 1, sH, sW): ``degraded`` is RSF(y) matched
        to the DEN ``target``; ``y0``/``y_rot`` the frozen network's plain/rotated outputs;
        ``empty`` the 0/1 empty mask on the SR grid (None: no haze term)."""
        terms = {"degradation": degradation_loss(degraded, target)}
        if y.shape[0] >= 3 and self.continuity_level > 0:
            terms["hessian"] = (
                HESSIAN_WEIGHT * self.continuity_level * hessian_loss(y[:, 0][None], lt=HESSIAN_LT)
            )
        if self.sparse_level > 0:
            terms["sparse"] = self.sparse_level * intensity_loss(y, y0)
        if self.consistency_level > 0:
            terms["rotation"] = self.consistency_level * rotation_loss(y, y_rot)
        if empty is not None:
            terms["haze"] = self.haze_level * haze_loss(y, empty.to(y.dtype), y0)
        return terms

    @staticmethod
    def wsf_terms(
        frame_sum: torch.Tensor, smlm: torch.Tensor, peak: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The SAFT-WSF objective's one term (unweighted): see ``wsf_loss``."""
        return {"wsf": wsf_loss(frame_sum, smlm, peak)}

    @staticmethod
    def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The objective: the sum of the (already weighted) terms."""
        return sum(terms.values())


def _same(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ShapeMismatchError(
            f"{na} shape {tuple(a.shape)} does not match {nb} shape {tuple(b.shape)}"
        )
