"""Which iteration to recommend: the first one at which the loss has converged.

Rule (stated in the README and run.json): iteration k >= 2 has converged when its total loss
changed from iteration k-1 by at most ``REL_STEP`` of the decrease achieved so far
(L_1 - L_k), or by at most ``ABS_REL`` of L_{k-1}. Guards: an iteration whose RSE vs the LR
frame is more than ``RSE_GUARD`` times the pretrained model's (it fits the loss by adding
artifacts), or whose decorrelation resolution is more than ``RESOLUTION_GUARD`` times the
pretrained model's (it lost resolution), is never recommended. With ``final=True`` (end of
a run) and no converged iteration, the guarded iteration with the lowest loss is recommended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

REL_STEP = 0.1
ABS_REL = 1e-3
RSE_GUARD = 1.1
RESOLUTION_GUARD = 1.1


def recommend_iteration(records: Sequence[dict[str, Any]], *, final: bool = False) -> int | None:
    """Iteration number to recommend from per-iteration records (iteration 0 = pretrained)."""
    by_iter = {int(r["iteration"]): r for r in records}
    base_rse = _num(by_iter.get(0, {}).get("rse"))
    base_res = _num(by_iter.get(0, {}).get("resolution"))
    trained = sorted(k for k, r in by_iter.items() if k >= 1 and _num(r.get("total")) is not None)

    def allowed(k: int) -> bool:
        return _within(by_iter[k].get("rse"), base_rse, RSE_GUARD) and _within(
            by_iter[k].get("resolution"), base_res, RESOLUTION_GUARD
        )

    if not trained:
        return None
    first = _num(by_iter[trained[0]]["total"])
    for prev, k in zip(trained, trained[1:], strict=False):
        lp, lk = _num(by_iter[prev]["total"]), _num(by_iter[k]["total"])
        step = abs(lk - lp)
        converged = step <= ABS_REL * abs(lp) or step <= REL_STEP * max(first - lk, 0.0)
        if converged and allowed(k):
            return k
    if not final:
        return None
    candidates = [k for k in trained if allowed(k)]
    if not candidates:
        return 0
    return min(candidates, key=lambda k: _num(by_iter[k]["total"]))


def _within(value: Any, base: float | None, factor: float) -> bool:
    v = _num(value)
    return base is None or v is None or v <= factor * base


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None
