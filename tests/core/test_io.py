"""TIFF reading/validation and atomic writing of stacks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from saft_core.errors import InvalidStackError, ShapeMismatchError
from saft_core.io import (
    Stack,
    StackInfo,
    StackWriter,
    _frames_shape,
    check_same_shape,
    inspect_tiff,
    read_stack,
    write_stack,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sfsrm-microtubule"


def _ramp(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return (np.arange(np.prod(shape)) % 200).reshape(shape).astype(dtype)


def test_reads_real_2d_uint8_as_one_frame() -> None:
    stack = read_stack(EXAMPLE / "widefield.tif")
    assert isinstance(stack, Stack)
    assert stack.data.shape == (1, 320, 320)
    assert stack.data.dtype == np.float32
    assert stack.dtype == "uint8"
    raw = tifffile.imread(EXAMPLE / "widefield.tif")
    np.testing.assert_array_equal(stack.data[0], raw.astype(np.float32))
    assert inspect_tiff(EXAMPLE / "widefield.tif") == StackInfo((1, 320, 320), "uint8", None)


def test_reads_plain_multipage_tiff(tmp_path: Path) -> None:
    data = _ramp((4, 20, 24))
    p = tmp_path / "multi.tif"
    tifffile.imwrite(p, data, photometric="minisblack")  # shaped (tifffile) metadata
    q = tmp_path / "pages.tif"
    with tifffile.TiffWriter(q) as tw:  # truly independent pages, no shape metadata
        for frame in data:
            tw.write(frame, metadata=None)
    for path in (p, q):
        stack = read_stack(path)
        assert stack.data.shape == (4, 20, 24)
        np.testing.assert_array_equal(stack.data, data.astype(np.float32))
        assert inspect_tiff(path).shape == (4, 20, 24)


def test_imagej_hyperstack_squeezes_singleton_c_and_z(tmp_path: Path) -> None:
    data = _ramp((3, 1, 1, 18, 20), "float32")
    p = tmp_path / "hyper.tif"
    tifffile.imwrite(
        p,
        data,
        imagej=True,
        metadata={"axes": "TZCYX", "unit": "um"},
        resolution=(1 / 0.1, 1 / 0.1),
    )
    stack = read_stack(p)
    assert stack.data.shape == (3, 18, 20)
    assert stack.pixel_size == pytest.approx(0.1, rel=1e-5)
    assert inspect_tiff(p) == StackInfo((3, 18, 20), "float32", pytest.approx(0.1, rel=1e-5))


def test_imagej_z_only_stack_is_read_as_frames(tmp_path: Path) -> None:
    p = tmp_path / "z.tif"
    tifffile.imwrite(p, _ramp((5, 16, 16)), imagej=True, metadata={"axes": "ZYX"})
    assert read_stack(p).data.shape == (5, 16, 16)


def test_reads_without_series_get_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Newer tifffile has no TiffPageSeries.get_axes/get_shape: uploads must still be checked."""
    hyper = tmp_path / "hyper.tif"
    tifffile.imwrite(hyper, _ramp((3, 1, 1, 18, 20)), imagej=True, metadata={"axes": "TZCYX"})
    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, _ramp((3, 2, 1, 16, 16)), imagej=True, metadata={"axes": "TZCYX"})
    with monkeypatch.context() as m:
        # Both gone: header checks (upload validation) read no pixels, so tifffile needs neither.
        m.delattr(tifffile.TiffPageSeries, "get_axes")
        m.delattr(tifffile.TiffPageSeries, "get_shape")
        assert inspect_tiff(hyper).shape == (3, 18, 20)
        assert inspect_tiff(EXAMPLE / "widefield.tif").shape == (1, 320, 320)
        with pytest.raises(InvalidStackError, match="more than one stack dimension"):
            inspect_tiff(bad)
    # This tifffile's own asarray still calls get_shape, so only get_axes can go when reading.
    monkeypatch.delattr(tifffile.TiffPageSeries, "get_axes")
    assert read_stack(hyper).data.shape == (3, 18, 20)


@pytest.mark.parametrize(
    ("axes", "shape", "squeezed_axes", "squeezed_shape", "frames"),
    [
        ("TZCYX", (3, 1, 1, 18, 20), "TYX", (3, 18, 20), (3, 18, 20)),
        ("QYXS", (1, 16, 17, 1), "YX", (16, 17), (1, 16, 17)),
    ],
)
def test_frames_shape_same_for_squeezed_and_expanded_series(
    axes: str,
    shape: tuple[int, ...],
    squeezed_axes: str,
    squeezed_shape: tuple[int, ...],
    frames: tuple[int, int, int],
) -> None:
    """Whichever form a tifffile release reports as ``series.axes``, the (T, H, W) is the same."""
    for ax, sh in ((axes, shape), (squeezed_axes, squeezed_shape)):
        series = SimpleNamespace(axes=ax, shape=sh)  # no get_axes, as in newer tifffile
        assert _frames_shape(series, "x.tif", "lr") == frames


