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


def _fidelity_records(fidelities, totals):
    """Records with the fixed-window fidelity (iteration 0 included) and noisy totals."""
    recs = [{"iteration": 0, "total": None, "fidelity": fidelities[0]}]
    recs += [
        {"iteration": k, "total": t, "fidelity": o}
        for k, (o, t) in enumerate(zip(fidelities[1:], totals, strict=True), start=1)
    ]
    return recs


def test_fidelity_is_judged_instead_of_the_noisy_training_total():
    # The training totals jump around (random windows); the fidelity falls and settles at 3.
    recs = _fidelity_records([1.0, 0.6, 0.45, 0.44, 0.439], [0.5, 0.9, 0.8, 0.3])
    assert recommend_iteration(recs) == 3
    # judged on the totals alone, the same run would be read differently
    totals_only = [{k: v for k, v in r.items() if k != "fidelity"} for r in recs]
    assert recommend_iteration(totals_only, final=True) != 3


def test_fidelity_that_only_rises_keeps_the_pretrained_network():
    recs = _fidelity_records([0.5, 0.7, 0.8, 0.9], [0.3, 0.2, 0.1])
    assert recommend_iteration(recs) is None
    assert recommend_iteration(recs, final=True) == 0


def test_records_without_fidelity_fall_back_to_the_total():
    recs = _fidelity_records([1.0, 0.6, 0.4, 0.39, 0.388], [1.0, 0.6, 0.4, 0.39])
    del recs[2]["fidelity"]  # e.g. a run resumed from an older record
    assert recommend_iteration(recs) == 4
