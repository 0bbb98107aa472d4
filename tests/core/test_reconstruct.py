"""Whole-stack reconstruction: shapes, intensities, pixel size, MP4, nothing left on cancel."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from saft_core.errors import Cancelled, ShapeMismatchError
from saft_core.networks import SRConfig, build_sr
from saft_core.reconstruct import reconstruct
from saft_core.tiling import FRAME_BORDER_PAD
from tests.core.synthetic import filament_stack


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4)).eval()


def test_reconstruct_writes_stack_and_video(tmp_path, model):
    lr, edges, _ = filament_stack(n_frames=5, lr_size=24)
    out, mp4 = tmp_path / "sr.tif", tmp_path / "sr.mp4"
    summary = reconstruct(lr, edges, model, out, video=mp4, pixel_size=0.1, batch_size=2)
    assert summary.shape == (5, 96, 96)
    with tifffile.TiffFile(out) as tif:
        data = tif.asarray()
        assert tif.is_imagej
        x_res = tif.pages[0].tags["XResolution"].value
    assert data.shape == (5, 96, 96) and data.dtype == np.float32
    assert x_res[0] / x_res[1] == pytest.approx(1 / 0.025, rel=1e-3)  # pixels per um
    # Intensities are the network output times the stack max, frame by frame.
    # (the frame mirrored outwards by FRAME_BORDER_PAD LR px, as tiled inference does)
    inp = torch.from_numpy(np.stack([edges[2:3] / 255, lr[2:3] / lr.max()], 1))
    pad = FRAME_BORDER_PAD
    with torch.inference_mode():
        out = model(torch.nn.functional.pad(inp, (pad,) * 4, mode="reflect"))
        direct = out.abs()[0, 0, 4 * pad : -4 * pad, 4 * pad : -4 * pad].numpy() * lr.max()
    np.testing.assert_allclose(data[2], direct, rtol=1e-4, atol=1e-5 * lr.max())
    assert mp4.stat().st_size > 1000 and mp4.read_bytes()[4:8] == b"ftyp"


def test_cancel_leaves_nothing(tmp_path, model):
    lr, edges, _ = filament_stack(n_frames=5, lr_size=24)
    out = tmp_path / "sr.tif"
    with pytest.raises(Cancelled):
        reconstruct(lr, edges, model, out, batch_size=1, should_cancel=iter([0, 0, 1]).__next__)
    assert list(tmp_path.iterdir()) == []


def test_edge_mismatch(tmp_path, model):
    lr, edges, _ = filament_stack(n_frames=2, lr_size=24)
    with pytest.raises(ShapeMismatchError):
        reconstruct(lr, edges[:1], model, tmp_path / "x.tif")
    assert list(tmp_path.iterdir()) == []
