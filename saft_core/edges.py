"""Edge maps for the SFSRM second input channel: classic SRRF radiality per frame (nanopyx).

SFSRM was trained on edge maps made with the NanoJ-SRRF ImageJ plugin (ring radius 1, 5 axes,
magnification 1) and converted to 8 bit. ``compute_edges`` reproduces them with nanopyx's
radiality (12 ring points) on gradients smoothed as NanoJ-SRRF's "gradient smoothing" option
does (see ``smoothed_for_gradients``): on the published example it correlates with the NanoJ
map at Pearson r = 0.94 (0.90 without the smoothing), and on simulated frames with a PSF sigma
of 1 to 2.5 LR px it stays at r >= 0.97 with a NanoJ-faithful reimplementation (0.5-0.86
without). The 8-bit rescale below matches the published map's histogram (see
``EDGE_BACKGROUND``). docs/edges.md has the measurements.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import threading
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
from scipy.ndimage import uniform_filter

from saft_core.errors import InvalidStackError

log = logging.getLogger(__name__)

RING_RADIUS = 1.0  # LR px, as for the published SFSRM edge maps
# NanoJ-SRRF's gradient smoothing sums the pixel differences over a 5 (along) x 3 (across)
# window: Gx(x, y) = sum_{|j|<=1} [I(x+1)+I(x+2)-I(x-1)-I(x-2)](y+j). Since [-1, 0, 1] * [1, 1, 1]
# = [-1, -1, 0, 1, 1], that is the central difference of the image box-filtered over 3x3 px.
GRADIENT_BOX = 3  # LR px
# The published map is at its background level on the outer 2 px of the frame (NanoJ's
# Catmull-Rom samples are zero within 1.5 px of the edge); nanopyx skips 1 + this many.
EDGE_BORDER = 1  # LR px
# The published 8-bit maps put zero radiality at 21 (their border and background level, and the
# intercept of a linear fit against nanopyx radiality) and the frame's maximum at 255, as
# ImageJ's min..max 8-bit conversion of a NanoJ-SRRF image does. Reproducing this keeps the
# network's second channel in the range it was trained on (histogram distance to the published
# map: Wasserstein 1.1 grey levels; without the offset: 19).
EDGE_BACKGROUND = 21.0
EDGE_MAX = 255.0

_import_lock = threading.Lock()


def import_nanopyx(module: str) -> ModuleType:
    """Import a nanopyx module without its console noise (OpenCL/CuPy/Dask banners, warnings).

    nanopyx prints on import; stdout/stderr are redirected while importing (once per module)
    and what it printed is logged at DEBUG level instead.
    """
    with _import_lock:
        import sys

        if module in sys.modules:
            return sys.modules[module]
        buf = io.StringIO()
        with (
            contextlib.redirect_stdout(buf),
            contextlib.redirect_stderr(buf),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
        if buf.getvalue().strip():
            log.debug("nanopyx import output: %s", buf.getvalue().strip())
        return mod


def _radiality_engine() -> object:
    """nanopyx's Radiality with its benchmark cache unread and its chatter off."""
    transform = import_nanopyx("nanopyx.core.transform._le_radiality")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transform.Radiality(clear_benchmarks=True, testing=False, verbose=False)


def smoothed_for_gradients(frame: np.ndarray) -> np.ndarray:
    """The (H, W) frame box-filtered over ``GRADIENT_BOX`` LR px, edges repeated like NanoJ's.

    Why: nanopyx takes central differences, and those of this image are NanoJ-SRRF's smoothed
    gradients. Without it each gradient is the difference of two noisy pixels, while the
    signal's gradient per pixel falls as 1/sigma^2 with the PSF width: on oversampled or
    high-background frames the radiality becomes noise that NanoJ's maps do not have.
    """
    return uniform_filter(np.asarray(frame, np.float32), GRADIENT_BOX, mode="nearest")


def radiality(frame: np.ndarray, engine: object | None = None) -> np.ndarray:
    """Intensity-weighted SRRF radiality of one (H, W) frame at magnification 1 (same H, W).

    Gradients come from ``smoothed_for_gradients(frame)``, the intensity weight from the frame
    itself, as in NanoJ-SRRF. Calls nanopyx's CPU (OpenMP, Cython) implementation directly
    rather than through its Liquid Engine ``run``: that path benchmarks backends, may pick
    OpenCL, prints, and writes timing files under ~/.liquid_engine on every call. The outer
    1 + ``EDGE_BORDER`` px are 0, as in the published map.
    """
    eng = engine if engine is not None else _radiality_engine()
    raw = np.ascontiguousarray(frame, dtype=np.float32)[None]
    smooth = np.ascontiguousarray(smoothed_for_gradients(frame))[None]
    kwargs = {
        "magnification": 1,
        "ringRadius": RING_RADIUS,
        "border": EDGE_BORDER,
        "radialityPositivityConstraint": True,
        "doIntensityWeighting": True,
    }
    # nanopyx takes gradients of its first image and weights by its second ("interpolated",
    # at magnification 1 the image itself).
    run = getattr(eng, "_run_threaded", None)
    if run is not None:
        out = run(smooth, raw, **kwargs)
    else:  # a future nanopyx without the private method: ask for the same CPU backend
        out = eng.run(smooth, raw, run_type="threaded", **kwargs)  # type: ignore[attr-defined]
    return np.asarray(out, dtype=np.float32)[0]


def rescale_edges(rad: np.ndarray) -> np.ndarray:
    """Radiality (>= 0) -> 8-bit range like the published maps: 0 -> 21, frame max -> 255."""
    r = np.clip(np.asarray(rad, dtype=np.float32), 0.0, None)
    peak = float(r.max()) if r.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        # No edges at all (flat or blank frame): all background, not a division by zero.
        return np.full(r.shape, EDGE_BACKGROUND, np.float32)
    scale = (EDGE_MAX - EDGE_BACKGROUND) / peak
    # Clip: float rounding may put the peak a hair above 255.
    return np.minimum(EDGE_BACKGROUND + r * scale, EDGE_MAX).astype(np.float32)


def compute_edges(
    lr: np.ndarray, *, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """SRRF edge map of every LR frame, float32 in 0..255, same shape as ``lr`` (T,H,W or H,W).

    Each frame is processed on its own (SFSRM is single-frame: no temporal correlation), with
    ``progress(done, total)`` called after each frame. Raises InvalidStackError (field "lr") for
    non-finite values or frames too small for a radiality ring.
    """
    arr = np.asarray(lr)
    if arr.ndim not in (2, 3):
        raise InvalidStackError(
            f"edge maps need a (T, H, W) stack or an (H, W) frame, got shape {arr.shape}",
            field="lr",
        )
    stack = arr[None] if arr.ndim == 2 else arr
    if stack.shape[0] < 1 or min(stack.shape[1:]) < 3:
        raise InvalidStackError(
            f"frames of shape {stack.shape[1:]} are too small for SRRF edges", field="lr"
        )
    engine = _radiality_engine()
    out = np.empty(stack.shape, np.float32)
    total = stack.shape[0]
    for t in range(total):
        frame = np.asarray(stack[t], dtype=np.float32)
        if not np.isfinite(frame).all():
            raise InvalidStackError(
                f"LR frame {t} has NaN or infinite values; cannot compute its edge map",
                field="lr",
            )
        out[t] = rescale_edges(radiality(frame, engine))
        if progress is not None:
            progress(t + 1, total)
    return out if arr.ndim == 3 else out[0]
