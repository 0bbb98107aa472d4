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
        ({"ema": 1.0}, "ema"),
        ({"ema": -0.1}, "ema"),
        ({"warmup": -1}, "warmup"),
        ({"warmup": 1.5}, "warmup"),
        ({"haze_level": -1.0}, "haze_level"),
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


def test_presets_fill_defaults_and_explicit_values_win():
    assert SaftParams.preset("reference") == SaftParams()
    a = SaftParams.preset("adaptive", lr=5e-4)
    assert (a.lr, a.ema, a.warmup, a.background, a.tile) == (5e-4, 0.95, 30, "map", 32)
    assert (a.consistency_level, a.haze_level, a.windows_per_tile) == (0.1, 0.3, 4)
    # the resolved record round-trips without the preset name
    assert SaftParams.from_dict(a.to_dict()).to_dict() == a.to_dict()
    with pytest.raises(InvalidParameterError) as err:
        SaftParams.preset("fast")
    assert err.value.field == "preset"
    with pytest.raises(InvalidParameterError) as err:
        SaftParams.preset("adaptive", ema=2.0)
    assert err.value.field == "ema"


def test_reference_defaults_switch_every_addition_off():
    p = SaftParams()
    assert (p.ema, p.warmup, p.haze_level, p.windows_per_tile) == (0.0, 0, 0.0, 1)


def test_background_mode_is_validated():
    assert SaftParams().background == "fit"
    assert SaftParams(background="map").validate().background == "map"
    with pytest.raises(InvalidParameterError) as err:
        SaftParams(background="subtract").validate()
    assert err.value.field == "background"
