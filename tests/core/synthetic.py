"""Tiny deterministic test data: moving Gaussian filaments at 4x, binned to LR."""

from __future__ import annotations

import numpy as np


def filament_stack(n_frames=6, lr_size=32, scale=4, seed=0, noise=0.02):
    """(lr (T,H,W), edges (T,H,W) 0..255, gt (T,sH,sW)) with a few drifting lines."""
    rng = np.random.default_rng(seed)
    size = lr_size * scale
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    lines = [(rng.uniform(0, np.pi), rng.uniform(-size / 4, size / 4)) for _ in range(4)]
    gt = np.zeros((n_frames, size, size), np.float32)
    for t in range(n_frames):
        for angle, offset in lines:
            d = (xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle) - offset - t
            gt[t] += np.exp(-(d**2) / (2 * 1.5**2))
    lr = gt.reshape(n_frames, lr_size, scale, lr_size, scale).mean(axis=(2, 4))
    from scipy.ndimage import gaussian_filter

    lr = np.stack([gaussian_filter(f, 1.2) for f in lr]) + 0.05
    lr = lr + noise * rng.standard_normal(lr.shape).astype(np.float32)
    lr = np.clip(lr, 0, None).astype(np.float32)
    grad = np.stack([np.hypot(*np.gradient(gaussian_filter(f, 0.7))) for f in lr])
    edges = (255 * grad / grad.max()).astype(np.float32)
    return lr, edges, gt
