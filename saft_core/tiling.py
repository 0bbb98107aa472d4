"""Tiled inference: run an SR network over frames of any size in bounded memory.

Tiles of ``tile`` LR pixels overlap by ``overlap`` LR pixels. Inside each overlap a tile's
output is ignored for the ``blend_margin(overlap)`` pixels next to its interior edge (where
the zero padding of the tile edge corrupts it), then ramps up with a raised cosine over the
rest of the overlap; outputs are blended with these weights normalised by their sum.

Exactness: an output pixel whose dependence on the input (the network's receptive-field
radius r, in LR pixels) lies inside the tile is computed exactly as on the whole frame.
With ``blend_margin(overlap) >= r`` every pixel that gets weight is exact, so the tiled
result equals the whole-frame result up to float rounding. The full SFSRM net (nb=23) has a
theoretical radius of ~350 LR pixels, so there the overlap cannot be exact; its effective
dependence decays within a few pixels, and the default margin (6 of the 16-pixel overlap)
plus the smooth ramp keep seams below visibility while costing ~30% extra compute.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from saft_core.errors import InvalidParameterError, ShapeMismatchError

# LR pixels of mirrored context around the frame. Why: the network's zero padding turns a
# bright frame edge into a step, which it renders as a bright band along the border.
FRAME_BORDER_PAD = 8


def blend_margin(overlap: int) -> int:
    """LR pixels ignored next to a tile's interior edge: the overlap minus a quarter-width ramp,
    halved (16 -> 6, 24 -> 9, 52 -> 19)."""
    ramp = max(overlap // 4, 1) if overlap > 0 else 0
    return (overlap - ramp) // 2


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Top-left LR origins (row, col) of the tiles covering an H x W frame, row-major.

    Tiles are min(tile, H) x min(tile, W); neighbours overlap by at least ``overlap`` pixels
    and the last row/column of tiles is aligned with the frame border.
    """
    _check(tile, overlap)
    return [(y, x) for y in _starts(height, tile, overlap) for x in _starts(width, tile, overlap)]


