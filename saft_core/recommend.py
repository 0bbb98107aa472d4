"""Which iteration to recommend: the best-fitting allowed iteration, once the fit has stalled.

Rule (stated in the README and run.json): the loss is the data fidelity of the network each
iteration shows (the degradation term, on the same fixed windows every iteration; iteration 0
= the pretrained network), or, in records without it, the training total of iterations >= 1.
An iteration is allowed unless its RSE vs the LR frame exceeds ``RSE_GUARD`` (1.1) times the
pretrained model's (it fits by adding artifacts) or it lost resolution: FRC resolution above
``FRC_GUARD`` (1.1) times the pretrained model's, or, in records without FRC, decorrelation
resolution above ``DECORRELATION_GUARD`` (1.25) times, or it added haze: ``haze_ratio`` more
than ``HAZE_GUARD`` (0.03) above the pretrained model's. The run has stalled when, over the last
``PATIENCE`` (3) iterations, the lowest allowed loss improved by at most ``STALL_REL`` (3%) of
the total improvement (first loss - lowest), and the last step (to an allowed iteration) fell
by no more. Then, and at the end of every run, the recommendation is the latest allowed
iteration whose loss is within ``NEAR`` (2%) of the total improvement from the lowest, or the
pretrained network (0) when no trained iteration is allowed or fits better than it.

Why this rule. The previous rule stopped at the first iteration whose step was small compared
with the decrease so far; on the bench (other_structure, adaptive preset) it recommended
iteration 2 (+1.0 dB PSNR) of a run whose iteration 5 gained +3.6 dB: fidelity reached its
noise floor early (0.00808 at 2, 0.00806 at 5) while the network went on shedding the
pretrained artifacts. Hence waiting ``PATIENCE`` iterations without progress, and, among
near-equal fits, the latest. The same run's decorrelation resolution read 1.13x coarser at
iteration 5: decorrelation counts hallucinated texture as resolution, so removing it reads as
a loss; its guard is therefore looser than FRC's (FRC correlates independent halves and is not
fooled by noise-driven texture, see saft_core.resolution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PATIENCE = 3  # iterations without progress before the run counts as stalled
STALL_REL = 0.03  # progress below this fraction of the total improvement is no progress
NEAR = 0.02  # losses this close (fraction of the total improvement) count as equal fits
RSE_GUARD = 1.1
FRC_GUARD = 1.1
DECORRELATION_GUARD = 1.25
# Haze (record ``haze_ratio``: SR where the pretrained output is empty / SR on its structure)
# may grow by at most this much over the pretrained network's: the fit to out-of-focus light
# and background must not be bought with haze in the SR image.
HAZE_GUARD = 0.03


def recommend_iteration(records: Sequence[dict[str, Any]], *, final: bool = False) -> int | None:
    """Iteration number to recommend from per-iteration records (iteration 0 = pretrained).

    ``final=False`` (during a run) returns None until the run has stalled; ``final=True``
    always recommends (None only when no iteration was trained).
    """
    by_iter = {int(r["iteration"]): r for r in records}
    key = "fidelity" if all(_num(r.get("fidelity")) is not None for r in records) else "total"
    scored = sorted(k for k, r in by_iter.items() if _num(r.get(key)) is not None)
    trained = [k for k in scored if k >= 1]
    if not trained:
        return None
    chain = scored if key == "fidelity" else trained  # fidelity has an iteration 0
    allowed = _guard(by_iter)
    loss = {k: _num(by_iter[k][key]) for k in chain}

    # lowest allowed loss after each iteration of the chain
    best_so_far: list[float | None] = []
    for k in chain:
        prev = best_so_far[-1] if best_so_far else None
        cur = loss[k] if allowed(k) else None
        best_so_far.append(cur if prev is None else prev if cur is None else min(prev, cur))
    first, best = loss[chain[0]], best_so_far[-1]
    if best is None:  # nothing allowed (only possible without an iteration 0 loss)
        return 0 if final or len(chain) > PATIENCE else None
    improvement = max(first - best, 0.0)
    stalled = False
    if len(chain) > PATIENCE:
        before = best_so_far[-1 - PATIENCE]
        progress = (before - best) if before is not None else math.inf
        last, prev = chain[-1], chain[-2]
        # still falling towards a recommendable iteration (e.g. recovering from a spike)
        descent = loss[prev] - loss[last] if allowed(last) else 0.0
        stalled = max(progress, descent) <= STALL_REL * improvement
    if not (stalled or final):
        return None
    near = [k for k in chain if allowed(k) and loss[k] <= best + NEAR * improvement]
    if key == "fidelity":  # a trained iteration must fit better than the pretrained network
        near = [k for k in near if k == 0 or loss[k] < loss[0]]
    return max(near) if near else 0


def _guard(by_iter: dict[int, dict[str, Any]]):
    """Predicate: iteration k passes the RSE and resolution guards (missing values pass)."""
    base = by_iter.get(0, {})
    base_rse = _num(base.get("rse"))
    base_frc = _num(base.get("frc_resolution"))
    base_dec = _num(base.get("resolution"))
    base_haze = _num(base.get("haze_ratio"))

    def allowed(k: int) -> bool:
        r = by_iter[k]
        if k == 0:
            return True
        if not _within(r.get("rse"), base_rse, RSE_GUARD):
            return False
        haze = _num(r.get("haze_ratio"))
        if base_haze is not None and haze is not None and haze > base_haze + HAZE_GUARD:
            return False
        if base_frc is not None and _num(r.get("frc_resolution")) is not None:
            return _within(r.get("frc_resolution"), base_frc, FRC_GUARD)
        return _within(r.get("resolution"), base_dec, DECORRELATION_GUARD)

    return allowed


def _within(value: Any, base: float | None, factor: float) -> bool:
    v = _num(value)
    return base is None or v is None or v <= factor * base


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None
