"""Seeded simulator of live-cell widefield stacks with their 4x ground truth.

Why: the default networks are trained, and SAFT's artifact suppression is measured, on data
whose truth is known. The image model, per frame t:

    gt_t     = structures rendered on the SR grid (4x), moved by drift + smooth deformation,
               times exp(-bleach_rate * t)                                   (no PSF)
    signal_t = bin4x4(G_psf * gt_t) / 16                  photons per LR pixel
    clean_t  = signal_t + background(y, x) + offset      expected counts
    lr_t     = Poisson(signal_t + background) + offset + Normal(0, read_noise)

``gt`` is in "LR photon" units: a uniform patch of value v gives v photons per LR pixel, so
``avgpool4(G * gt) == signal``. Structures are point samples splatted bilinearly on the SR grid
(one SR pixel ~ 25 nm for a 100 nm camera pixel), so motion moves geometry, not pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.signal import lfilter
from scipy.spatial import Voronoi

SCALE = 4  # SR pixels per LR pixel
STRUCTURES = ("filaments", "er", "mitochondria", "vesicles")
_SAMPLE_STEP = 0.5  # SR pixels between point samples along curves and across areas
_LINE_WIDTH = {"filaments": 0.45, "er": 0.9, "mitochondria": 0.8, "vesicles": 0.6}  # sigma, SR px
_DEFORM_MODES = 4  # sinusoidal modes per displacement component


@dataclass(frozen=True)
class SimCondition:
    """Imaging condition of a simulated stack (photons = photoelectrons; camera gain 1)."""

    structure: str = "filaments+er"  # "+"-joined subset of STRUCTURES, or "all"
    psf_sigma_lr: float = 1.0  # Gaussian PSF sigma, LR pixels
    photons: float = 400.0  # peak structure signal of frame 0, photons per LR pixel
    background: float = 40.0  # mean background, photons per LR pixel
    offset: float = 100.0  # camera offset, counts
    read_noise: float = 1.6  # Gaussian read noise, counts rms
    drift: float = 0.05  # global drift speed, LR pixels per frame (fixed random direction)
    bleach_rate: float = 0.004  # exponential photobleaching rate, per frame
    density: float = 1.0  # multiplier on the number of objects per unit area
    deform: float = 0.25  # amplitude of the smooth local deformation, LR pixels
    bg_variation: float = 0.5  # peak-to-peak of the smooth background, fraction of its mean
    # Out-of-focus light: structures of another plane, blurred by ``defocus_sigma_lr`` (LR px),
    # with a peak of ``defocus`` x ``photons``. Part of the background: never in the truth.
    defocus: float = 0.0
    defocus_sigma_lr: float = 4.0

    def structures(self) -> tuple[str, ...]:
        """The structure classes this condition renders."""
        if self.structure == "all":
            return STRUCTURES
        names = tuple(s.strip() for s in self.structure.split("+") if s.strip())
        bad = [s for s in names if s not in STRUCTURES]
        if not names or bad:
            raise ValueError(f"unknown structure {self.structure!r}; use {STRUCTURES} or 'all'")
        return names


# The training condition: microtubule-like filaments and ER-like tubules, good SNR.
TRAINING = SimCondition()
# Shifted conditions for the artifact experiments (each differs in one respect).
LOW_SNR = replace(TRAINING, photons=40.0, background=10.0)
WIDE_PSF = replace(TRAINING, psf_sigma_lr=1.6)
HIGH_BACKGROUND = replace(TRAINING, background=800.0, bg_variation=0.8)
OTHER_STRUCTURE = replace(TRAINING, structure="mitochondria")
# ~2x oversampled (PSF twice as wide in LR pixels) under strong out-of-focus light, as in the
# published ER and mitochondria frames; and fast motion with strong bleaching.
OVERSAMPLED_HAZE = replace(
    TRAINING, psf_sigma_lr=2.0, background=150.0, defocus=1.0, defocus_sigma_lr=5.0
)
FAST_MOTION = replace(TRAINING, drift=0.8, deform=1.0, bleach_rate=0.05)
PRESETS: dict[str, SimCondition] = {
    "training": TRAINING,
    "low_snr": LOW_SNR,
    "wide_psf": WIDE_PSF,
    "high_background": HIGH_BACKGROUND,
    "other_structure": OTHER_STRUCTURE,
    "oversampled_haze": OVERSAMPLED_HAZE,
    "fast_motion": FAST_MOTION,
}


@dataclass
class SimResult:
    """A simulated stack: noisy LR counts, 4x truth and the noiseless pieces."""

    lr: np.ndarray  # (T, H, W) float32 raw counts
    gt: np.ndarray  # (T, 4H, 4W) float32 structure intensity, LR-photon units, no PSF
    params: dict[str, Any]
    clean: np.ndarray  # (T, H, W) float32 expected counts (signal + background + offset)
    background: np.ndarray  # (H, W) float32 background photons per LR pixel (no offset)
    signal: np.ndarray | None = field(repr=False, default=None)  # (T, H, W) structure photons


def simulate_stack(
    condition: SimCondition = TRAINING,
    n_frames: int = 20,
    lr_shape: tuple[int, int] = (64, 64),
    seed: int = 0,
) -> SimResult:
    """Simulate ``n_frames`` LR frames of ``lr_shape`` LR pixels under ``condition``."""
    if n_frames < 1 or min(lr_shape) < 4:
        raise ValueError("need n_frames >= 1 and an LR frame of at least 4x4 pixels")
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in lr_shape)
    sigma_sr = SCALE * float(condition.psf_sigma_lr)
    # The canvas is the SR frame plus a PSF-wide border (a multiple of the scale, so binning
    # stays aligned); structures are generated further out so drift brings new ones in.
    pad = SCALE * max(1, math.ceil(4 * sigma_sr / SCALE))
    canvas = (SCALE * h + 2 * pad, SCALE * w + 2 * pad)
    travel = SCALE * (abs(condition.drift) * (n_frames - 1) + 2 * condition.deform)
    margin = travel + 12.0
    domain = (-margin, canvas[0] + margin, -margin, canvas[1] + margin)

    layers = []
    for name in condition.structures():
        gen_rng = np.random.default_rng([seed, STRUCTURES.index(name)])
        pts, wts = _GENERATORS[name](gen_rng, domain, condition.density)
        layers.append((name, pts, wts))

    theta = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(theta), np.cos(theta)])  # (dy, dx)
    drift_lr = condition.drift * np.arange(n_frames)[:, None] * direction[None]  # (T, 2)
    deform = _Deformation(rng, canvas, condition.deform * SCALE, n_frames)
    bleach = np.exp(-condition.bleach_rate * np.arange(n_frames))

    frames = np.empty((n_frames, *canvas), np.float32)
    for t in range(n_frames):
        acc = np.zeros(canvas, np.float32)
        for name, pts, wts in layers:
            moved = pts + SCALE * drift_lr[t] + deform.displacement(name, pts, t)
            img = _splat(moved, wts, canvas)
            acc += gaussian_filter(img, _LINE_WIDTH[name], truncate=3.0)
        frames[t] = acc * bleach[t]

    # PSF blur and 4x4 binning are one linear map per axis: signal = By @ frame @ Bx^T.
    by = _blur_bin_matrix(canvas[0], pad, h, sigma_sr)
    bx = _blur_bin_matrix(canvas[1], pad, w, sigma_sr)
    signal = np.matmul(np.matmul(by, frames), bx.T)  # mean over each 4x4 block
    peak = float(signal[0].max())
    gain = condition.photons / peak if peak > 0 else 0.0
    signal = (signal * gain).astype(np.float32)
    gt = frames[:, pad : pad + SCALE * h, pad : pad + SCALE * w] * np.float32(gain)

    background = _background(rng, (h, w), condition.background, condition.bg_variation)
    if condition.defocus > 0:
        background = background + _out_of_focus(condition, (h, w), seed)
    expected = signal + background[None]
    counts = rng.poisson(np.clip(expected, 0, None)).astype(np.float32)
    read = rng.normal(0.0, condition.read_noise, size=counts.shape).astype(np.float32)
    lr = counts + np.float32(condition.offset) + read
    clean = (expected + np.float32(condition.offset)).astype(np.float32)

    params = {
        "condition": asdict(condition),
        "n_frames": n_frames,
        "lr_shape": [h, w],
        "seed": seed,
        "scale": SCALE,
        "drift_yx_lr": drift_lr.tolist(),  # global shift of frame t, LR pixels
        "bleach": bleach.tolist(),
        "gain": gain,  # canvas units -> LR photons
        "n_points": {name: int(len(p)) for name, p, _ in layers},
    }
    return SimResult(
        lr=lr.astype(np.float32),
        gt=np.ascontiguousarray(gt, dtype=np.float32),
        params=params,
        clean=clean,
        background=background,
        signal=signal,
    )


def rsf_reference(gt: np.ndarray, psf_sigma_lr: float) -> np.ndarray:
    """The truth seen through the microscope: avgpool 4x then Gaussian blur (LR pixels)."""
    gt = np.asarray(gt, dtype=np.float32)
    lead = gt.shape[:-2]
    hs, ws = gt.shape[-2:]
    pooled = gt.reshape(*lead, hs // SCALE, SCALE, ws // SCALE, SCALE).mean(axis=(-3, -1))
    sig = [0.0] * len(lead) + [psf_sigma_lr, psf_sigma_lr]
    return gaussian_filter(pooled, sig, mode="nearest").astype(np.float32)


# -- rendering helpers -----------------------------------------------------------------------


def _splat(pts: np.ndarray, wts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear splat of weighted points (y, x in SR pixels) onto an image of ``shape``."""
    y, x = pts[:, 0], pts[:, 1]
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    idx, val = [], []
    for dy, dx, wgt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
        idx.append(yy[ok] * shape[1] + xx[ok])
        val.append((wts * wgt)[ok])
    flat = np.bincount(np.concatenate(idx), np.concatenate(val), minlength=shape[0] * shape[1])
    return flat.reshape(shape).astype(np.float32)


