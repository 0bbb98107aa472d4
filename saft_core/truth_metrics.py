"""Scores against a known ground truth (simulations, STORM): PSNR, SSIM, NRMSE.

Used by benchmarks and pre-training, where the truth is known; the metrics a job reports
without a truth (RSE, RSP, resolution) are in ``saft_core.metrics``. SR outputs and references
are in different intensity units, so every comparison first maps the prediction onto the
reference with a least-squares gain + offset (fair to any units).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter


def rescale_to_reference(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """pred mapped onto ref's intensity scale by one least-squares gain + offset (float64 fit).

    The same fit as ``saft_core.rsf.fit_gain_offset`` (which works per sample on torch batches
    inside the loss); here it only scores a finished frame.
    """
    a = pred.astype(np.float64).ravel()
    b = ref.astype(np.float64).ravel()
    design = np.stack([a, np.ones_like(a)], 1)
    coef, *_ = np.linalg.lstsq(design, b, rcond=None)
    return (pred * coef[0] + coef[1]).astype(np.float32)


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB with data range = ref.max() - ref.min()."""
    mse = float(np.mean((pred.astype(np.float64) - ref) ** 2))
    rng = float(ref.max() - ref.min())
    return 10 * math.log10(rng**2 / mse) if mse > 0 else float("inf")


def nrmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """RMSE divided by the reference's data range."""
    return float(np.sqrt(np.mean((pred.astype(np.float64) - ref) ** 2)) / (ref.max() - ref.min()))


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """Gaussian-window SSIM (Wang et al. 2004: sigma 1.5 px, K1 0.01, K2 0.03), ref's range."""
    x, y = pred.astype(np.float64), ref.astype(np.float64)
    rng = float(y.max() - y.min())
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2

    def f(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, 1.5, truncate=3.5)

    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = 5  # skip the border where the window is truncated (skimage does the same)
    return float(s[pad:-pad, pad:-pad].mean())


def frame_quality(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """PSNR/SSIM/NRMSE of one frame after the gain + offset fit."""
    fitted = rescale_to_reference(pred, ref)
    return {"psnr": psnr(fitted, ref), "ssim": ssim(fitted, ref), "nrmse": nrmse(fitted, ref)}


def quality_vs_gt(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Mean frame quality of a stack (T, H, W) against its reference stack."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
    rows = [frame_quality(p, r) for p, r in zip(pred, ref, strict=True)]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
