"""SaftParams validation: every documented bound names its field."""

import pytest

from saft_core.errors import InvalidParameterError
from saft_core.params import SaftParams


def test_defaults_follow_reference():
    p = SaftParams().validate()
    assert (p.n_iterations, p.lr, p.sigma, p.ksize) == (5, 1e-5, 1.1, 5)
    assert SaftParams(mode="wsf").n_iterations == 3
    assert p.to_dict()["iterations"] == 5


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ksize": 4}, "ksize"),
        ({"ksize": 1}, "ksize"),
        ({"lr": 2e-3}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"iterations": 0}, "iterations"),
        ({"iterations": 51}, "iterations"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": "wide"}, "sigma"),
        ({"mode": "other"}, "mode"),
        ({"continuity_level": -1.0}, "continuity_level"),
        ({"seed": -3}, "seed"),
        ({"window": 4}, "window"),
    ],
)
def test_out_of_range_names_field(changes, field):
    with pytest.raises(InvalidParameterError) as err:
        SaftParams(**changes).validate()
    assert err.value.field == field


def test_from_dict_rejects_unknown_keys_and_round_trips():
    p = SaftParams(sigma="auto", iterations=7, seed=3)
    assert SaftParams.from_dict(p.to_dict()) == SaftParams(sigma="auto", iterations=7, seed=3)
    with pytest.raises(InvalidParameterError) as err:
        SaftParams.from_dict({"learning_rate": 1e-5})
    assert err.value.field == "learning_rate"


def test_background_mode_is_validated():
    assert SaftParams().background == "fit"
    with pytest.raises(InvalidParameterError) as err:
        SaftParams(background="subtract").validate()
    assert err.value.field == "background"
