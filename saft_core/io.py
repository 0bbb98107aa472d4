"""TIFF stack I/O: read LR/edge/SMLM stacks, write SR stacks, all as float32 ``(T, H, W)``.

Readers reject unusable files with ``InvalidStackError`` (one line, naming the request field),
so the API and CLI can report them without a traceback. Writers are atomic: the file appears
under its final name only when it is complete, so a crashed run never leaves a half-written
stack that looks valid.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from saft_core.atomic import atomic_path, temp_name
from saft_core.errors import InvalidStackError, ShapeMismatchError

log = logging.getLogger(__name__)

MIN_FRAME_SIDE = 16  # px; smaller frames cannot hold a training tile or a SRRF ring
_NATIVE_DTYPES = {"uint8", "uint16", "float32"}
_CONVERTED_DTYPES = {"int8", "int16", "int32", "int64", "uint32", "uint64", "float16", "float64"}
# Unit name -> micrometres per unit, for ImageJ 'unit' and OME PhysicalSizeXUnit values.
_UNIT_UM = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "å": 1e-4,
    "angstrom": 1e-4,
}


@dataclass
class Stack:
    """A stack in memory: ``data`` float32 (T, H, W) raw intensities, ``pixel_size`` um/px."""

    data: np.ndarray
    pixel_size: float | None
    dtype: str
    path: Path | None = None


@dataclass(frozen=True)
class StackInfo:
    """Header facts of a TIFF stack: ``shape`` (T, H, W), original ``dtype``, um per pixel."""

    shape: tuple[int, int, int]
    dtype: str
    pixel_size: float | None


def inspect_tiff(path: str | os.PathLike[str], *, field: str = "file") -> StackInfo:
    """Validate a TIFF from its header only (no pixel data is read), so uploads check cheaply."""
    with _open_tiff(path, field) as tif:
        info, _ = _describe(tif, Path(path).name, field)
    return info


def read_stack(path: str | os.PathLike[str], *, field: str = "file") -> Stack:
    """Read a 2D image or (T, H, W) stack as float32 raw intensities, or raise InvalidStackError."""
    with _open_tiff(path, field) as tif:
        info, series = _describe(tif, Path(path).name, field)
        try:
            raw = series.asarray()
        except Exception as exc:  # corrupt strips, missing companion files, ...
            raise InvalidStackError(
                f"cannot read the pixel data of {Path(path).name}: {_first_line(exc)}", field=field
            ) from exc
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, caught below
        data = np.ascontiguousarray(raw.reshape(info.shape), dtype=np.float32)
    if not np.isfinite(data).all():
        raise InvalidStackError(
            f"{Path(path).name} contains NaN or infinite values (or values too large for float32)",
            field=field,
        )
    return Stack(data=data, pixel_size=info.pixel_size, dtype=info.dtype, path=Path(path))


def check_same_shape(
    a: np.ndarray | StackInfo | tuple[int, ...],
    b: np.ndarray | StackInfo | tuple[int, ...],
    what: str = "edge map",
    *,
    field: str = "edge",
) -> None:
    """Raise ShapeMismatchError if ``b`` (the ``what``) does not line up with LR stack ``a``."""
    sa, sb = _stack_shape(a), _stack_shape(b)
    if sa != sb:
        raise ShapeMismatchError(
            f"{what} shape {sb} does not match LR stack shape {sa}", field=field
        )


def write_stack(
    path: str | os.PathLike[str], data: np.ndarray, pixel_size: float | None = None
) -> None:
    """Write (T, H, W) or (H, W) data as a float32 ImageJ TIFF (axes TYX, um), atomically."""
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"write_stack expects (T, H, W) or (H, W) data, got shape {arr.shape}")
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns when ImageJ files exceed 4 GB
        tifffile.imwrite(tmp, np.ascontiguousarray(arr), **_imagej_kwargs(pixel_size))


class StackWriter:
    """Stream ``n_frames`` float32 frames of shape (H, W) into an ImageJ TIFF, atomically.

    The file layout (header, IFDs, contiguous pixel area) is written up front from the declared
    shape, then each frame is written at its offset, so memory stays one frame whatever T is.
    The temporary file is renamed to ``path`` only if exactly ``n_frames`` frames were written
    and no exception escaped the ``with`` block; otherwise it is removed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_frames: int,
        shape: tuple[int, int],
        pixel_size: float | None = None,
    ) -> None:
        if n_frames < 1:
            raise ValueError(f"n_frames must be at least 1, got {n_frames}")
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (H, W) with positive sides, got {shape}")
        self.path = Path(path)
        self.n_frames = int(n_frames)
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size = pixel_size
        self.written = 0
        self._tmp: Path | None = None
        self._fh: Any = None
        self._offset = 0
        self._frame_bytes = self.shape[0] * self.shape[1] * 4

    def __enter__(self) -> StackWriter:
        self._tmp = temp_name(self.path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # > 4 GB ImageJ files keep one IFD only
                offset, _ = tifffile.imwrite(
                    self._tmp,
                    shape=(self.n_frames, *self.shape),
                    dtype="<f4",
                    returnoffset=True,
                    **_imagej_kwargs(self.pixel_size),
                )
            self._offset = int(offset)
            self._fh = open(self._tmp, "r+b")  # noqa: SIM115 - closed in __exit__
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W) frame; raises ValueError on a wrong shape or too many frames."""
        if self._fh is None:
            raise RuntimeError("StackWriter.write called outside its 'with' block")
        arr = np.asarray(frame)
        if arr.shape != self.shape:
            raise ValueError(f"frame shape {arr.shape} does not match declared shape {self.shape}")
        if self.written >= self.n_frames:
            raise ValueError(f"more frames written than the {self.n_frames} declared")
        self._fh.seek(self._offset + self.written * self._frame_bytes)
        self._fh.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())
        self.written += 1

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self._discard()
            return
        if self.written != self.n_frames:
            self._discard()
            raise ValueError(
                f"only {self.written} of {self.n_frames} declared frames were written to "
                f"{self.path.name}; the file was not created"
            )
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._tmp = None


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _open_tiff(path: str | os.PathLike[str], field: str) -> Iterator[tifffile.TiffFile]:
    """TiffFile of ``path``; any failure to parse it becomes a one-line InvalidStackError."""
    name = Path(path).name
    try:
        if os.path.getsize(path) == 0:
            raise InvalidStackError(f"{name} is empty", field=field)
        tif = tifffile.TiffFile(path)
    except InvalidStackError:
        raise
    except FileNotFoundError as exc:
        raise InvalidStackError(f"{name} does not exist", field=field) from exc
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise InvalidStackError(
            f"{name} is not a readable TIFF file: {_first_line(exc)}", field=field
        ) from exc
    try:
        yield tif
    finally:
        tif.close()


def _describe(tif: tifffile.TiffFile, name: str, field: str) -> tuple[StackInfo, Any]:
    """(T, H, W), dtype and pixel size of the file's single image series, from metadata only."""
    try:
        series_list = tif.series
    except Exception as exc:
        raise InvalidStackError(
            f"{name} is not a readable TIFF file: {_first_line(exc)}", field=field
        ) from exc
    if not series_list:
        raise InvalidStackError(f"{name} contains no image", field=field)
    if len(series_list) > 1:
        raise InvalidStackError(
            f"{name} holds {len(series_list)} image series of different shapes; "
            "save one (T, H, W) stack per file",
            field=field,
        )
    series = series_list[0]
    shape = _frames_shape(series, name, field)
    dtype = np.dtype(series.dtype)
    if dtype.name not in _NATIVE_DTYPES | _CONVERTED_DTYPES:
        raise InvalidStackError(
            f"{name} has pixel type {dtype.name}; use uint8, uint16 or float32 "
            "(int16, uint32 and float64 are converted)",
            field=field,
        )
    return StackInfo(shape=shape, dtype=dtype.name, pixel_size=_pixel_size(tif)), series