@pytest.mark.parametrize(
    ("shape", "axes", "message"),
    [
        ((3, 1, 2, 16, 16), "TZCYX", "more than one stack dimension"),
        ((3, 2, 1, 16, 16), "TZCYX", "more than one stack dimension"),
        ((1, 1, 2, 16, 16), "TZCYX", "channels"),
    ],
)
def test_imagej_real_extra_dimension_is_rejected(
    tmp_path: Path, shape: tuple[int, ...], axes: str, message: str
) -> None:
    p = tmp_path / "bad.tif"
    tifffile.imwrite(p, _ramp(shape), imagej=True, metadata={"axes": axes})
    with pytest.raises(InvalidStackError, match=message) as err:
        read_stack(p, field="lr")
    assert err.value.field == "lr"
    with pytest.raises(InvalidStackError, match=message):
        inspect_tiff(p)


def test_ome_tiff_pixel_size_from_physical_size_x(tmp_path: Path) -> None:
    p = tmp_path / "img.ome.tif"
    tifffile.imwrite(
        p,
        _ramp((2, 20, 20)),
        ome=True,
        metadata={"axes": "TYX", "PhysicalSizeX": 65.0, "PhysicalSizeXUnit": "nm"},
    )
    stack = read_stack(p)
    assert stack.data.shape == (2, 20, 20)
    assert stack.pixel_size == pytest.approx(0.065)
    assert inspect_tiff(p).pixel_size == pytest.approx(0.065)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "int16", "uint32", "float64"])
def test_accepted_dtypes_convert_to_float32(tmp_path: Path, dtype: str) -> None:
    data = _ramp((2, 16, 17), dtype)
    p = tmp_path / f"{dtype}.tif"
    tifffile.imwrite(p, data)
    stack = read_stack(p)
    assert stack.dtype == dtype
    assert stack.data.dtype == np.float32
    np.testing.assert_array_equal(stack.data, data.astype(np.float32))


@pytest.mark.parametrize("dtype", ["complex64", "bool"])
def test_complex_and_bool_are_rejected(tmp_path: Path, dtype: str) -> None:
    p = tmp_path / "x.tif"
    tifffile.imwrite(p, np.ones((16, 16), dtype=dtype))
    with pytest.raises(InvalidStackError, match="pixel type"):
        read_stack(p)
    with pytest.raises(InvalidStackError, match="pixel type"):
        inspect_tiff(p)


def test_rgb_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "rgb.tif"
    tifffile.imwrite(p, np.zeros((20, 20, 3), np.uint8), photometric="rgb")
    with pytest.raises(InvalidStackError, match="RGB"):
        read_stack(p)


def test_4d_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "4d.tif"
    tifffile.imwrite(p, _ramp((2, 3, 16, 16)), photometric="minisblack")
    with pytest.raises(InvalidStackError, match="more than one stack dimension"):
        inspect_tiff(p)


def test_non_finite_values_are_rejected(tmp_path: Path) -> None:
    data = np.ones((2, 16, 16), np.float32)
    data[1, 3, 4] = np.nan
    p = tmp_path / "nan.tif"
    tifffile.imwrite(p, data)
    with pytest.raises(InvalidStackError, match="NaN or infinite") as err:
        read_stack(p, field="edge")
    assert err.value.field == "edge"
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.full((16, 16), 1e300))  # overflows float32
    with pytest.raises(InvalidStackError, match="NaN or infinite"):
        read_stack(big)


def test_small_frames_are_rejected(tmp_path: Path) -> None:
    p = tmp_path / "small.tif"
    tifffile.imwrite(p, np.ones((40, 15), np.uint8))
    with pytest.raises(InvalidStackError, match="at least 16x16"):
        inspect_tiff(p)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a tiff file at all\n"])
def test_not_a_tiff_or_empty_is_rejected(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.tif"
    p.write_bytes(content)
    with pytest.raises(InvalidStackError) as err:
        read_stack(p, field="smlm")
    assert err.value.field == "smlm"
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidStackError):
        inspect_tiff(p)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidStackError, match="does not exist"):
        read_stack(tmp_path / "nope.tif")


