"""Checks of an uploaded TIFF stack before it becomes a dataset (no torch; bounded memory).

Order matters: the header (``saft_core.io.inspect_tiff``: dimensions, dtype, declared data
size against the file size) is checked first, and the service limits on frames and pixels,
so an oversized or malformed file is rejected before a single pixel is decoded. Only then is
the pixel data read, one page at a time, to prove it decodes and holds no NaN or infinity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persistence.settings import Settings
from saft_core.errors import InvalidStackError

FIELD = "file"


@dataclass(frozen=True)
class StackFacts:
    shape: tuple[int, int, int]  # (T, H, W)
    dtype: str
    pixel_size: float | None


def validate_stack(path: Path, settings: Settings) -> StackFacts:
    """Header, limits, then a full streamed read; raises InvalidStackError(field='file')."""
    from saft_core.io import inspect_tiff

    try:
        info = inspect_tiff(path)
    except InvalidStackError as exc:
        raise InvalidStackError(exc.message, field=FIELD) from None
    shape = tuple(int(x) for x in info.shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise InvalidStackError(
            f"expected a 2D image or a 3D stack (T, H, W), got {len(shape)} dimensions "
            f"{list(shape)}",
            field=FIELD,
        )
    t, h, w = shape
    if t > settings.max_frames:
        raise InvalidStackError(
            f"the stack has {t} frames; this service accepts at most {settings.max_frames}",
            field=FIELD,
        )
    if h * w > settings.max_pixels_per_frame:
        raise InvalidStackError(
            f"frames of {h}x{w} pixels exceed the limit of {settings.max_pixels_per_frame} "
            "pixels per frame",
            field=FIELD,
        )
    check_pixels(path, shape, str(info.dtype))
    pixel_size = float(info.pixel_size) if info.pixel_size else None
    return StackFacts(shape=(t, h, w), dtype=str(info.dtype), pixel_size=pixel_size)


def check_pixels(path: Path, shape: tuple[int, int, int], dtype: str) -> None:
    """Decode every page (one frame in memory at a time); floats must be finite."""
    import tifffile

    t, h, w = shape
    is_float = np.dtype(dtype).kind in "fc"
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            pages = list(series.pages)
            per_page = h * w
            if len(pages) == t and all(p is not None for p in pages):
                frames = (p.asarray() for p in pages)  # type: ignore[union-attr]
            else:
                # One page holding several frames (or a contiguous ImageJ file): fall back to
                # a memory map when possible, so frames are still visited one at a time.
                arr = series.asarray(out="memmap") if series.dataoffset else series.asarray()
                arr = np.asarray(arr).reshape(-1, per_page)
                frames = (arr[i] for i in range(arr.shape[0]))
            for i, frame in enumerate(frames):
                if is_float and not np.isfinite(frame).all():
                    raise InvalidStackError(
                        f"frame {i} contains NaN or infinite values", field=FIELD
                    )
    except InvalidStackError:
        raise
    except Exception as exc:  # tifffile raises many types for a corrupt file
        raise InvalidStackError(
            f"the TIFF pixel data cannot be read ({type(exc).__name__})", field=FIELD
        ) from None
