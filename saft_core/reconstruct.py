"""Whole-stack reconstruction with a chosen checkpoint, streamed frame batch by frame batch.

Memory stays flat in T: SR frames go to the output TIFF as they are made, and the MP4 is
written afterwards by reading the TIFF back page by page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from saft_core.device import describe_device, select_device
from saft_core.errors import Cancelled, ShapeMismatchError
from saft_core.io import StackWriter
from saft_core.networks import load_model
from saft_core.normalise import EDGE_8BIT_MAX, edge_scale, lr_scale
from saft_core.tiling import tiled_apply
from saft_core.video import write_mp4

log = logging.getLogger(__name__)

DEFAULT_TILE = 128  # LR pixels
DEFAULT_OVERLAP = 24  # LR pixels; wider than the small default network's receptive field
DEFAULT_BATCH = 4  # frames per forward batch


@dataclass
class ReconstructionSummary:
    """Where the output went and what it is."""

    tiff: Path
    video: Path | None
    shape: tuple[int, int, int]  # (T, sH, sW)
    scale: int
    pixel_size: float | None  # um per SR pixel
    device: str
    seconds: float


def reconstruct(
    stack: np.ndarray,
    edges: np.ndarray | None,
    model: nn.Module | str | Path | dict[str, Any],
    out_tiff: str | Path,
    *,
    video: str | Path | None = None,
    pixel_size: float | None = None,
    device: str | torch.device | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> ReconstructionSummary:
    """Super-resolve every frame of the LR ``stack`` (T, H, W) into ``out_tiff`` (and ``video``).

    Intensities are written in the input's units: the network output times the LR stack's max.
    ``pixel_size`` is the LR pixel size in um; the TIFF records it divided by the scale.
    """
    import time

    started = time.perf_counter()
    dev = select_device(str(device) if device is not None else None)
    net = model if isinstance(model, nn.Module) else load_model(model, "sr")
    net = net.to(dev).eval()
    scale = int(net.config.scale)
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim == 2:
        stack = stack[None]
    if edges is not None:
        edges = np.asarray(edges, dtype=np.float32)
        if edges.ndim == 2:
            edges = edges[None]
        if edges.shape != stack.shape:
            raise ShapeMismatchError(
                f"edge map shape {edges.shape} does not match LR stack shape {stack.shape}",
                field="edge",
            )
    n_frames, height, width = stack.shape
    peak = lr_scale(stack)
    e_peak = edge_scale(edges) if edges is not None else None
    out_tiff = Path(out_tiff)
    sr_pixel = pixel_size / scale if pixel_size else None

    with StackWriter(out_tiff, n_frames, (height * scale, width * scale), sr_pixel) as writer:
        done = 0
        for start in range(0, n_frames, batch_size):
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled by request")
            stop = min(start + batch_size, n_frames)
            x = stack[start:stop] / peak
            if edges is None:
                from saft_core.edges import compute_edges

                e = compute_edges(stack[start:stop]) / EDGE_8BIT_MAX
            else:
                e = edges[start:stop] / e_peak
            inp = torch.from_numpy(np.stack([e, x], axis=1).astype(np.float32)).to(dev)
            out = tiled_apply(net, inp, scale, tile=tile, overlap=overlap, batch_size=batch_size)
            frames = (out.abs()[:, 0] * peak).float().cpu().numpy()
            for frame in frames:
                writer.write(frame)
            done = stop
            if on_progress is not None:
                on_progress(done, n_frames)
    if video is not None:
        video = Path(video)
        write_mp4(video, _tiff_frames(out_tiff))
    return ReconstructionSummary(
        tiff=out_tiff,
        video=video,
        shape=(n_frames, height * scale, width * scale),
        scale=scale,
        pixel_size=sr_pixel,
        device=describe_device(dev),
        seconds=time.perf_counter() - started,
    )


def _tiff_frames(path: Path) -> Iterator[np.ndarray]:
    """Frames of the TIFF that StackWriter wrote, memory-mapped (it is contiguous and raw).

    A memmap, not page-by-page reading: ImageJ files over 4 GB index only their first page.
    """
    import tifffile

    frames = tifffile.memmap(path, mode="r")
    if frames.ndim == 2:
        frames = frames[None]
    for frame in frames:
        yield np.asarray(frame)