def tiled_apply(
    model: nn.Module,
    inp: torch.Tensor,
    scale: int,
    tile: int = 128,
    overlap: int = 16,
    batch_size: int = 4,
    border_pad: int = FRAME_BORDER_PAD,
) -> torch.Tensor:
    """model(inp) computed tile by tile: (N, C, H, W) LR -> (N, out_nc, scale*H, scale*W).

    The frame is first mirrored outwards by ``border_pad`` LR pixels (less for tiny frames)
    and the output cropped back, so frame borders see image-like context, not zeros.

    Runs under ``torch.inference_mode``; tiles from all images are batched together
    (``batch_size`` tiles per forward pass) on the model's device, and blended into float32
    buffers on ``inp``'s device, so memory is the output plus one batch of tiles. A frame
    smaller than ``tile`` along an axis is processed whole along that axis (no padding, so it
    equals the whole-frame output). The caller chooses train/eval mode.
    """
    _check(tile, overlap)
    if inp.ndim != 4:
        raise ShapeMismatchError(f"tiled_apply needs (N, C, H, W), got shape {tuple(inp.shape)}")
    if not isinstance(scale, int) or scale < 1:
        raise InvalidParameterError(
            f"scale must be a positive integer, got {scale!r}", field="scale"
        )
    if batch_size < 1:
        raise InvalidParameterError(
            f"batch_size must be >= 1, got {batch_size}", field="batch_size"
        )
    if border_pad < 0:
        raise InvalidParameterError(f"border_pad must be >= 0, got {border_pad}", field="tile")
    pad = min(border_pad, inp.shape[-2] - 1, inp.shape[-1] - 1)
    if pad > 0:
        padded = torch.nn.functional.pad(inp, (pad, pad, pad, pad), mode="reflect")
        out = tiled_apply(model, padded, scale, tile, overlap, batch_size, border_pad=0)
        return out[..., pad * scale : -pad * scale, pad * scale : -pad * scale].contiguous()
    n, _, height, width = inp.shape
    th, tw = min(tile, height), min(tile, width)
    ys, xs = _starts(height, tile, overlap), _starts(width, tile, overlap)
    param = next(iter(model.parameters()), None)
    run_device = param.device if param is not None else inp.device
    run_dtype = param.dtype if param is not None else inp.dtype
    margin = blend_margin(overlap)
    ramp = overlap - 2 * margin
    # One separable window per tile position along each axis; all images share the grid.
    wy = {y: _window(y, th, height, scale, margin, ramp, inp.device) for y in ys}
    wx = {x: _window(x, tw, width, scale, margin, ramp, inp.device) for x in xs}
    norm = torch.zeros(height * scale, width * scale, device=inp.device)
    for y in ys:
        for x in xs:
            norm[y * scale : (y + th) * scale, x * scale : (x + tw) * scale] += (
                wy[y][:, None] * wx[x][None, :]
            )
    jobs = [(i, y, x) for i in range(n) for y in ys for x in xs]
    out: torch.Tensor | None = None
    with torch.inference_mode():
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start : start + batch_size]
            tiles = torch.stack([inp[i, :, y : y + th, x : x + tw] for i, y, x in batch])
            pred = model(tiles.to(device=run_device, dtype=run_dtype))
            if pred.ndim != 4 or tuple(pred.shape[-2:]) != (th * scale, tw * scale):
                raise ShapeMismatchError(
                    f"model turned a {th}x{tw} tile into shape {tuple(pred.shape)}, "
                    f"expected {th * scale}x{tw * scale} for scale {scale}",
                    field="scale",
                )
            pred = pred.to(device=inp.device, dtype=torch.float32)
            if out is None:
                # A normal (non-inference) tensor, so callers may use the result as a constant
                # in autograd; in-place updates to it are allowed in inference mode.
                with torch.inference_mode(False):
                    out = torch.zeros(
                        n, pred.shape[1], height * scale, width * scale, device=inp.device
                    )
            for k, (i, y, x) in enumerate(batch):
                w = wy[y][:, None] * wx[x][None, :]
                out[i, :, y * scale : (y + th) * scale, x * scale : (x + tw) * scale] += pred[k] * w
            del pred, tiles
        assert out is not None  # at least one tile always exists
        out /= norm
    return out


def _check(tile: int, overlap: int) -> None:
    if not isinstance(tile, int) or tile < 1:
        raise InvalidParameterError(f"tile must be a positive integer, got {tile!r}", field="tile")
    if not isinstance(overlap, int) or not 0 <= overlap < tile:
        raise InvalidParameterError(
            f"overlap must be an integer from 0 to tile-1 ({tile - 1}), got {overlap!r}",
            field="overlap",
        )


def _starts(n: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis: stride tile-overlap, the last one flush with the border."""
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile + 1, tile - overlap))
    if starts[-1] + tile < n:
        starts.append(n - tile)
    return starts


def _window(
    start: int, size: int, n: int, scale: int, margin: int, ramp: int, device: torch.device
) -> torch.Tensor:
    """Blend weights of one tile along one axis, on its SR pixels (length size*scale).

    Zero for ``margin`` LR pixels from an interior edge, raised cosine over the next ``ramp``
    pixels, one elsewhere; frame borders get full weight (there is no neighbour to blend with).
    Facing ramps of two neighbours at the nominal overlap sum to exactly one.
    """
    u = (torch.arange(size * scale, device=device, dtype=torch.float64) + 0.5) / scale
    w = torch.ones_like(u)
    if start > 0:
        w = w * _rise(u, margin, ramp)
    if start + size < n:
        w = w * _rise(size - u, margin, ramp)
    return w.float()


def _rise(d: torch.Tensor, margin: int, ramp: int) -> torch.Tensor:
    """0 up to ``margin`` LR pixels from the edge, raised cosine to 1 over ``ramp`` pixels."""
    if ramp == 0:
        return (d > margin).to(d.dtype)
    z = ((d - margin) / ramp).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * z)