def test_inspect_tiff_reads_no_pixel_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "s.tif"
    write_stack(p, _ramp((3, 20, 20), "float32"), pixel_size=0.16)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixel data was read")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", forbidden)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", forbidden)
    monkeypatch.setattr(tifffile.FileHandle, "read_array", forbidden)
    info = inspect_tiff(p)
    assert info == StackInfo((3, 20, 20), "float32", pytest.approx(0.16, rel=1e-5))


def test_check_same_shape() -> None:
    lr = np.zeros((3, 32, 32), np.float32)
    check_same_shape(lr, np.zeros((3, 32, 32)))
    check_same_shape(np.zeros((32, 32)), StackInfo((1, 32, 32), "uint8", None))
    with pytest.raises(ShapeMismatchError, match=r"edge map shape \(2, 32, 32\)") as err:
        check_same_shape(lr, np.zeros((2, 32, 32)))
    assert err.value.field == "edge"
    with pytest.raises(ShapeMismatchError, match="SMLM image") as err:
        check_same_shape((1, 128, 128), (1, 120, 128), "SMLM image", field="smlm")
    assert err.value.field == "smlm"


def test_write_stack_roundtrip_imagej_metadata(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((3, 20, 30)).astype(np.float64)
    p = tmp_path / "out.tif"
    write_stack(p, data, pixel_size=0.025)
    with tifffile.TiffFile(p) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "TYX"
        assert tif.imagej_metadata["unit"] == "um"
        assert tif.series[0].dtype == np.float32
    stack = read_stack(p)
    np.testing.assert_allclose(stack.data, data.astype(np.float32))
    assert stack.pixel_size == pytest.approx(0.025, rel=1e-5)
    write_stack(p, data[0])  # 2D input, overwrite, no calibration
    back = read_stack(p)
    assert back.data.shape == (1, 20, 30)
    assert back.pixel_size is None
    assert [f.name for f in tmp_path.iterdir()] == ["out.tif"]


def test_write_stack_failure_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "out.tif"
    write_stack(p, np.ones((16, 16)))
    real = tifffile.imwrite

    def failing(path: object, *args: object, **kwargs: object) -> None:
        real(path, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", failing)
    with pytest.raises(OSError, match="disk full"):
        write_stack(p, np.zeros((16, 16)))
    assert [f.name for f in tmp_path.iterdir()] == ["out.tif"]
    assert read_stack(p).data.max() == 1.0


def test_stack_writer_streams_frames(tmp_path: Path) -> None:
    p = tmp_path / "sr.tif"
    frames = np.random.default_rng(1).random((5, 24, 40)).astype(np.float32)
    with StackWriter(p, 5, (24, 40), pixel_size=0.02) as writer:
        for frame in frames:
            assert not p.exists()  # appears only when complete
            writer.write(frame)
    assert [f.name for f in tmp_path.iterdir()] == ["sr.tif"]
    stack = read_stack(p)
    np.testing.assert_array_equal(stack.data, frames)
    assert stack.pixel_size == pytest.approx(0.02, rel=1e-5)
    with tifffile.TiffFile(p) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "TYX"
        assert len(tif.pages) == 5  # every page readable by page-wise readers
        np.testing.assert_array_equal(tif.pages[3].asarray(), frames[3])


def test_stack_writer_too_few_frames_creates_nothing(tmp_path: Path) -> None:
    p = tmp_path / "sr.tif"
    with pytest.raises(ValueError, match="only 2 of 3"), StackWriter(p, 3, (16, 16)) as w:
        w.write(np.zeros((16, 16)))
        w.write(np.zeros((16, 16)))
    assert list(tmp_path.iterdir()) == []


def test_stack_writer_too_many_or_wrong_shape_raises(tmp_path: Path) -> None:
    p = tmp_path / "sr.tif"
    with pytest.raises(ValueError, match="more frames"), StackWriter(p, 1, (16, 16)) as w:
        w.write(np.zeros((16, 16)))
        w.write(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="does not match"), StackWriter(p, 1, (16, 16)) as w:
        w.write(np.zeros((16, 17)))
    assert list(tmp_path.iterdir()) == []


def test_stack_writer_exception_removes_temp_and_keeps_old(tmp_path: Path) -> None:
    p = tmp_path / "sr.tif"
    write_stack(p, np.full((16, 16), 7.0))
    with pytest.raises(RuntimeError, match="boom"), StackWriter(p, 2, (16, 16)) as w:
        w.write(np.zeros((16, 16)))
        raise RuntimeError("boom")
    assert [f.name for f in tmp_path.iterdir()] == ["sr.tif"]
    assert read_stack(p).data.max() == 7.0
