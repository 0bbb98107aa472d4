"""Fourier ring correlation (FRC) resolution: what two independent measurements agree on.

Why: a single-image measure (decorrelation analysis) counts any fine texture as resolution,
including texture a network hallucinates from the noise. FRC correlates two images of the same
scene made from independent noise draws (e.g. the SR of the even and of the odd frames of a
stack): structure present in both correlates, while texture driven by each half's own noise
does not, so hallucinations cannot make the resolution read finer. Texture that the network
makes identically in both halves (from the shared structure) does pass: FRC measures
reproducibility, not truth.

Conventions: frequencies in cycles per pixel of the given grid (0.5 = Nyquist), resolution in
pixels of that grid (SR px when given SR images; 2 px is the finest readable). Images are
mean-subtracted and multiplied by a Tukey window (against the edge's cross in the spectrum);
rings are one frequency bin (1/min(H, W)) wide and the curve is smoothed over 3 rings.
Thresholds: "1/7" (fixed 0.143) or "half-bit" (van Heel & Schatz 2005, by ring size).

Measured with the shipped default network on simulated 8-frame 64x64 stacks (even/odd frame
halves, SR px): TRAINING condition, FRC 2.0 (the SR grid's Nyquist: the output reproduces
between halves down to 1 SR px; decorrelation 2.5); LOW_SNR, FRC 11.6, as bicubic
upsampling's 11.9, while decorrelation reads 2.7 (the texture made of the noise).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal.windows import tukey

TUKEY_ALPHA = 0.25  # fraction of each side tapered by the window
SMOOTH_RINGS = 3  # moving-average width of the FRC curve, rings
SKIP_RINGS = 2  # the lowest rings (background, window) never define the cut-off
# One-image FRC reads coarser than the two-image FRC of the same image pair: each sub-image
# holds a quarter of the pixels, so every frequency has 4x less signal-to-noise. Two-image /
# one-image resolution on Gaussian-blurred white objects (blur 2-6 px, signal-to-noise 1e2-1e4,
# 3 seeds): mean 0.91, range 0.83-0.98 (tests/core/test_resolution.py checks it).
ONE_IMAGE_CORRECTION = 0.91


def frc_curve(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in cycles/px, FRC per ring) of two 2D images of the same grid."""
    fa, fb = _spectra(a, b)
    return _ring_correlation(fa, fb)


def frc_resolution(a: np.ndarray, b: np.ndarray, threshold: str | float = "1/7") -> float:
    """FRC resolution in px of the images' grid (1 / the first threshold crossing).

    Returns 2.0 (the Nyquist limit) when the curve never falls below the threshold, and NaN
    when the images do not correlate even at the lowest frequencies (nothing in common).
    """
    freqs, frc, n = _curve_with_counts(*_spectra(a, b))
    return _resolution(freqs, frc, n, threshold)


def stack_frc_resolution(
    sr_even_mean: np.ndarray, sr_odd_mean: np.ndarray, threshold: str | float = "1/7"
) -> float:
    """FRC resolution (px of the given grid) of a stack's SR from its two independent halves.

    Give the mean SR of the even frames and the mean SR of the odd frames (``split_halves``),
    each made by the same network: their noise, and the texture the network makes of it, are
    independent, so only reproducible structure counts. Model-agnostic: any SR grid works.
    Needs a stack of >= 2 frames; a single SR frame has no independent half (the one-image
    checkerboard split assumes per-pixel noise, which an SR output does not have).
    """
    return frc_resolution(sr_even_mean, sr_odd_mean, threshold)


