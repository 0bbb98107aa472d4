"""MP4 movies and PNG/TIFF previews of float frames."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from saft_core.io import read_stack
from saft_core.video import percentile_range, to_uint8, write_mp4, write_preview


def _read_mp4(path: Path) -> tuple[tuple[int, int], list[np.ndarray]]:
    """(width, height) and the decoded gray frames of an H.264/yuv420p movie."""
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="gray", bpp=1)
    meta = reader.__next__()
    assert meta["codec"] == "h264"
    assert meta["pix_fmt"].startswith("yuv420p")
    w, h = meta["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(h, w) for b in reader]
    return (w, h), frames


def test_to_uint8_and_percentile_range() -> None:
    x = np.linspace(0, 100, 1001, dtype=np.float32)
    lo, hi = percentile_range(x, (1, 99))
    assert lo == pytest.approx(1.0, abs=1e-3)
    assert hi == pytest.approx(99.0, abs=1e-3)
    u = to_uint8(np.array([[-5.0, 1.0, 50.0, 99.0, 500.0, np.nan]]), lo, hi)
    assert u.dtype == np.uint8
    assert u.tolist() == [[0, 0, 128, 255, 255, 0]]
    flat_lo, flat_hi = percentile_range(np.full((8, 8), 3.0))
    assert flat_hi > flat_lo
    assert to_uint8(np.full((8, 8), 3.0), flat_lo, flat_hi).max() == 0
    assert percentile_range(np.full((4, 4), np.nan)) == (0.0, 1.0)


def test_write_mp4_array_with_odd_size(tmp_path: Path) -> None:
    t = 5
    ramp = np.linspace(0, 1, 33 * 21, dtype=np.float32).reshape(21, 33)
    frames = np.stack([ramp * (k + 1) for k in range(t)])
    p = tmp_path / "sr.mp4"
    write_mp4(p, frames, fps=5, value_range=(0.0, float(frames.max())))
    assert [f.name for f in tmp_path.iterdir()] == ["sr.mp4"]
    size, decoded = _read_mp4(p)
    assert size == (34, 22)  # padded to even sides, not rescaled
    assert len(decoded) == t
    # The fixed range keeps later (brighter) frames brighter; H.264 is lossy, so be tolerant.
    means = [float(d[:21, :33].mean()) for d in decoded]
    assert means == sorted(means)
    assert means[-1] > 3 * means[0]
    expected_last = to_uint8(frames[-1], 0.0, float(frames.max())).astype(float)
    assert np.abs(decoded[-1][:21, :33] - expected_last).mean() < 4


def test_write_mp4_single_frame_from_generator(tmp_path: Path) -> None:
    def gen():
        yield np.random.default_rng(0).random((40, 48)).astype(np.float32)

    p = tmp_path / "one.mp4"
    write_mp4(p, gen())
    size, decoded = _read_mp4(p)
    assert size == (48, 40)
    assert len(decoded) == 1


def test_write_mp4_long_generator_is_streamed(tmp_path: Path) -> None:
    taken = []

    def gen():
        for k in range(30):
            taken.append(k)
            yield np.full((16, 16), float(k), np.float32)

    p = tmp_path / "long.mp4"
    write_mp4(p, gen(), fps=30)
    assert len(taken) == 30
    assert len(_read_mp4(p)[1]) == 30


def test_write_mp4_failure_leaves_nothing(tmp_path: Path) -> None:
    def gen():
        yield np.zeros((16, 16), np.float32)
        yield np.zeros((16, 18), np.float32)  # shape change mid-stream

    p = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="expected"):
        write_mp4(p, gen())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="at least one frame"):
        write_mp4(p, iter([]))
    assert list(tmp_path.iterdir()) == []


def test_write_preview_png_and_tiff(tmp_path: Path) -> None:
    frame = np.random.default_rng(2).random((30, 44)).astype(np.float32) * 1000
    frame[0, 0] = 1e6  # a hot pixel must not squash the rest of the preview to black
    png, tif = tmp_path / "it_00.png", tmp_path / "it_00.tif"
    write_preview(png, tif, frame, pixel_size=0.025)
    img = iio.imread(png)
    assert img.dtype == np.uint8
    assert img.shape == (30, 44)
    assert img[0, 0] == 255
    assert 100 < float(np.median(img)) < 160
    stack = read_stack(tif)
    np.testing.assert_array_equal(stack.data[0], frame)
    assert stack.pixel_size == pytest.approx(0.025, rel=1e-5)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["it_00.png", "it_00.tif"]
