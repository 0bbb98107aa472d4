"""Checks of an uploaded TIFF stack before it becomes a dataset (no torch; bounded memory).

Order matters: the header (``saft_core.io.inspect_tiff``: dimensions, dtype, declared data
size against the file size) is checked first, and the service limits on frames and pixels,
so an oversized or malformed file is rejected before a single pixel is decoded. Only then is
the pixel data read, one page at a time, to prove it decodes and holds no NaN or infinity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from persistence.settings import Settings
from saft_core.errors import InvalidStackError

FIELD = "file"


@dataclass(frozen=True)
class StackFacts:
    shape: tuple[int, int, int]  # (T, H, W)
    dtype: str
    pixel_size: float | None


def validate_stack(path: Path, settings: Settings, filename: str | None = None) -> StackFacts:
    """Header, limits, then a full streamed read; raises InvalidStackError(field='file').

    Messages name ``filename`` (what the client sent), not the temp file.
    """
    from saft_core.io import inspect_tiff

    try:
        info = inspect_tiff(path, field=FIELD)
        shape = tuple(int(x) for x in info.shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise InvalidStackError(
                f"expected a 2D image or a 3D stack (T, H, W), got shape {list(shape)}",
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
                f"frames of {h}x{w} pixels exceed the limit of "
                f"{settings.max_pixels_per_frame} pixels per frame",
                field=FIELD,
            )
        check_pixels(path, (t, h, w), str(info.dtype))
    except InvalidStackError as exc:
        message = exc.message.replace(path.name, filename or "the file")
        raise InvalidStackError(message, field=FIELD) from None
    pixel_size = float(info.pixel_size) if info.pixel_size else None
    return StackFacts(shape=(t, h, w), dtype=str(info.dtype), pixel_size=pixel_size)


def check_pixels(path: Path, shape: tuple[int, int, int], dtype: str) -> None:
    """Decode every page, one frame in memory at a time; floats must be finite in float32.

    Each page's declared strips/tiles must lie inside the file (a truncated upload is caught
    from the header, before its pixels are decoded).
    """
    import tifffile

    t, h, w = shape
    kind = np.dtype(dtype).kind
    f32_max = float(np.finfo(np.float32).max)
    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            pages = list(series.pages)
            if len(pages) != t or any(p is None for p in pages):
                frames = _frames_of_contiguous(series, t, h, w, size, len(pages))
            else:
                for i, page in enumerate(pages):
                    end = max(
                        (
                            o + n
                            for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)
                        ),
                        default=0,
                    )
                    if end > size:
                        raise InvalidStackError(
                            f"the file is truncated: frame {i} needs {end} bytes, the file "
                            f"has {size}",
                            field=FIELD,
                        )
                frames = (p.asarray() for p in pages)  # type: ignore[union-attr]
            for i, frame in enumerate(frames):
                if kind == "f" and not _finite_f32(frame, f32_max):
                    raise InvalidStackError(
                        f"frame {i} contains NaN or infinite values (or values too large for "
                        "float32)",
                        field=FIELD,
                    )
    except InvalidStackError:
        raise
    except Exception as exc:  # tifffile raises many types for a corrupt file
        raise InvalidStackError(
            f"the TIFF pixel data cannot be read ({type(exc).__name__})", field=FIELD
        ) from None


def _frames_of_contiguous(
    series: Any, t: int, h: int, w: int, size: int, n_pages: int
) -> Iterator[np.ndarray]:
    """Frames of a series stored in fewer pages than frames (e.g. ImageJ files > 4 GB)."""
    offset = series.dataoffset
    if offset is None:  # not one contiguous block: pages are missing
        raise InvalidStackError(
            f"the header declares {t} frames but only {n_pages} pages are readable "
            "(truncated file?)",
            field=FIELD,
        )
    end = int(offset) + t * h * w * np.dtype(series.dtype).itemsize
    if end > size:
        raise InvalidStackError(
            f"the file is truncated: its {t} frames need {end} bytes, the file has {size}",
            field=FIELD,
        )
    arr = np.asarray(series.asarray(out="memmap")).reshape(t, h, w)
    return (arr[i] for i in range(t))


def _finite_f32(frame: np.ndarray, f32_max: float) -> bool:
    if not np.isfinite(frame).all():
        return False
    return frame.dtype.itemsize <= 4 or float(np.abs(frame).max(initial=0)) <= f32_max