def split_halves(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The even and the odd frames of a (T, H, W) stack (T >= 2): two independent halves."""
    s = np.asarray(stack)
    if s.ndim != 3 or s.shape[0] < 2:
        raise ValueError(f"need a (T, H, W) stack with T >= 2, got shape {s.shape}")
    return s[0::2], s[1::2]


def single_image_frc_resolution(img: np.ndarray, threshold: str | float = "1/7") -> float:
    """One-image FRC (Koho et al. 2019) in px of ``img``, for images with per-pixel noise.

    The image is split by pixel parity into four sub-images; the FRC of each diagonal pair
    ((even, even) with (odd, odd), and (even, odd) with (odd, even)) is computed after undoing
    their known 1-px diagonal offset as a Fourier phase, the two curves are averaged, and the
    sub-image frequencies are mapped back to the full grid (x 1/2), times
    ``ONE_IMAGE_CORRECTION``. Valid only when neighbouring pixels have independent noise (raw
    camera frames): interpolated or SR images have correlated noise and read too fine. The
    finest readable resolution is 4 px x ``ONE_IMAGE_CORRECTION`` (the sub-images' Nyquist).
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"one-image FRC needs a 2D image, got shape {a.shape}")
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    a = a[:h, :w]
    ee, oo, eo, oe = a[0::2, 0::2], a[1::2, 1::2], a[0::2, 1::2], a[1::2, 0::2]
    curves = []
    for first, second, shift in ((ee, oo, (0.5, 0.5)), (eo, oe, (0.5, -0.5))):
        fa, fb = _spectra(first, second)
        ky = np.fft.fftfreq(fa.shape[0])[:, None]
        kx = np.fft.fftfreq(fa.shape[1])[None, :]
        # the second sub-image samples the scene `shift` sub-image px further on: undo it
        fb = fb * np.exp(-2j * math.pi * (ky * shift[0] + kx * shift[1]))
        curves.append(_curve_with_counts(fa, fb))
    freqs, n = curves[0][0], curves[0][2]
    frc = (curves[0][1] + curves[1][1]) / 2
    sub_px = _resolution(freqs, frc, 2 * n, threshold)  # two curves: twice the samples
    return 2.0 * sub_px * ONE_IMAGE_CORRECTION


def threshold_curve(threshold: str | float, ring_pixels: np.ndarray) -> np.ndarray:
    """The FRC threshold per ring: "1/7", "half-bit" (by ring pixel count) or a number."""
    n = np.maximum(np.asarray(ring_pixels, dtype=np.float64), 1.0)
    if threshold == "1/7":
        return np.full(n.shape, 1.0 / 7.0)
    if threshold == "half-bit":
        root = np.sqrt(n)
        return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)
    if isinstance(threshold, (int, float)) and 0 < float(threshold) < 1:
        return np.full(n.shape, float(threshold))
    raise ValueError(
        f"threshold must be '1/7', 'half-bit' or a number in (0, 1), got {threshold!r}"
    )


# -- internals -----------------------------------------------------------------------------


def _spectra(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"FRC needs two 2D images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape) < 16:
        raise ValueError(f"FRC needs images of at least 16x16 px, got {a.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("FRC images have NaN or infinite values")
    win = np.outer(tukey(a.shape[0], TUKEY_ALPHA), tukey(a.shape[1], TUKEY_ALPHA))
    return (
        np.fft.fft2((a - a.mean()) * win),
        np.fft.fft2((b - b.mean()) * win),
    )


def _ring_correlation(fa: np.ndarray, fb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    freqs, frc, _ = _curve_with_counts(fa, fb)
    return freqs, frc


def _curve_with_counts(fa: np.ndarray, fb: np.ndarray):
    h, w = fa.shape
    kr = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    step = 1.0 / min(h, w)
    ring = np.round(kr / step).astype(int)
    inside = kr <= 0.5
    r = ring[inside]
    n_rings = int(r.max()) + 1

    def ring_sum(v: np.ndarray) -> np.ndarray:
        return np.bincount(r, v[inside], minlength=n_rings)

    cross = ring_sum(np.real(fa * np.conj(fb)))
    pa, pb = ring_sum(np.abs(fa) ** 2), ring_sum(np.abs(fb) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.where(pa * pb > 0, cross / np.sqrt(pa * pb), 0.0)
    frc = uniform_filter1d(frc, SMOOTH_RINGS, mode="nearest")
    counts = np.bincount(r, minlength=n_rings)
    return np.arange(n_rings) * step, frc, counts


def _resolution(freqs: np.ndarray, frc: np.ndarray, counts: np.ndarray, threshold) -> float:
    thr = threshold_curve(threshold, counts)
    below = np.flatnonzero(frc[SKIP_RINGS:] < thr[SKIP_RINGS:])
    if below.size == 0:
        return 2.0  # correlated up to Nyquist: as fine as this grid can show
    i = int(below[0]) + SKIP_RINGS
    if i == SKIP_RINGS:
        return float("nan")  # below the threshold from the first ring used: nothing in common
    # linear interpolation of the crossing between rings i-1 and i
    d0, d1 = frc[i - 1] - thr[i - 1], frc[i] - thr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    f_cross = freqs[i - 1] + t * (freqs[i] - freqs[i - 1])
    return float(1.0 / f_cross) if f_cross > 0 else float("nan")
