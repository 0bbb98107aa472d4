"""Input normalisation shared by fine-tuning and reconstruction (they must agree exactly)."""

from __future__ import annotations

import numpy as np

from saft_core.errors import InvalidStackError

EDGE_8BIT_MAX = 255.0


def lr_scale(lr: np.ndarray) -> float:
    """The stack's global max: LR frames are divided by it (SR output is multiplied back)."""
    peak = float(np.max(lr))
    if not np.isfinite(peak) or peak <= 0:
        raise InvalidStackError("LR stack is blank (its maximum is not positive)", field="lr")
    return peak


def normalise_lr(lr: np.ndarray) -> np.ndarray:
    """LR stack divided by its global max, float32."""
    return (np.asarray(lr, dtype=np.float32) / lr_scale(lr)).astype(np.float32, copy=False)


def edge_scale(edges: np.ndarray) -> float:
    """Edge maps are 8-bit like the published SFSRM ones; wider ranges are scaled by their max."""
    peak = float(np.max(edges))
    if not np.isfinite(peak):
        raise InvalidStackError("edge map has non-finite values", field="edge")
    return EDGE_8BIT_MAX if peak <= EDGE_8BIT_MAX else peak


def normalise_edges(edges: np.ndarray) -> np.ndarray:
    """Edge map in 0..1 (divided by 255, or by its max when it exceeds the 8-bit range)."""
    return (np.asarray(edges, dtype=np.float32) / edge_scale(edges)).astype(np.float32, copy=False)
