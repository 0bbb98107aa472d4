"""SaftParams and its spec: every declared bound is enforced and names its field; the docs
table follows the spec."""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest

from saft_core.errors import InvalidParameterError
from saft_core.params import DEFAULT_PRESET, PRESETS, SPEC, SPEC_BY_NAME, SaftParams

REPO = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_default_preset_and_reference_is_the_authors_loop():
    p = SaftParams().validate()
    assert p == SaftParams.preset(DEFAULT_PRESET) == SaftParams.preset("adaptive")
    assert (p.n_iterations, p.lr, p.sigma, p.ksize) == (5, 1e-3, "auto", 5)
    r = SaftParams.preset("reference")
    assert (r.lr, r.sigma, r.ksize, r.background, r.consistency_level) == (1e-5, 1.1, 5, "mean", 1)
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
    assert SaftParams.preset(DEFAULT_PRESET) == SaftParams()
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


def test_reference_switches_every_addition_off():
    p = SaftParams.preset("reference")
    assert (p.ema, p.warmup, p.haze_level, p.windows_per_tile) == (0.0, 0, 0.0, 1)


def test_background_mode_is_validated():
    assert SaftParams().background == "map"
    assert SaftParams(background="map").validate().background == "map"
    with pytest.raises(InvalidParameterError) as err:
        SaftParams(background="subtract").validate()
    assert err.value.field == "background"


# ---- the spec: every layer's view of the parameters comes from SPEC ------------------------


def _outside(p):
    """Values just outside each declared bound, and the largest float."""
    out = []
    if p.kind in (int, float):
        step = 1 if p.kind is int else 1e-9 * max(1.0, abs(p.max or 1))
        if p.min is not None:
            out.append(p.min if p.min_exclusive else p.kind(p.min - step))
        if p.max is not None:
            out.append(p.max if p.max_exclusive else p.kind(p.max + step))
    if p.kind is float:
        out += [1e308, -1e308, float("inf"), float("nan"), True]
    if p.kind is int:
        out += [True, float(p.value or 1)]
    if p.choices:
        out += ["nope", 1]
    return out


BOUND_CASES = [(p.name, v) for p in SPEC for v in _outside(p)]


@pytest.mark.parametrize(("name", "value"), BOUND_CASES, ids=[f"{n}={v!r}" for n, v in BOUND_CASES])
def test_every_declared_bound_is_enforced_naming_the_field(name, value):
    with pytest.raises(InvalidParameterError) as err:
        SaftParams(**{name: value}).validate()
    assert err.value.field == name
    assert err.value.message.startswith(f"{name} must be")


@pytest.mark.parametrize("p", SPEC, ids=[p.name for p in SPEC])
def test_each_bound_itself_is_accepted(p):
    for bound, exclusive in ((p.min, p.min_exclusive), (p.max, p.max_exclusive)):
        if bound is not None and not exclusive and (not p.odd or bound % 2 == 1):
            assert getattr(SaftParams(**{p.name: p.kind(bound)}).validate(), p.name) == bound


def test_every_float_has_finite_bounds():
    floats = [p for p in SPEC if p.kind is float]
    assert floats and all(math.isfinite(p.min) and math.isfinite(p.max) for p in floats)


def test_saftparams_fields_and_presets_come_from_the_spec():
    assert [f.name for f in dataclasses.fields(SaftParams)] == [p.name for p in SPEC]
    assert PRESETS[DEFAULT_PRESET] == {
        k: v for k, v in dataclasses.asdict(SaftParams()).items() if k != "mode"
    }
    for name in PRESETS:
        assert set(PRESETS[name]) == {p.name for p in SPEC if not p.run_level}
        SaftParams.preset(name)  # every preset value is inside the spec's ranges
    assert not hasattr(SaftParams, "with_")


def test_special_values():
    assert SaftParams(sigma="auto").validate().sigma == "auto"
    assert SaftParams(windows_per_tile="auto").validate().windows_per_tile is None
    assert SaftParams(windows_per_tile=None).validate().windows_per_tile is None
    assert SaftParams(iterations=None, mode="wsf").n_iterations == 3
    with pytest.raises(InvalidParameterError) as err:
        SaftParams(sigma=None).validate()
    assert err.value.field == "sigma"


def test_lr_help_says_it_is_the_optimiser_rate():
    assert "optimiser" in SPEC_BY_NAME["lr"].help and "not the LR stack" in SPEC_BY_NAME["lr"].help


def test_docs_parameter_table_matches_the_spec():
    """Fails when docs/service-contract.md drifts: run ``python scripts/gen_param_docs.py``."""
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_param_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    doc = (REPO / "docs" / "service-contract.md").read_text()
    assert "<!-- param-table:start" in doc
    for p in SPEC:
        assert (f"| `{p.name}` |" in doc) != p.run_level, p.name
