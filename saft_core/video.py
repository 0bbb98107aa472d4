"""8-bit renderings of float stacks: MP4 movies of reconstructions and PNG/TIFF previews.

Float SR frames have no natural display range, so frames are mapped to 0..255 between two
percentiles of the data (robust to a few hot pixels). A movie uses one range for all its frames,
taken from its first frames, so intensity changes over time stay visible and frames do not flicker.
All writers are atomic (temporary sibling file, then ``os.replace``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from saft_core.io import write_stack

log = logging.getLogger(__name__)

DEFAULT_PERCENTILES = (0.5, 99.7)
SAMPLE_FRAMES = 8  # frames buffered to choose a movie's display range before encoding starts


def percentile_range(
    frames_sample: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[float, float]:
    """(lo, hi) display range from percentiles of the finite values, with hi > lo guaranteed."""
    values = np.asarray(frames_sample, dtype=np.float32)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if not hi > lo:
        # A flat image: any range that contains it maps it to black without dividing by zero.
        hi = lo + 1.0
    return lo, hi


def to_uint8(frame: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Frame mapped linearly so lo -> 0 and hi -> 255, clipped; NaN becomes 0."""
    f = np.asarray(frame, dtype=np.float32)
    span = hi - lo if hi > lo else 1.0
    scaled = np.clip((f - lo) * (255.0 / span), 0.0, 255.0)
    return np.nan_to_num(np.rint(scaled), nan=0.0).astype(np.uint8)


def write_mp4(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = 10,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    value_range: tuple[float, float] | None = None,
) -> None:
    """Encode (H, W) float frames as an 8-bit H.264 MP4 (yuv420p), streaming and atomically.

    ``frames`` is a (T, H, W) array or any iterable of (H, W) frames (e.g. read page by page);
    only ``SAMPLE_FRAMES`` frames are held in memory at once. The display range is
    ``value_range`` if given, else ``percentiles`` of the first ``SAMPLE_FRAMES`` frames.
    Odd sizes are padded by one black row/column because yuv420p needs even sides.
    """
    import imageio_ffmpeg

    it = _iter_frames(frames) if isinstance(frames, np.ndarray) else iter(frames)
    sample = [np.asarray(f, dtype=np.float32) for f in itertools.islice(it, SAMPLE_FRAMES)]
    if not sample:
        raise ValueError("write_mp4 needs at least one frame")
    height, width = _frame_shape(sample[0])
    for k, f in enumerate(sample):
        _check_shape(f, (height, width), k)
    lo, hi = value_range if value_range is not None else percentile_range(np.stack(sample))
    pad_h, pad_w = height % 2, width % 2

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp.mp4")  # ffmpeg needs .mp4
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        (width + pad_w, height + pad_h),
        pix_fmt_in="gray",
        pix_fmt_out="yuv420p",
        fps=fps,
        codec="libx264",
        quality=8,  # crf 10: near-lossless for microscopy detail, still small
        macro_block_size=1,  # we pad to even sides ourselves; never let ffmpeg rescale
        ffmpeg_log_level="error",
    )
    try:
        writer.send(None)  # start ffmpeg
        n = 0
        for frame in itertools.chain(sample, it):
            _check_shape(frame, (height, width), n)
            img = to_uint8(frame, lo, hi)
            if pad_h or pad_w:
                img = np.pad(img, ((0, pad_h), (0, pad_w)))
            writer.send(np.ascontiguousarray(img))
            n += 1
        writer.close()  # flushes and waits for ffmpeg to finish the file
        os.replace(tmp, path)
        log.debug("wrote %s: %d frames %dx%d, range %.4g..%.4g", path, n, width, height, lo, hi)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_preview(
    png_path: str | os.PathLike[str],
    tif_path: str | os.PathLike[str],
    frame: np.ndarray,
    pixel_size: float | None = None,
) -> None:
    """Preview of one SR frame: 8-bit percentile-normalised PNG plus the float32 TIFF (um/px)."""
    import imageio.v3 as iio

    f = np.asarray(frame, dtype=np.float32)
    if f.ndim == 3 and f.shape[0] == 1:
        f = f[0]
    _frame_shape(f)
    img = to_uint8(f, *percentile_range(f))
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        iio.imwrite(tmp, img, extension=".png")
        os.replace(tmp, png_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    write_stack(tif_path, f, pixel_size=pixel_size)


def _check_shape(frame: np.ndarray, shape: tuple[int, int], index: int) -> None:
    if np.shape(frame) != shape:
        raise ValueError(f"frame {index} has shape {np.shape(frame)}, expected {shape}")


def _frame_shape(frame: np.ndarray) -> tuple[int, int]:
    shape = np.shape(frame)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"expected a 2D (H, W) frame, got shape {shape}")
    return int(shape[0]), int(shape[1])


def _iter_frames(stack: np.ndarray) -> Iterator[np.ndarray]:
    """Frames of a (T, H, W) array, or the (H, W) array itself as a single frame."""
    arr = np.asarray(stack)
    if arr.ndim == 2:
        yield arr
    else:
        yield from arr