def _blur_bin_matrix(n_canvas: int, pad: int, n_lr: int, sigma_sr: float) -> np.ndarray:
    """(n_lr, n_canvas) matrix: Gaussian blur (sigma in SR px) then 4-pixel mean binning."""
    radius = max(1, math.ceil(4 * sigma_sr))
    offs = np.arange(-radius, radius + 1)
    kern = np.exp(-0.5 * (offs / sigma_sr) ** 2)
    kern /= kern.sum()
    blur = np.zeros((SCALE * n_lr, n_canvas))
    rows = np.arange(SCALE * n_lr)
    for o, k in zip(offs, kern, strict=True):
        cols = rows + pad + o
        ok = (cols >= 0) & (cols < n_canvas)
        blur[rows[ok], cols[ok]] += k
    binned = blur.reshape(n_lr, SCALE, n_canvas).mean(axis=1)
    return binned.astype(np.float32)


def _out_of_focus(condition: SimCondition, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Light from another focal plane: the same kinds of structure, blurred far beyond the PSF
    (photons per LR pixel, static over the stack, peak = defocus x photons)."""
    h, w = shape
    rng = np.random.default_rng([seed, 97])
    domain = (-8.0 * SCALE, SCALE * (h + 8), -8.0 * SCALE, SCALE * (w + 8))
    canvas = np.zeros((SCALE * h, SCALE * w), np.float32)
    for name in condition.structures():
        pts, wts = _GENERATORS[name](rng, domain, condition.density)
        canvas += _splat(pts, wts, canvas.shape)
    pooled = canvas.reshape(h, SCALE, w, SCALE).mean(axis=(1, 3))
    blurred = gaussian_filter(pooled, condition.defocus_sigma_lr, mode="reflect")
    peak = float(blurred.max())
    if peak <= 0:
        return np.zeros(shape, np.float32)
    return (blurred * (condition.defocus * condition.photons / peak)).astype(np.float32)


def _background(rng: np.random.Generator, shape: tuple[int, int], mean: float, var: float):
    """Smooth low-frequency background (photons per LR pixel) with the requested mean."""
    h, w = shape
    noise = rng.standard_normal((h, w))
    smooth = gaussian_filter(noise, max(h, w) / 6, mode="wrap")
    # A gentle ramp as well: cells are brighter towards their thick centre.
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    smooth = smooth / (smooth.std() + 1e-12) + rng.normal() * yy + rng.normal() * xx
    span = smooth.max() - smooth.min()
    field_ = (smooth - smooth.mean()) / (span if span > 0 else 1.0)
    return (mean * (1.0 + var * field_)).clip(0, None).astype(np.float32)


class _Deformation:
    """Smooth, zero-at-t=0 displacement field: a few sinusoids with oscillating amplitudes."""

    def __init__(
        self, rng: np.random.Generator, canvas: tuple[int, int], amp_sr: float, n: int
    ) -> None:
        k = _DEFORM_MODES
        wavelength = rng.uniform(24, 64, size=(2, k)) * SCALE  # SR pixels
        angle = rng.uniform(0, 2 * np.pi, size=(2, k))
        self.kvec = (
            np.stack([np.sin(angle), np.cos(angle)], -1) * (2 * np.pi / wavelength)[..., None]
        )  # (2 components, k modes, 2 coords)
        self.phase = rng.uniform(0, 2 * np.pi, size=(2, k))
        omega = rng.uniform(2 * np.pi / 60, 2 * np.pi / 15, size=(2, k))  # per frame
        psi = rng.uniform(0, 2 * np.pi, size=(2, k))
        a = rng.standard_normal((2, k)) * amp_sr / math.sqrt(k)
        t = np.arange(n)[:, None, None]
        self.amp = a * (np.sin(omega * t + psi) - np.sin(psi)) / 2  # (T, 2, k); |.| <= |a|
        self._basis: dict[str, np.ndarray] = {}

    def displacement(self, name: str, pts: np.ndarray, t: int) -> np.ndarray:
        """(N, 2) displacement of the points at frame t, SR pixels."""
        if name not in self._basis:  # the spatial part is fixed; only amplitudes change
            arg = np.einsum("ckd,nd->nck", self.kvec, pts) + self.phase[None]
            self._basis[name] = np.sin(arg)  # (N, 2, k)
        return np.einsum("nck,ck->nc", self._basis[name], self.amp[t])


# -- structure generators: (points (N, 2) SR px, weights (N,)) inside the domain ------------


def _area(domain: tuple[float, float, float, float]) -> float:
    return (domain[1] - domain[0]) * (domain[3] - domain[2])


def _uniform_points(rng: np.random.Generator, domain, n: int) -> np.ndarray:
    y = rng.uniform(domain[0], domain[1], n)
    x = rng.uniform(domain[2], domain[3], n)
    return np.stack([y, x], -1)


def _filaments(rng: np.random.Generator, domain, density: float):
    """Microtubule-like persistent random walks with smoothly varying curvature."""
    n = max(1, round(density * _area(domain) / 9000.0))  # ~7 per 64x64 LR field
    lengths = rng.uniform(150, 900, n)  # SR pixels (4-22 um at 25 nm)
    steps = int(np.ceil(lengths.max() / _SAMPLE_STEP))
    # Curvature follows an AR(1) process: smooth bends, radius of curvature ~ 2-10 um.
    rho = 0.995
    kick = rng.standard_normal((n, steps)) * (1 / 120.0) * math.sqrt(1 - rho**2)
    curv = lfilter([1.0], [1.0, -rho], kick, axis=1)
    curv += rng.standard_normal((n, 1)) * (1 / 400.0)
    theta = rng.uniform(0, 2 * np.pi, (n, 1)) + np.cumsum(curv * _SAMPLE_STEP, axis=1)
    start = _uniform_points(rng, domain, n)
    # Start mid-filament so filaments cross the domain in both directions.
    dy = np.cumsum(np.sin(theta), axis=1) * _SAMPLE_STEP
    dx = np.cumsum(np.cos(theta), axis=1) * _SAMPLE_STEP
    half = (lengths / _SAMPLE_STEP / 2).astype(int)
    dy -= dy[np.arange(n), half][:, None]
    dx -= dx[np.arange(n), half][:, None]
    pts = np.stack([start[:, :1] + dy, start[:, 1:] + dx], -1)  # (n, steps, 2)
    keep = np.arange(steps)[None] * _SAMPLE_STEP < lengths[:, None]
    brightness = rng.uniform(0.6, 1.3, (n, 1)) * np.ones((1, steps))
    return pts[keep], brightness[keep] * _SAMPLE_STEP


def _er(rng: np.random.Generator, domain, density: float):
    """ER-like tubule network: Voronoi edges (three-way junctions), some removed, bowed."""
    spacing = 56.0 / math.sqrt(max(density, 1e-3))  # SR pixels between polygon centres
    n_seeds = max(4, round(_area(domain) / spacing**2))
    grow = 2 * spacing  # seeds beyond the domain close the border polygons
    big = (domain[0] - grow, domain[1] + grow, domain[2] - grow, domain[3] + grow)
    seeds = _uniform_points(rng, big, round(n_seeds * _area(big) / _area(domain)))
    vor = Voronoi(seeds)
    ridges = np.array([r for r in vor.ridge_vertices if -1 not in r])
    a, b = vor.vertices[ridges[:, 0]], vor.vertices[ridges[:, 1]]
    inside = _inside(a, domain, spacing) | _inside(b, domain, spacing)
    a, b = a[inside], b[inside]
    keep = rng.random(len(a)) > 0.2  # open polygons, as in peripheral ER
    a, b = a[keep], b[keep]
    seg = b - a
    length = np.hypot(seg[:, 0], seg[:, 1])
    counts = np.maximum(2, np.ceil(length / _SAMPLE_STEP).astype(int))
    owner = np.repeat(np.arange(len(a)), counts)
    s = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) / np.repeat(
        counts - 1, counts
    )
    normal = np.stack([seg[:, 1], -seg[:, 0]], -1) / np.maximum(length, 1e-9)[:, None]
    bow = rng.normal(0, 0.08, len(a)) * length
    off = (bow[owner] * np.sin(np.pi * s))[:, None] * normal[owner]
    pts = a[owner] + s[:, None] * seg[owner] + off
    brightness = rng.uniform(0.6, 1.0, len(a))[owner]
    step = (length / np.maximum(counts - 1, 1))[owner]
    return pts, brightness * step


def _inside(p: np.ndarray, domain, pad: float) -> np.ndarray:
    return (
        (p[:, 0] > domain[0] - pad)
        & (p[:, 0] < domain[1] + pad)
        & (p[:, 1] > domain[2] - pad)
        & (p[:, 1] < domain[3] + pad)
    )


def _mitochondria(rng: np.random.Generator, domain, density: float):
    """Mitochondria-like filled capsules, gently curved, with cristae-like banding."""
    n = max(1, round(density * _area(domain) / 11000.0))  # ~6 per 64x64 LR field
    length = rng.uniform(24, 160, n)  # SR pixels between cap centres (0.6-4 um)
    radius = rng.uniform(4.5, 8.0, n)  # SR pixels (diameter 225-400 nm)
    curv = rng.normal(0, 1 / 200.0, n)
    curv = np.where(np.abs(curv) < 1e-4, 1e-4, curv)
    theta0 = rng.uniform(0, 2 * np.pi, n)
    centre = _uniform_points(rng, domain, n)
    umax = (length / 2 + radius).max()
    rmax = radius.max()
    u = np.arange(-umax, umax + 1e-9, _SAMPLE_STEP)
    v = np.arange(-rmax, rmax + 1e-9, _SAMPLE_STEP)
    uu, vv = (g.ravel() for g in np.meshgrid(u, v, indexing="ij"))
    # Capsule mask: within radius of the centre segment [-L/2, L/2].
    du = np.clip(np.abs(uu)[None] - length[:, None] / 2, 0, None)
    inside = du**2 + vv[None] ** 2 <= radius[:, None] ** 2  # (n, G)
    obj, g = np.nonzero(inside)
    uo, vo = uu[g], vv[g]
    # Arc centreline: angle theta0 + k u, position from the closed-form integral.
    k, t0 = curv[obj], theta0[obj]
    ang = t0 + k * uo
    cy = (np.cos(t0) - np.cos(ang)) / k
    cx = (np.sin(ang) - np.sin(t0)) / k
    y = centre[obj, 0] + cy + vo * np.cos(ang)
    x = centre[obj, 1] + cx - vo * np.sin(ang)
    period = rng.uniform(8, 14, n)[obj]
    phase = rng.uniform(0, 2 * np.pi, n)[obj]
    band = 1.0 + 0.25 * np.sin(2 * np.pi * uo / period + phase)
    brightness = rng.uniform(0.6, 1.0, n)[obj] * band * 0.25
    return np.stack([y, x], -1), brightness * _SAMPLE_STEP**2


def _vesicles(rng: np.random.Generator, domain, density: float):
    """Vesicle-like puncta and small rings (endosomes, lysosomes): 60-400 nm across."""
    n = max(1, round(density * _area(domain) / 2500.0))  # ~25 per 64x64 LR field
    centre = _uniform_points(rng, domain, n)
    radius = rng.uniform(1.2, 8.0, n)  # SR pixels
    hollow = rng.random(n) < 0.4  # larger ones may show a lumen: a ring
    v = np.arange(-8.0, 8.0 + 1e-9, _SAMPLE_STEP)
    vy, vx = (g.ravel() for g in np.meshgrid(v, v, indexing="ij"))
    r = np.hypot(vy, vx)[None]  # (1, G)
    inside = r <= radius[:, None]
    ring = hollow[:, None] & (radius[:, None] > 4.0) & (r < radius[:, None] - 2.0)
    obj, g = np.nonzero(inside & ~ring)
    pts = centre[obj] + np.stack([vy[g], vx[g]], -1)
    # Brightness per object is spread over its area: small puncta are as bright as tubules.
    area = np.bincount(obj, minlength=n).astype(float)
    brightness = rng.uniform(0.5, 1.2, n) * 6.0 / np.sqrt(np.maximum(area, 1.0))
    return pts, brightness[obj] * _SAMPLE_STEP**2


_GENERATORS = {
    "filaments": _filaments,
    "er": _er,
    "mitochondria": _mitochondria,
    "vesicles": _vesicles,
}


# The BROAD distribution of imaging conditions: (low, high) per field, drawn uniformly, or
# log-uniformly for the fields in _LOG_UNIFORM. PSF width spans 1x to ~2.5x sampling.
BROAD_RANGES: dict[str, tuple[float, float]] = {
    "psf_sigma_lr": (0.8, 2.6),
    "photons": (15.0, 2000.0),
    "background": (2.0, 1500.0),
    "offset": (0.0, 400.0),
    "read_noise": (0.5, 3.0),
    "drift": (0.0, 0.4),
    "bleach_rate": (0.0, 0.02),
    "density": (0.5, 2.0),
    "deform": (0.0, 0.5),
    "bg_variation": (0.1, 0.9),
    "defocus": (0.0, 1.5),  # drawn for 60% of the fields, 0 for the rest
    "defocus_sigma_lr": (2.5, 8.0),
}
_LOG_UNIFORM = {"photons", "background", "density"}
BROAD_DEFOCUS_FRACTION = 0.6


def sample_condition(rng: np.random.Generator) -> SimCondition:
    """One imaging condition from the BROAD distribution the default networks are trained on.

    Why: a base network trained on one condition paints its structures onto everything else.
    Every structure class appears in random mixes; the other fields follow BROAD_RANGES.
    """
    kinds = [s for s in STRUCTURES if rng.random() < 0.5] or [str(rng.choice(STRUCTURES))]
    values = {}
    for name, (low, high) in BROAD_RANGES.items():
        if name in _LOG_UNIFORM:
            values[name] = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        else:
            values[name] = float(rng.uniform(low, high))
    if rng.random() >= BROAD_DEFOCUS_FRACTION:
        values["defocus"] = 0.0
    return SimCondition(structure="+".join(kinds), **values)
