"""Which iteration to recommend: the first one at which the loss has converged.

Rule (stated in the README and run.json): the loss is the data fidelity of the network each
iteration shows (the degradation term, on the same fixed windows every iteration; iteration 0
= the pretrained network), or, in records without it, the training total of iterations >= 1.
Iteration k has converged when its loss changed from the previous iteration by at most
``REL_STEP`` of the decrease achieved so far (L_first - L_k), or by at most ``ABS_REL`` of
the previous loss. Guards: an iteration whose RSE vs the LR frame is more than ``RSE_GUARD``
times the pretrained model's (it fits the loss by adding artifacts), or whose decorrelation
resolution is more than ``RESOLUTION_GUARD`` times the pretrained model's (it lost
resolution), is never recommended. At the end of a run with no converged iteration, the
guarded iteration with the lowest loss is recommended, or the pretrained network (0) when
none is allowed or none fits better than it.

Fidelity on fixed windows is preferred because the training total is a mean over each
iteration's random windows (it moves with the draw, and it does not describe averaged weights,
``ema``), and because the whole objective includes the ties to the pretrained output, which
grow as the network leaves the pretrained artifacts behind: on the simulated mitochondria
stack the objective rose by 8% while PSNR vs the truth rose by 2.9 dB and fidelity fell 13%.
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
    key = "fidelity" if all(_num(r.get("fidelity")) is not None for r in records) else "total"
    scored = sorted(k for k, r in by_iter.items() if _num(r.get(key)) is not None)
    trained = [k for k in scored if k >= 1]

    def allowed(k: int) -> bool:
        return _within(by_iter[k].get("rse"), base_rse, RSE_GUARD) and _within(
            by_iter[k].get("resolution"), base_res, RESOLUTION_GUARD
        )

    if not trained:
        return None
    chain = scored if key == "fidelity" else trained  # fidelity has an iteration 0
    first = _num(by_iter[chain[0]][key])
    for prev, k in zip(chain, chain[1:], strict=False):
        lp, lk = _num(by_iter[prev][key]), _num(by_iter[k][key])
        step = abs(lk - lp)
        converged = step <= ABS_REL * abs(lp) or step <= REL_STEP * max(first - lk, 0.0)
        if converged and allowed(k):
            return k
    if not final:
        return None
    candidates = [k for k in trained if allowed(k)]
    if not candidates:
        return 0
    best = min(candidates, key=lambda k: _num(by_iter[k][key]))
    if key == "fidelity" and _num(by_iter[0][key]) <= _num(by_iter[best][key]):
        return 0  # fine-tuning only made the fit worse: keep the pretrained network
    return best


def _within(value: Any, base: float | None, factor: float) -> bool:
    v = _num(value)
    return base is None or v is None or v <= factor * base


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None
