"""Artifact metrics of SR frames: SQUIRREL error map (RSE, RSP, RSF sigma) and decorrelation
resolution, as reported after every fine-tuning iteration.

SQUIRREL (Culley et al. 2018; NanoJ-SQUIRREL / NanoJ-eSRRF ``ErrorMap``) asks how well the SR
image, blurred by a Gaussian resolution-scaling function (RSF) and rescaled in intensity
(``alpha * SR + beta``), explains the LR reference. We follow nanopyx's port
(``nanopyx.core.transform.error_map.ErrorMap``): the LR reference is Fourier-interpolated to the
SR grid with nanopyx's FHT interpolation, sigma is searched on the SR grid, alpha/beta are the
least-squares fit, RSE is the RMS difference and RSP the Pearson correlation. Two fixes:

* The sigma search is bounded, as in the original NanoJ code (``SearchInterval(0,
  maxSigmaBoundary)``). nanopyx 2.1.5 passes the interval to ``scipy.optimize.brent`` as a
  *bracket*, which does not bound the search: on images that do not match (e.g. the example's
  4x-binned STORM against the widefield frame, which are not registered) sigma runs off to
  ~200 px, RSP then measures low-frequency shading only (0.68 there), and one call takes 10+ s.
  The bound is ``MAX_SIGMA`` = 4 LR px rather than NanoJ's 1.7 (FWHM 4 LR px): the oversampled
  widefield data of SFSRM already needs about 2.5 LR px.
* FHT interpolation puts LR pixel k at SR position ``k * scale``; under SAFT's pooling model its
  centre is at ``k * scale + (scale - 1) / 2``. The interpolated reference is shifted by that
  offset so a perfect SR image scores RSP ~1 instead of being penalised (and its
  sigma inflated) for a 1.5 px misregistration at 4x.

Units: RSE is in LR intensity units; RSP is a correlation in [-1, 1]; sigma is in LR pixels;
resolution is in pixels of the analysed image (SR pixels in ``artifact_metrics``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.ndimage import shift as nd_shift
from scipy.optimize import minimize_scalar

from saft_core.edges import import_nanopyx
from saft_core.errors import InvalidParameterError, ShapeMismatchError

log = logging.getLogger(__name__)

# Upper bound of the RSF sigma search (FWHM 9.4 LR px): wide enough for oversampled widefield
# data, small enough that a mismatched pair cannot drift into comparing shading only.
MAX_SIGMA = 4.0  # LR px
SIGMA_TOLERANCE = 0.01  # SR px; finer than any effect on the fit
# artifact_metrics analyses at most this many LR px per side (central crop) to bound its cost.
METRICS_MAX_LR_SIDE = 128
DECORR_MAX_SIDE = 512  # px; decorrelation pads to a power of two, so larger inputs cost a lot


@dataclass(frozen=True)
class ErrorMapResult:
    """SQUIRREL result: RSE (LR intensity units), RSP, RSF sigma (LR px), |error| map (SR grid).

    ``rsp`` is NaN when undefined (a constant reference or SR image); ``constrained`` is True
    when sigma stopped at the search bound (no minimum inside it: a poor match).
    """

    rse: float
    rsp: float
    sigma: float
    map: np.ndarray
    alpha: float = 1.0
    beta: float = 0.0
    constrained: bool = False


def error_map(
    sr: np.ndarray, lr: np.ndarray, scale: int, *, max_sigma: float = MAX_SIGMA
) -> ErrorMapResult:
    """SQUIRREL error map of an SR frame (sH, sW) against its LR frame (H, W), bounded RSF search.

    ``max_sigma`` bounds the RSF sigma in LR px. Raises ShapeMismatchError if the grids do not
    line up, ValueError for non-finite input.
    """
    sr_f, ref = _reference_on_sr_grid(sr, lr, scale)
    ref64 = ref.astype(np.float64)
    ref_c = ref64 - ref64.mean()
    var_ref = float(np.mean(ref_c * ref_c))

    def fit(sigma: float) -> tuple[float, float, float]:
        """(alpha, beta, mse) of the least-squares intensity fit of blur(SR, sigma) to ref."""
        blurred = (gaussian_filter(sr_f, sigma) if sigma > 0 else sr_f).astype(np.float64)
        b_c = blurred - blurred.mean()
        var_b = float(np.mean(b_c * b_c))
        if var_b <= 0:  # constant SR: only the offset can be fitted
            return 0.0, float(ref64.mean()), var_ref
        cov = float(np.mean(b_c * ref_c))
        alpha = cov / var_b
        beta = float(ref64.mean()) - alpha * float(blurred.mean())
        # Residual variance of a least-squares line, exact and cheaper than forming residuals.
        return alpha, beta, max(var_ref - cov * cov / var_b, 0.0)

    hi = float(max_sigma) * scale  # SR px
    res = minimize_scalar(
        lambda s: fit(s)[2], bounds=(0.0, hi), method="bounded", options={"xatol": SIGMA_TOLERANCE}
    )
    sigma_sr, best = float(res.x), float(res.fun)
    # The bounded search never evaluates the end points exactly; take them if they are better.
    for candidate in (0.0, hi):
        mse = fit(candidate)[2]
        if mse < best:
            sigma_sr, best = candidate, mse
    constrained = sigma_sr >= hi - 2 * SIGMA_TOLERANCE
    if constrained:
        log.info("SQUIRREL: RSF constrained at the %.2f LR px bound, no better minimum", max_sigma)
    alpha, beta, _ = fit(sigma_sr)
    blurred = gaussian_filter(sr_f, sigma_sr) if sigma_sr > 0 else sr_f
    model = alpha * blurred.astype(np.float64) + beta
    diff = model - ref64
    rse = float(np.sqrt(np.mean(diff * diff)))
    rsp = _pearson(model, ref64)
    return ErrorMapResult(
        rse=rse,
        rsp=rsp,
        sigma=sigma_sr / scale,
        map=np.abs(diff).astype(np.float32),
        alpha=float(alpha),
        beta=float(beta),
        constrained=constrained,
    )


def estimate_rsf_sigma(
    sr: np.ndarray, lr: np.ndarray, scale: int, *, max_sigma: float = MAX_SIGMA
) -> float:
    """RSF sigma in LR px: the Gaussian that, after ``scale``x average pooling, maps SR to LR.

    SQUIRREL's optimal sigma measures the whole SR->LR blur on the SR grid, which includes the
    pooling's own box blur (variance (1 - 1/scale**2)/12 LR px**2); that part is removed so
    the value plugs into the RSF degradation (pool, then Gaussian) directly. Raises
    InvalidParameterError (field "sigma") when the frames carry no structure to fit.
    """
    sr_a, lr_a = np.asarray(sr, np.float32), np.asarray(lr, np.float32)
    if not (np.isfinite(sr_a).all() and np.isfinite(lr_a).all()):
        raise InvalidParameterError(
            "sigma='auto' cannot be estimated: the frame has NaN or infinite values", field="sigma"
        )
    if _is_flat(sr_a) or _is_flat(lr_a):
        raise InvalidParameterError(
            "sigma='auto' cannot be estimated from a blank frame; give sigma in LR pixels",
            field="sigma",
        )
    result = error_map(sr_a, lr_a, scale, max_sigma=max_sigma)
    if result.constrained:
        log.warning(
            "RSF sigma hit the %.1f LR px search bound (SR and LR frames match poorly)", max_sigma
        )
    box_var = (1.0 - 1.0 / scale**2) / 12.0
    return float(math.sqrt(max(result.sigma**2 - box_var, 0.0)))


def decorrelation_resolution(
    img: np.ndarray, pixel_size: float = 1.0, *, max_side: int | None = DECORR_MAX_SIDE
) -> float:
    """Decorrelation-analysis resolution (Descloux 2019, nanopyx) in units of ``pixel_size``.

    With ``pixel_size=1`` the result is in pixels of ``img`` (2 px is the Nyquist limit).
    A central crop of at most ``max_side`` px per side is analysed (cost grows fast with size).
    Returns NaN when undefined: a constant or non-finite image, or no cut-off found.
    """
    a = np.asarray(img, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"decorrelation analysis needs a 2D image, got shape {a.shape}")
    if max_side is not None:
        a = _center_crop(a, max_side, max_side)
    if not np.isfinite(a).all() or _is_flat(a) or min(a.shape) < 8:
        return float("nan")
    decorr = import_nanopyx("nanopyx.core.analysis.decorr")
    analysis = decorr.DecorrAnalysis(pixel_size=1.0)
    analysis.run_analysis(np.ascontiguousarray(a))
    res_px = float(analysis.resolution)
    if not math.isfinite(res_px) or res_px <= 0:
        return float("nan")
    return res_px * float(pixel_size)


def artifact_metrics(
    sr_frame: np.ndarray,
    lr_frame: np.ndarray,
    scale: int,
    *,
    max_lr_side: int | None = METRICS_MAX_LR_SIDE,
    background: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-iteration metrics: {"rse", "rsp", "resolution" (SR px), "sigma" (LR px), "reason"}.

    Computed on the central ``max_lr_side`` LR px (and matching SR px) so one call stays well
    under 2 s on a CPU. Never raises for image content: a value that cannot be computed is None
    and ``reason`` says why (None when all values are present). Mismatched grids still raise.

    ``background`` (an LR-grid map, ``saft_core.background``) is subtracted from the LR frame
    first. SQUIRREL fits one offset, so against a strongly varying background it scores an SR
    image that leaves the background out (as it should) worse than one painted with haze: on
    the simulated high-background stack the ground truth itself scores 2.8x the pretrained
    network's RSE vs the raw frame, 1.0x vs the frame minus the map.
    """
    sr_a = np.asarray(sr_frame, dtype=np.float32)
    lr_a = np.asarray(lr_frame, dtype=np.float32)
    if background is not None:
        bg = np.asarray(background, dtype=np.float32)
        if bg.shape != lr_a.shape:
            raise ShapeMismatchError(
                f"background map shape {bg.shape} does not match the LR frame {lr_a.shape}"
            )
        lr_a = lr_a - bg
    _check_grids(sr_a, lr_a, scale)
    if max_lr_side is not None:
        lr_a, sr_a = _center_crop_pair(lr_a, sr_a, scale, max_lr_side)
    out: dict[str, Any] = {"rse": None, "rsp": None, "resolution": None, "sigma": None}
    reasons: list[str] = []
    if not (np.isfinite(sr_a).all() and np.isfinite(lr_a).all()):
        out["reason"] = "SR or LR frame has NaN or infinite values"
        return out
    if _is_flat(lr_a):
        reasons.append("LR frame is blank: RSE/RSP undefined")
    else:
        try:
            em = error_map(sr_a, lr_a, scale)
        except Exception as exc:  # advisory metric: log, report, carry on
            log.warning("SQUIRREL error map failed", exc_info=True)
            reasons.append(f"error map failed: {exc}")
        else:
            out["rse"] = _finite(em.rse)
            if _is_flat(sr_a):
                reasons.append("SR frame is blank: RSP and sigma undefined")
            else:
                out["rsp"] = _finite(em.rsp)
                out["sigma"] = _finite(em.sigma)
    try:
        out["resolution"] = _finite(decorrelation_resolution(sr_a))
    except Exception as exc:
        log.warning("decorrelation analysis failed", exc_info=True)
        reasons.append(f"decorrelation analysis failed: {exc}")
    else:
        if out["resolution"] is None:
            reasons.append("no decorrelation cut-off (blank or structureless SR frame)")
    out["reason"] = "; ".join(dict.fromkeys(reasons)) or None
    return out


