"""PSF width of an LR stack from its own data, and resampling it to a model's training sampling.

Why: a network trained at one PSF width in LR pixels hallucinates when the user's camera
samples the PSF more finely (e.g. 2x oversampled widefield data): downsampling the input until
its PSF width in pixels matches the training condition brings the data back to what the
network knows.

The estimate fits the frames' radially averaged power spectrum, after removing the noise, to

    S(k) = A * k**-alpha * exp(-4 pi^2 sigma^2 k^2)          (k in cycles per LR pixel)

a power-law object spectrum (lines ~ k^-1, areas ~ k^-3) seen through a Gaussian OTF. The
noise power is measured from differences of consecutive frames (pure noise for independent
draws of a slowly changing scene), so it needs no assumption about where the signal ends.
The camera pixel's own box blur (sinc^2 in power) is divided out first, so ``sigma`` is the
optical PSF alone, as ``SimCondition.psf_sigma_lr`` and a model's ``psf_sigma_lr_px``.
Smooth (out-of-focus) background only affects the lowest frequencies, which are left out.

Measured (tests/core/test_psf.py): filaments + ER at sigma 1.0-2.5 LR px, 8 frames of
128x128, with the TRAINING, LOW_SNR and HIGH_BACKGROUND noise and background: within 15%;
one frame (noise from the spectrum's corners) as well. Limits: structures with a width of
their own read that width as PSF (mitochondria-like tubes of ~0.5 um: 1.2-1.5x too wide at
sigma <= 1.5, within 10% at 2-2.5); fast motion puts signal into the frame differences, which
then overstate the noise and shorten the usable band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, zoom
from scipy.optimize import least_squares
from scipy.signal.windows import tukey

from saft_core.errors import InvalidParameterError

K_MIN = 0.04  # cycles / LR px; below this the background and the window's leakage dominate
MIN_SNR = 0.2  # rings kept while their signal power is at least this fraction of the noise's
MAX_FRAMES = 64  # frames analysed (evenly spaced): enough to average the spectra
MIN_RINGS = 4  # fewer usable rings than this: the width cannot be told from the data
MODEL_ERROR = 0.05  # relative misfit of the power-law x Gaussian model itself, per ring


@dataclass(frozen=True)
class ResamplePlan:
    """How to resample the input: ``factor`` < 1 downsamples (1 = leave it), and why."""

    factor: float
    reason: str


def estimate_psf_sigma(stack: np.ndarray) -> float:
    """Gaussian PSF sigma in LR px of a (T, H, W) or (H, W) stack, from its power spectrum.

    Raises InvalidParameterError (field "psf") when the data carry too little signal above
    the noise to fit a width (blank or pure-noise frames).
    """
    frames = _frames(stack)
    k, signal, noise, count = _signal_spectrum(frames)
    # the contiguous band of rings from K_MIN on whose signal stands above the noise
    above = signal[k >= K_MIN] > MIN_SNR * noise[k >= K_MIN]
    n_band = above.size if above.all() else int(np.argmin(above))
    band = np.flatnonzero(k >= K_MIN)[:n_band]
    if band.size < MIN_RINGS:
        raise InvalidParameterError(
            "the PSF width cannot be estimated: too little signal above the noise "
            f"({band.size} usable frequency rings)",
            field="psf",
        )
    kb, sb = k[band], signal[band]
    # Each ring's power is a mean over count samples; its log has a relative error that
    # grows as the signal sinks towards the noise.
    rel_err = (sb + noise[band]) / (sb * np.sqrt(count[band]))
    weights = 1.0 / np.sqrt(rel_err**2 + MODEL_ERROR**2)

    def residual(p: np.ndarray) -> np.ndarray:
        log_a, alpha, sigma = p
        model = log_a - alpha * np.log(kb) - 4 * math.pi**2 * sigma**2 * kb**2
        return weights * (np.log(sb) - model)

    start = np.array([math.log(sb[0]) + math.log(kb[0]), 1.0, 1.0])
    fit = least_squares(residual, start, bounds=([-np.inf, 0.0, 0.05], [np.inf, 4.0, 20.0]))
    return float(fit.x[2])


def sampling_ratio(estimated_sigma: float, trained_sigma: float) -> float:
    """How many times wider the data's PSF is in LR px than the model's training PSF."""
    if not (estimated_sigma > 0 and trained_sigma > 0):
        raise InvalidParameterError("PSF sigmas must be positive", field="psf")
    return float(estimated_sigma) / float(trained_sigma)


def plan_resampling(estimated: float, trained: float, tolerance: float = 0.25) -> ResamplePlan:
    """Factor that brings the data's PSF width in px to the model's training width.

    Within ``tolerance`` (relative) of a ratio of 1 the input is left as it is (factor 1):
    resampling costs sharpness of its own and a small mismatch is within what SAFT adapts to.
    """
    ratio = sampling_ratio(estimated, trained)
    if abs(ratio - 1.0) <= tolerance:
        return ResamplePlan(
            1.0,
            f"PSF sigma {estimated:.2f} LR px is within {tolerance:.0%} of the model's "
            f"{trained:.2f}: no resampling",
        )
    factor = 1.0 / ratio
    kind = "oversampled" if ratio > 1 else "undersampled"
    return ResamplePlan(
        factor,
        f"PSF sigma {estimated:.2f} LR px is {ratio:.2f}x the model's {trained:.2f} "
        f"({kind}): resample the input by {factor:.3f}",
    )


def plan_for_model(
    estimated: float, condition: dict | None, tolerance: float = 0.25
) -> ResamplePlan:
    """The resampling a model needs for data of PSF sigma ``estimated`` (LR px).

    ``condition`` is the model's ``training_condition`` (saft_core.networks): a network trained
    over a range of PSF widths (``psf_sigma_lr_px_range``) takes any width inside it as it is,
    and data outside is brought to the nearest end; without a range, to the one trained width.
    A model that does not record its condition (e.g. published SFSRM weights) is left alone.
    """
    if condition is None:
        return ResamplePlan(1.0, "the model does not record its training PSF: no resampling")
    span = condition.get("psf_sigma_lr_px_range")
    if span is None:
        return plan_resampling(estimated, float(condition["psf_sigma_lr_px"]), tolerance)
    low, high = float(span[0]), float(span[1])
    if low * (1 - tolerance) <= estimated <= high * (1 + tolerance):
        return ResamplePlan(
            1.0,
            f"PSF sigma {estimated:.2f} LR px is inside the model's training range "
            f"{low:.2f}-{high:.2f}: no resampling",
        )
    return plan_resampling(estimated, low if estimated < low else high, tolerance=0.0)


def sigma_for_model(stack: np.ndarray, condition: dict | None) -> tuple[float, ResamplePlan]:
    """The stack's PSF sigma (LR px) for SAFT's RSF, refused when the model needs resampling.

    Why refuse: a network run on data sampled far outside what it was trained on paints its
    training structures at the wrong scale; binning the stack (or a model trained at that
    sampling) is the fix, and the message says which. Raises InvalidParameterError (field
    "lr") then; an estimate that cannot be made raises it with field "psf".
    """
    sigma = estimate_psf_sigma(stack)
    plan = plan_for_model(sigma, condition)
    if plan.factor != 1.0:
        binning = max(1, round(1.0 / plan.factor))
        advice = (
            f"bin the stack {binning}x{binning} before fine-tuning"
            if plan.factor < 1
            else "use a model trained at this sampling"
        )
        raise InvalidParameterError(
            f"{plan.reason}; {advice}, or set sigma explicitly to run anyway", field="lr"
        )
    return sigma, plan


def resample_stack(stack: np.ndarray, factor: float) -> np.ndarray:
    """The stack on a grid of pixels 1/factor times as large, frames resampled independently.

    Input grid: pixels of the camera (LR px). Output grid: pixel size 1/factor LR px, shape
    round(factor * (H, W)), same field of view and intensity scale (per-pixel means, not
    sums). Downsampling first blurs by the box of the larger pixel (the part the camera's own
    pixel does not already provide), as if recorded with the larger pixel: this is the
    anti-aliasing, and it keeps the model's "pixel-integrated" image formation.
    """
    frames = _frames(stack, limit=None)
    factor = _check_factor(factor)
    if factor == 1.0:
        same = frames.astype(np.float32)
        return same if np.ndim(stack) == 3 else same[0]
    h, w = frames.shape[-2:]
    shape = (max(1, round(h * factor)), max(1, round(w * factor)))
    out = np.stack([_resample(f, factor, shape) for f in frames]).astype(np.float32)
    return out if np.ndim(stack) == 3 else out[0]


def output_to_input_grid(
    sr: np.ndarray, factor: float, scale: int, *, input_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """SR output of a resampled input mapped onto the ``scale``x grid of the original input.

    ``sr`` (..., scale*h', scale*w') has pixels of 1/(scale*factor) original LR px (the SR grid
    of ``resample_stack(stack, factor)``); the result has pixels of 1/scale original LR px,
    shape scale*(H, W) of the original input (``input_shape``, else inferred), so it overlays
    the original frames upsampled ``scale`` times, as a run without resampling would.
    """
    factor = _check_factor(factor)
    sr = np.asarray(sr, dtype=np.float32)
    if input_shape is None:
        input_shape = (round(sr.shape[-2] / scale / factor), round(sr.shape[-1] / scale / factor))
    shape = (scale * int(input_shape[0]), scale * int(input_shape[1]))
    if factor == 1.0 and tuple(sr.shape[-2:]) == shape:
        return sr.copy()
    lead = sr.shape[:-2]
    flat = sr.reshape(-1, *sr.shape[-2:])
    out = np.stack([_resample(f, 1.0 / factor, shape) for f in flat])
    return out.reshape(*lead, *shape).astype(np.float32)


# -- internals -----------------------------------------------------------------------------


def _frames(stack: np.ndarray, limit: int | None = MAX_FRAMES) -> np.ndarray:
    a = np.asarray(stack, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape[-2:]) < 16:
        raise InvalidParameterError(
            f"need a (T, H, W) stack or an (H, W) frame of at least 16x16 px, got {a.shape}",
            field="psf",
        )
    if not np.isfinite(a).all():
        raise InvalidParameterError("the stack has NaN or infinite values", field="psf")
    if limit is not None and a.shape[0] > limit:
        a = a[np.linspace(0, a.shape[0] - 1, limit).round().astype(int)]
    return a


def _signal_spectrum(frames: np.ndarray):
    """Per ring (1 frequency bin wide): k, signal power, noise power, samples averaged."""
    t, h, w = frames.shape
    win = np.outer(tukey(h, 0.25), tukey(w, 0.25))

    def power(imgs: np.ndarray) -> np.ndarray:
        centred = imgs - imgs.mean(axis=(-2, -1), keepdims=True)
        return (np.abs(np.fft.fft2(centred * win)) ** 2).mean(axis=0)

    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.fftfreq(w)[None, :]
    pixel_otf2 = (np.sinc(ky) * np.sinc(kx)) ** 2  # the camera pixel's box blur, in power
    kr = np.hypot(ky, kx)
    step = 1.0 / min(h, w)
    ring = np.round(kr / step).astype(int)
    inside = kr <= 0.5
    n_rings = int(ring[inside].max()) + 1

    def ring_mean(p2d: np.ndarray) -> np.ndarray:
        s = np.bincount(ring[inside], p2d[inside], minlength=n_rings)
        return s / np.maximum(np.bincount(ring[inside], minlength=n_rings), 1)

    p_frames = power(frames)
    if t >= 2:
        # Differences of consecutive frames hold twice the noise power and (almost) no signal.
        p_noise = power(np.diff(frames, axis=0)) / 2.0
        floor = float(np.mean(p_noise[kr > 0.3]))
    else:  # one frame: the corners of the spectrum, beyond any PSF of sigma >= 1 px
        floor = float(np.mean(p_frames[kr > 0.45]))
    pixels = np.bincount(ring[inside], minlength=n_rings).astype(float)
    signal = ring_mean((p_frames - floor) / pixel_otf2)
    noise = floor * ring_mean(1.0 / pixel_otf2)
    k = np.arange(n_rings) * step
    return k, signal, noise, pixels * t


def _check_factor(factor: float) -> float:
    f = float(factor)
    if not (math.isfinite(f) and 0.05 <= f <= 20.0):
        raise InvalidParameterError(
            f"resampling factor must be in [0.05, 20], got {factor!r}", field="psf"
        )
    return f


def _resample(img: np.ndarray, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """One frame zoomed by ``factor`` to ``shape`` (pixel-area grid convention)."""
    img = np.asarray(img, dtype=np.float64)
    if factor < 1.0:
        # extra box blur of the larger pixel: variance (1/f^2 - 1)/12 px^2, as a Gaussian
        img = gaussian_filter(img, math.sqrt((1.0 / factor**2 - 1.0) / 12.0), mode="reflect")
    zooms = (shape[0] / img.shape[0], shape[1] / img.shape[1])
    return zoom(img, zooms, order=3, mode="grid-mirror", grid_mode=True)