def _frames_shape(series: Any, name: str, field: str) -> tuple[int, int, int]:
    """Map the series axes to (T, H, W): squeeze singletons, allow one frame-like axis."""
    # ``axes``/``shape`` are tifffile's stable properties (``get_axes``/``get_shape`` are gone
    # from newer releases); whether they are squeezed does not matter, as length-1 axes other
    # than Y and X are ignored below and tifffile never squeezes Y or X.
    axes = str(series.axes)
    shape = tuple(int(n) for n in series.shape)
    if "Y" not in axes or "X" not in axes:
        raise InvalidStackError(f"{name} is not a 2D image stack (axes {axes})", field=field)
    if 0 in shape:
        raise InvalidStackError(f"{name} is empty (shape {shape})", field=field)
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    # A list, not a dict: shaped files may repeat an axis letter ('QQYX').
    extra = [(ax, n) for ax, n in zip(axes, shape, strict=True) if ax not in "YX" and n > 1]
    samples = [n for ax, n in extra if ax == "S"]
    if samples:
        raise InvalidStackError(
            f"{name} is an RGB/multi-sample image ({samples[0]} samples per pixel); "
            "save a single-channel grayscale stack",
            field=field,
        )
    if len(extra) > 1:
        dims = ", ".join(f"{_AXIS_NAMES.get(ax, ax)}={n}" for ax, n in extra)
        raise InvalidStackError(
            f"{name} has more than one stack dimension ({dims}); SAFT needs a single "
            "time series (T, H, W): split channels / z-planes first",
            field=field,
        )
    if extra and extra[0][0] == "C":
        raise InvalidStackError(
            f"{name} has {extra[0][1]} channels; SAFT needs one channel: split channels first",
            field=field,
        )
    n_frames = extra[0][1] if extra else 1
    if height < MIN_FRAME_SIDE or width < MIN_FRAME_SIDE:
        raise InvalidStackError(
            f"{name} frames are {height}x{width} px; at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} "
            "are needed",
            field=field,
        )
    return (n_frames, height, width)