# ----------------------------------------------------------------------------- helpers


def _reference_on_sr_grid(
    sr: np.ndarray, lr: np.ndarray, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """(SR float32, LR Fourier-interpolated onto the SR grid with pixel centres aligned)."""
    sr_f = np.ascontiguousarray(sr, dtype=np.float32)
    lr_f = np.ascontiguousarray(lr, dtype=np.float32)
    _check_grids(sr_f, lr_f, scale)
    if not (np.isfinite(sr_f).all() and np.isfinite(lr_f).all()):
        raise ValueError("SR and LR frames must be finite")
    if scale == 1:
        return sr_f, lr_f
    interp = import_nanopyx("nanopyx.core.transform._interpolation")
    up = np.asarray(interp.fht_space_interpolation(lr_f, scale), dtype=np.float32)
    # FHT output sample k*scale is LR pixel k; the pooled pixel's centre is (scale-1)/2 further.
    offset = (scale - 1) / 2.0
    ref = nd_shift(up, (offset, offset), order=3, mode="nearest").astype(np.float32)
    return sr_f, ref


def _check_grids(sr: np.ndarray, lr: np.ndarray, scale: int) -> None:
    if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if sr.ndim != 2 or lr.ndim != 2:
        raise ShapeMismatchError(
            f"metrics need 2D frames, got SR {sr.shape} and LR {lr.shape}", field="sr"
        )
    if sr.shape != (lr.shape[0] * scale, lr.shape[1] * scale):
        raise ShapeMismatchError(
            f"SR frame shape {sr.shape} is not {scale}x the LR frame shape {lr.shape}", field="sr"
        )


def _center_crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    y0, x0 = max((a.shape[0] - h) // 2, 0), max((a.shape[1] - w) // 2, 0)
    return a[y0 : y0 + h, x0 : x0 + w]


def _center_crop_pair(
    lr: np.ndarray, sr: np.ndarray, scale: int, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """The same central region of an LR frame and its SR frame (cropped on LR pixel edges)."""
    h, w = min(lr.shape[0], side), min(lr.shape[1], side)
    y0, x0 = (lr.shape[0] - h) // 2, (lr.shape[1] - w) // 2
    lr_c = lr[y0 : y0 + h, x0 : x0 + w]
    sr_c = sr[y0 * scale : (y0 + h) * scale, x0 * scale : (x0 + w) * scale]
    return lr_c, sr_c


def _is_flat(a: np.ndarray) -> bool:
    """True if the image has no variation worth analysing (relative to its magnitude)."""
    lo, hi = float(np.min(a)), float(np.max(a))
    return hi - lo <= 1e-6 * max(abs(lo), abs(hi), 1e-30)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a_c, b_c = a - a.mean(), b - b.mean()
    den = math.sqrt(float(np.sum(a_c * a_c)) * float(np.sum(b_c * b_c)))
    return float(np.sum(a_c * b_c)) / den if den > 0 else float("nan")


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None
