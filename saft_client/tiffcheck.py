"""Is a TIFF file complete? Walks the IFD chain with ``struct`` only (no numpy/tifffile).

Acquisition software writes stacks slowly and may pause; a file whose size has not changed
for a while can still be cut short. Complete means: a valid header, an IFD chain that ends
with a zero offset and lies inside the file, and every tag value and every strip or tile of
every page inside the file. Classic TIFF and BigTIFF, either byte order.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

MAX_PAGES = 1_000_000  # more pages than any stack: a loop or garbage
MAX_ENTRIES = 4096  # tags per IFD
_OFFSET_TAGS = (273, 324)  # StripOffsets, TileOffsets
_COUNT_TAGS = (279, 325)  # StripByteCounts, TileByteCounts
_TYPES = {3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}  # SHORT, LONG, IFD, LONG8, IFD8
# Bytes per value of every TIFF field type (unknown types are skipped, as readers do).
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_TYPE_BYTES.update({13: 4, 16: 8, 17: 8, 18: 8})


class _Incomplete(Exception):
    pass


def is_complete_tiff(path: str | Path) -> bool:
    """True if the file is a whole TIFF (every page and its pixel data are present)."""
    try:
        with open(path, "rb") as fh:
            return _walk(fh, os.fstat(fh.fileno()).st_size) > 0
    except (OSError, struct.error, _Incomplete):
        return False


def _read(fh: BinaryIO, offset: int, n: int, size: int) -> bytes:
    if offset < 0 or n < 0 or offset + n > size:
        raise _Incomplete
    fh.seek(offset)
    data = fh.read(n)
    if len(data) != n:
        raise _Incomplete
    return data


def _walk(fh: BinaryIO, size: int) -> int:
    """Number of pages; raises ``_Incomplete`` for a cut or malformed file."""
    head = _read(fh, 0, 8, size)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        raise _Incomplete
    (magic,) = struct.unpack(order + "H", head[2:4])
    if magic == 42:
        big = False
        (offset,) = struct.unpack(order + "I", head[4:8])
    elif magic == 43:
        big = True
        (offset,) = struct.unpack(order + "Q", _read(fh, 8, 8, size))
    else:
        raise _Incomplete
    count_fmt, ptr_fmt, entry_size = ("Q", "Q", 20) if big else ("H", "I", 12)
    count_size, ptr_size = struct.calcsize(count_fmt), struct.calcsize(ptr_fmt)
    seen: set[int] = set()
    pages = 0
    while offset:
        if offset in seen or pages >= MAX_PAGES:
            raise _Incomplete
        seen.add(offset)
        (n,) = struct.unpack(order + count_fmt, _read(fh, offset, count_size, size))
        if n == 0 or n > MAX_ENTRIES:
            raise _Incomplete
        table = _read(fh, offset + count_size, n * entry_size + ptr_size, size)
        offsets: tuple[int, ...] | None = None
        counts: tuple[int, ...] | None = None
        for i in range(n):
            entry = table[i * entry_size : (i + 1) * entry_size]
            tag, typ = struct.unpack(order + "HH", entry[:4])
            (count,) = struct.unpack(order + ptr_fmt, entry[4 : 4 + ptr_size])
            nbytes = _TYPE_BYTES.get(typ, 0) * count
            if nbytes > ptr_size:  # the value lives elsewhere: it must be in the file too
                (pointer,) = struct.unpack(order + ptr_fmt, entry[4 + ptr_size :])
                if pointer + nbytes > size:
                    raise _Incomplete
            if tag in _OFFSET_TAGS or tag in _COUNT_TAGS:
                values = _values(fh, order, typ, count, entry[4 + ptr_size :], big, size)
                if tag in _OFFSET_TAGS:
                    offsets = values
                else:
                    counts = values
        if offsets is None or counts is None or len(offsets) != len(counts):
            raise _Incomplete
        if any(o + c > size for o, c in zip(offsets, counts, strict=True)):
            raise _Incomplete
        pages += 1
        (offset,) = struct.unpack(order + ptr_fmt, table[n * entry_size :])
    return pages


def _values(
    fh: BinaryIO, order: str, typ: int, count: int, field: bytes, big: bool, size: int
) -> tuple[int, ...]:
    """The integers of one tag, inline or at the offset its value field holds."""
    code = _TYPES.get(typ)
    if code is None or count <= 0 or count > size:
        raise _Incomplete
    fmt = f"{order}{count}{code}"
    nbytes = struct.calcsize(fmt)
    if nbytes <= len(field):
        return struct.unpack(fmt, field[:nbytes])
    (pointer,) = struct.unpack(order + ("Q" if big else "I"), field)
    return struct.unpack(fmt, _read(fh, pointer, nbytes, size))
