"""Tiled inference equals whole-frame inference where the receptive field allows it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from saft_core.errors import InvalidParameterError, ShapeMismatchError
from saft_core.networks import SRConfig, build_sr
from saft_core.tiling import FRAME_BORDER_PAD, blend_margin, tile_grid, tiled_apply

P = FRAME_BORDER_PAD


def whole_frame(model: nn.Module, inp: torch.Tensor, pad: int = P) -> torch.Tensor:
    """model on the whole frame mirrored by ``pad`` LR pixels, cropped back (scale 4)."""
    with torch.no_grad():
        out = model(F.pad(inp, (pad,) * 4, mode="reflect"))
    return out[..., 4 * pad : -4 * pad, 4 * pad : -4 * pad]


class Pointwise(nn.Module):
    """Nearest x4 upsampling then a 1x1 conv: receptive field 0, so any tiling is exact."""

    def __init__(self, out_nc: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, out_nc, 1)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.conv(F.interpolate(x, scale_factor=4, mode="nearest"))


def strong_rrdb() -> nn.Module:
    """A tiny RRDBNet with its dense blocks amplified so distant pixels matter measurably."""
    model = build_sr(SRConfig(nf=8, nb=1, gc=8), seed=1).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".RDB" in name and name.endswith("weight"):
                p.mul_(10)
    return model


def receptive_radius(model: nn.Module, scale: int = 4) -> int:
    """Largest LR distance (Chebyshev) at which an input pixel changes one output pixel."""
    x = torch.rand(1, 2, 48, 48, requires_grad=True)
    out = model(x)
    out[0, 0, 24 * scale + 1, 24 * scale + 2].backward()
    rows_cols = torch.nonzero(x.grad[0].abs().sum(0))
    return int((rows_cols - 24).abs().max())


def test_tile_grid() -> None:
    grid = tile_grid(50, 70, 32, 8)
    ys, xs = sorted({y for y, _ in grid}), sorted({x for _, x in grid})
    assert ys == [0, 18] and xs == [0, 24, 38]
    assert len(grid) == 6 and grid[0] == (0, 0)
    for starts, n in [(ys, 50), (xs, 70)]:
        assert starts[-1] + 32 == n  # the last tile is flush with the border
        steps = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
        assert all(step <= 32 - 8 for step in steps)  # overlap >= 8
    assert tile_grid(20, 30, 128, 16) == [(0, 0)]
    assert tile_grid(64, 64, 64, 0) == [(0, 0)]
    assert tile_grid(128, 64, 64, 0) == [(0, 0), (64, 0)]
    for tile, overlap in [(32, 32), (32, -1), (0, 0)]:
        with pytest.raises(InvalidParameterError):
            tile_grid(50, 70, tile, overlap)


def test_blend_margin() -> None:
    assert [blend_margin(o) for o in (0, 1, 2, 8, 16, 24, 52)] == [0, 0, 0, 3, 6, 9, 19]
    for o in range(0, 80):
        assert o == 0 or o - 2 * blend_margin(o) >= 1  # a ramp always remains: full coverage


@pytest.mark.parametrize("overlap", [0, 1, 8, 13])
def test_blending_is_exact_for_a_pointwise_model(overlap: int) -> None:
    torch.manual_seed(0)
    model = Pointwise(out_nc=2)
    inp = torch.rand(3, 2, 50, 70)
    with torch.no_grad():
        whole = model(inp)
    model.batches.clear()
    out = tiled_apply(model, inp, 4, tile=32, overlap=overlap, batch_size=4)
    assert out.shape == (3, 2, 200, 280) and out.dtype == torch.float32
    assert (out - whole).abs().max() < 1e-5
    n_tiles = 3 * len(tile_grid(50 + 2 * P, 70 + 2 * P, 32, overlap))  # the mirrored frame
    assert sum(model.batches) == n_tiles  # every tile once, across images
    assert max(model.batches) <= 4 and len(model.batches) == -(-n_tiles // 4)


def test_tiled_equals_whole_frame_rrdbnet() -> None:
    model = strong_rrdb()
    radius = receptive_radius(model)
    assert 15 <= radius <= 20  # nb=1: 1 + 15 + 1 LR convs, plus ~2 px from the SR tail
    tile, overlap = 64, 52
    assert blend_margin(overlap) >= radius
    inp = torch.rand(2, 2, 75, 90, generator=torch.Generator().manual_seed(3))
    whole = whole_frame(model, inp)
    assert len(tile_grid(75, 90, tile, overlap)) > 4  # a real grid, not one tile
    out = tiled_apply(model, inp, 4, tile=tile, overlap=overlap, batch_size=3)
    assert out.shape == whole.shape
    assert (out - whole).abs().max() < 1e-4
    # the check has teeth: a margin below the receptive field is visibly off
    rough = tiled_apply(model, inp, 4, tile=32, overlap=8, batch_size=3)
    assert (rough - whole).abs().max() > 1e-3


def test_small_frames_are_processed_whole() -> None:
    model = strong_rrdb()
    inp = torch.rand(1, 2, 20, 30)
    out = tiled_apply(model, inp, 4, tile=128, overlap=16)
    assert (out - whole_frame(model, inp)).abs().max() < 1e-5
    wide = torch.rand(1, 2, 20, 150)  # smaller than a tile in one axis only
    out = tiled_apply(model, wide, 4, tile=64, overlap=52, border_pad=0)
    with torch.no_grad():
        assert (out - model(wide)).abs().max() < 1e-4  # no mirroring: the plain network


def test_frame_border_band_is_gone_on_the_real_frame() -> None:
    """The default network on the real microtubule frame: the outermost LR column (bright
    cell centre) must look like its neighbours, not like a band or a rim."""
    from pathlib import Path

    from saft_core.io import read_stack
    from saft_core.networks import load_model
    from saft_core.normalise import normalise_edges, normalise_lr

    ex = Path(__file__).resolve().parents[2] / "examples" / "sfsrm-microtubule"
    wf = read_stack(ex / "widefield.tif").data
    edge = read_stack(ex / "edgemap_nanoj_srrf.tif").data
    inp = torch.from_numpy(np.stack([normalise_edges(edge), normalise_lr(wf)], 1))
    model = load_model("default", "sr").eval()

    def band(out: torch.Tensor) -> float:
        sr = out.abs()[0, 0].numpy()
        return float(sr[:, :4].mean() / sr[:, 4:32].mean())

    torch.manual_seed(0)
    mirrored = band(tiled_apply(model, inp, 4, tile=128, overlap=24))
    zero_padded = band(tiled_apply(model, inp, 4, tile=128, overlap=24, border_pad=0))
    assert abs(mirrored - 1) < 0.2  # the border looks like its neighbours
    # the check has teeth: zero padding makes a border artifact (a bright band with the old
    # single-condition network, a dark rim with the broad one)
    assert abs(zero_padded - 1) > abs(mirrored - 1) + 0.1


def test_output_is_a_normal_tensor() -> None:
    out = tiled_apply(Pointwise(), torch.rand(1, 2, 16, 16), 4, tile=8, overlap=2)
    assert not out.is_inference() and not out.requires_grad
    w = torch.ones(1, requires_grad=True)
    (out * w).sum().backward()  # usable as a constant in a later autograd graph
    assert w.grad is not None


def test_wrong_scale_and_shape() -> None:
    with pytest.raises(ShapeMismatchError, match="scale 8"):
        tiled_apply(Pointwise(), torch.rand(1, 2, 16, 16), 8, tile=8, overlap=2)
    with pytest.raises(ShapeMismatchError):
        tiled_apply(Pointwise(), torch.rand(2, 16, 16), 4)
    with pytest.raises(InvalidParameterError):
        tiled_apply(Pointwise(), torch.rand(1, 2, 16, 16), 4, batch_size=0)
