"""Differentiable resolution-scaling function (RSF): what the microscope makes of an SR image.

The RSF maps an SR image (N, 1, s*H, s*W) to the LR grid (N, 1, H, W): integrate each LR
pixel (average pool by the scale s), then blur with a Gaussian PSF of ``sigma`` LR pixels.
Intensities keep their units: the RSF preserves the mean (the SR sum is s**2 times the LR sum).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from saft_core.errors import InvalidParameterError, ShapeMismatchError

EPS = 1e-8  # below this a mean or variance counts as zero (intensities are ~0..1)


def gaussian_kernel(
    sigma: float,
    ksize: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Normalised (sum 1) 2-D Gaussian sampled at pixel centres, (1, 1, ksize, ksize)."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise InvalidParameterError(
            f"sigma must be a positive number of LR pixels, got {sigma!r}", field="sigma"
        )
    if not isinstance(ksize, int) or ksize < 1 or ksize % 2 == 0:
        raise InvalidParameterError(
            f"ksize must be an odd positive integer, got {ksize!r}", field="ksize"
        )
    r = ksize // 2
    x = torch.arange(-r, r + 1, device=device, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2.0 * float(sigma) ** 2))
    k = torch.outer(g, g)
    k = k / k.sum()
    return k.to(dtype or torch.get_default_dtype())[None, None]


def blur(lr: torch.Tensor, sigma: float, ksize: int) -> torch.Tensor:
    """Gaussian blur of (N, 1, H, W) with reflect padding, so borders are not darkened."""
    k = gaussian_kernel(sigma, ksize, device=lr.device, dtype=lr.dtype)
    r = ksize // 2
    if r == 0:
        return lr * k[0, 0, 0, 0]
    h, w = lr.shape[-2:]
    mode = "reflect" if r < h and r < w else "replicate"  # reflect needs pad < size
    return F.conv2d(F.pad(lr, (r, r, r, r), mode=mode), k)


def degrade(
    y: torch.Tensor,
    scale: int,
    sigma: float,
    ksize: int,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """RSF(y) = G_sigma * AvgPool_scale(y), optionally mean-matched per sample to ``reference``.

    y: (N, 1, s*H, s*W) SR intensities; sigma and ksize in LR pixels; returns (N, 1, H, W).
    Mean matching multiplies each sample by mean(reference) / mean(RSF(y)) and stays inside the
    autograd graph, so the degradation loss judges shape, not overall brightness (that is the
    intensity loss's job). A mean of ~0 is replaced by +-EPS rather than dividing by zero.
    """
    d = blur(_pool(y, scale), sigma, ksize)
    if reference is None:
        return d
    _check_reference(d, reference)
    d_mean = d.mean(dim=(1, 2, 3), keepdim=True)
    r_mean = reference.mean(dim=(1, 2, 3), keepdim=True)
    return d * (r_mean / _guard(d_mean))


def degrade_with_background(
    y: torch.Tensor,
    scale: int,
    sigma: float,
    ksize: int,
    reference: torch.Tensor,
) -> torch.Tensor:
    """RSF(y) fitted to ``reference`` per sample with a gain AND an offset (background).

    Same grid and units as ``degrade``. The least-squares fit
    ``min_{a,b} sum (a * d + b - reference)^2`` is solved in closed form
    (a = cov(d, r) / var(d), b = mean(r) - a * mean(d)) and is differentiable: gradients
    flow through a and b as well as d. A flat d (var ~ 0) gets a = 0, b = mean(reference).
    """
    d = blur(_pool(y, scale), sigma, ksize)
    _check_reference(d, reference)
    gain, offset = fit_gain_offset(d, reference)
    return d * gain + offset


def degrade_over_background(
    y: torch.Tensor,
    scale: int,
    sigma: float,
    ksize: int,
    reference: torch.Tensor,
    background: torch.Tensor,
) -> torch.Tensor:
    """RSF(y) * gain + ``background``: the gain is fitted per sample, the background is given.

    ``background`` (same shape as ``reference``) is a smooth map estimated from the LR frame
    (``saft_core.background``). Unlike a free offset, it cannot absorb haze the SR image adds:
    haze raises RSF(y) above ``reference - background`` and so costs data fidelity. The gain
    ``a = sum(d * (r - b)) / sum(d * d)`` is the least-squares fit and stays differentiable.
    """
    d = blur(_pool(y, scale), sigma, ksize)
    _check_reference(d, reference)
    _check_reference(d, background)
    dims = (1, 2, 3)
    num = (d * (reference - background)).sum(dim=dims, keepdim=True)
    den = (d * d).sum(dim=dims, keepdim=True)
    gain = torch.where(den > EPS, num / den.clamp_min(EPS), torch.zeros_like(den))
    return d * gain + background


# Scales beyond this many PSF sigmas count as background in ``degrade_structure``: in-focus
# structure lives within ~2 sigma, out-of-focus light and cell-scale background beyond.
STRUCTURE_SCALE = 2.5


def degrade_structure(
    y: torch.Tensor, scale: int, sigma: float, ksize: int, reference: torch.Tensor
) -> torch.Tensor:
    """RSF(y) compared with ``reference`` on the in-focus scales only (gain fitted).

    Why: out-of-focus light is blurred far beyond the PSF, and no smooth background map or
    single offset follows it; a fidelity that includes it pushes the network to paint it
    into the SR output as haze. Here both images lose their content beyond
    ``STRUCTURE_SCALE`` x sigma (a Gaussian high-pass), the gain is fitted on what remains,
    and the result is that high-passed RSF(y) plus the reference's own low-pass part, so
    ``degraded - reference`` compares structure with structure.
    """
    d = blur(_pool(y, scale), sigma, ksize)
    _check_reference(d, reference)
    wide = STRUCTURE_SCALE * sigma
    wide_k = min(2 * math.ceil(3 * wide) + 1, 2 * (min(d.shape[-2:]) // 2) - 1)
    low_d, low_r = blur(d, wide, wide_k), blur(reference, wide, wide_k)
    hd, hr = d - low_d, reference - low_r
    dims = (1, 2, 3)
    num = (hd * hr).sum(dim=dims, keepdim=True)
    den = (hd * hd).sum(dim=dims, keepdim=True)
    gain = torch.where(den > EPS, num / den.clamp_min(EPS), torch.zeros_like(den))
    return hd * gain + low_r


def fit_gain_offset(d: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample least-squares (gain, offset), each (N, 1, 1, 1): gain*d + offset ~ reference."""
    dims = (1, 2, 3)
    d_mean = d.mean(dim=dims, keepdim=True)
    r_mean = reference.mean(dim=dims, keepdim=True)
    dc = d - d_mean
    var = (dc * dc).mean(dim=dims, keepdim=True)
    cov = (dc * (reference - r_mean)).mean(dim=dims, keepdim=True)
    gain = torch.where(var > EPS, cov / var.clamp_min(EPS), torch.zeros_like(var))
    offset = r_mean - gain * d_mean
    return gain, offset


def _pool(y: torch.Tensor, scale: int) -> torch.Tensor:
    if y.ndim != 4:
        raise ShapeMismatchError(f"RSF input must be (N, C, sH, sW), got shape {tuple(y.shape)}")
    if not isinstance(scale, int) or scale < 1:
        raise InvalidParameterError(
            f"scale must be a positive integer, got {scale!r}", field="scale"
        )
    h, w = y.shape[-2:]
    if h % scale or w % scale:
        raise ShapeMismatchError(
            f"SR image {h}x{w} is not a whole number of {scale}x{scale} LR pixels"
        )
    return F.avg_pool2d(y, scale) if scale > 1 else y


def _check_reference(d: torch.Tensor, reference: torch.Tensor) -> None:
    if reference.shape != d.shape:
        raise ShapeMismatchError(
            f"reference shape {tuple(reference.shape)} does not match the degraded SR image "
            f"{tuple(d.shape)}"
        )


def _guard(m: torch.Tensor) -> torch.Tensor:
    """m with |m| < EPS replaced by EPS carrying m's sign (+ for exact zeros)."""
    sign = torch.where(m < 0, -torch.ones_like(m), torch.ones_like(m))
    return torch.where(m.abs() < EPS, sign * EPS, m)