_AXIS_NAMES = {"T": "T", "Z": "Z", "C": "C", "I": "frames", "Q": "pages"}


def _pixel_size(tif: tifffile.TiffFile) -> float | None:
    """Micrometres per pixel from OME PhysicalSizeX or ImageJ resolution+unit, else None."""
    try:
        if tif.is_ome and tif.ome_metadata:
            return _valid_size(_ome_pixel_size(tif.ome_metadata))
        page = tif.pages.first
        res = page.tags.get("XResolution")
        if res is None:
            return None
        num, den = res.value
        if not num or not den:
            return None
        px_per_unit = num / den
        if tif.is_imagej:
            unit = str((tif.imagej_metadata or {}).get("unit", "")).strip().lower()
            scale = _UNIT_UM.get(unit)
        else:
            # Only centimetre units are physical; inch-based dpi is usually a display default.
            unit_tag = page.tags.get("ResolutionUnit")
            scale = 1e4 if unit_tag is not None and int(unit_tag.value) == 3 else None
        if scale is None:
            return None
        return _valid_size(scale / px_per_unit)
    except Exception:  # metadata is optional: a broken tag must not reject the pixels
        log.debug("ignoring unreadable pixel-size metadata", exc_info=True)
        return None


def _ome_pixel_size(xml: str) -> float | None:
    root = ET.fromstring(xml)
    for elem in root.iter():
        if elem.tag.rsplit("}", 1)[-1] == "Pixels":
            value = elem.get("PhysicalSizeX")
            if value is None:
                return None
            unit = elem.get("PhysicalSizeXUnit", "µm").strip().lower()
            scale = _UNIT_UM.get(unit)
            return float(value) * scale if scale is not None else None
    return None


def _valid_size(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def _stack_shape(x: np.ndarray | StackInfo | tuple[int, ...]) -> tuple[int, ...]:
    shape = x.shape if isinstance(x, (np.ndarray, StackInfo)) else tuple(x)
    shape = tuple(int(n) for n in shape)
    return (1, *shape) if len(shape) == 2 else shape


def _imagej_kwargs(pixel_size: float | None) -> dict[str, Any]:
    """tifffile arguments for an ImageJ hyperstack TYX, calibrated in um when known."""
    metadata: dict[str, Any] = {"axes": "TYX"}
    kwargs: dict[str, Any] = {"imagej": True, "metadata": metadata}
    if pixel_size is not None:
        if not math.isfinite(pixel_size) or pixel_size <= 0:
            raise ValueError(f"pixel_size must be a positive number of um, got {pixel_size!r}")
        metadata["unit"] = "um"
        kwargs["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
    return kwargs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
