"""The recommended-iteration rule on synthetic loss curves."""

from saft_core.recommend import recommend_iteration


def _records(losses, rse=None):
    rse = rse or [None] * (len(losses) + 1)
    recs = [{"iteration": 0, "total": None, "rse": rse[0]}]
    recs += [{"iteration": i + 1, "total": v, "rse": rse[i + 1]} for i, v in enumerate(losses)]
    return recs


def test_picks_first_converged_iteration():
    # Big drops, then a plateau starting at iteration 4.
    recs = _records([1.0, 0.6, 0.4, 0.39, 0.388])
    assert recommend_iteration(recs) == 4


def test_still_falling_has_no_online_recommendation_but_final_picks_lowest():
    recs = _records([1.0, 0.8, 0.6, 0.4, 0.2])
    assert recommend_iteration(recs) is None
    assert recommend_iteration(recs, final=True) == 5


def test_rse_guard_skips_iterations_that_add_artifacts():
    recs = _records([1.0, 0.6, 0.4, 0.39, 0.388], rse=[0.1, 0.1, 0.1, 0.1, 0.2, 0.1])
    assert recommend_iteration(recs) == 5


def test_no_trained_iterations():
    assert recommend_iteration(_records([])) is None


def test_resolution_guard_skips_iterations_that_lose_resolution():
    recs = _records([1.0, 0.6, 0.4, 0.39, 0.388])
    for r, res in zip(recs, [2.0, 2.0, 2.0, 2.0, 3.0, 2.1], strict=True):
        r["resolution"] = res
    assert recommend_iteration(recs) == 5
