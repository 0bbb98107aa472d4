"""GET /v1/params: the spec as the dashboard form reads it; ParamsIn follows the same spec."""

from __future__ import annotations

from typing import Any

import pytest

from saft_core.params import DEFAULT_PRESET, PRESET_PARAMS, PRESETS, SaftParams
from tests.service.api_fixtures import (
    Api,
    add_dataset,
    error_fields,
    problem,
    stack,
)

FIELD_KEYS = {
    "name", "type", "default", "min", "max", "min_exclusive", "max_exclusive", "choices",
    "nullable", "null_means", "special", "unit", "help", "advanced",
}  # fmt: skip


def test_params_is_public_and_has_the_agreed_shape(api: Api) -> None:
    resp = api.client.get("/v1/params")  # no API key: it describes the service, not data
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"default_preset", "presets", "fields"}
    assert body["default_preset"] == DEFAULT_PRESET == "adaptive"
    assert list(body["presets"]) == ["reference", "adaptive"]
    names = [f["name"] for f in body["fields"]]
    assert names == [p.name for p in PRESET_PARAMS] and "mode" not in names
    for f in body["fields"]:
        assert set(f) == FIELD_KEYS, f
        assert f["type"] in {"float", "int", "bool", "choice", "string"}
        assert isinstance(f["help"], str) and f["help"]
        if f["type"] == "float":  # every float is bounded on both sides
            assert f["min"] is not None and f["max"] is not None, f["name"]
    # Each preset's values are complete and resolve to what a job with that preset stores.
    for name, values in body["presets"].items():
        assert set(values) == set(names)
        assert SaftParams.from_dict(values) == SaftParams.preset(name)


def test_params_describe_the_special_values(api: Api) -> None:
    fields = {f["name"]: f for f in api.client.get("/v1/params").json()["fields"]}
    lr = fields["lr"]
    assert (lr["type"], lr["min"], lr["max"], lr["min_exclusive"]) == ("float", 0, 1e-3, True)
    assert "optimiser" in lr["help"] and lr["default"] == PRESETS[DEFAULT_PRESET]["lr"]
    assert fields["sigma"]["special"] == ["auto"] and fields["sigma"]["unit"] == "LR px"
    wpt = fields["windows_per_tile"]
    assert wpt["nullable"] and wpt["special"] == ["auto"] and "every frame" in wpt["null_means"]
    assert fields["iterations"]["nullable"] and fields["iterations"]["default"] is None
    bg = fields["background"]
    assert bg["type"] == "choice" and bg["choices"] == ["fit", "mean", "map", "structure"]
    assert fields["ema"]["max_exclusive"] and fields["early_stop"]["type"] == "bool"
    presets = api.client.get("/v1/params").json()["presets"]
    assert presets["adaptive"] == PRESETS["adaptive"] and presets["adaptive"]["lr"] == 1e-3


@pytest.mark.parametrize(
    ("name", "value"),
    [(p.name, 1e308) for p in PRESET_PARAMS if p.kind is float]
    + [(p.name, p.max + 1) for p in PRESET_PARAMS if p.kind is int and p.max is not None]
    + [(p.name, p.min - 1) for p in PRESET_PARAMS if p.kind is int and p.min is not None],
)
def test_every_bound_of_the_spec_is_a_422_naming_the_field(api: Api, name: str, value: Any) -> None:
    user = api.user()
    lr = add_dataset(api, user, stack(6, 32, 32))
    body = {"lr_dataset": lr, "params": {name: value}}
    resp = api.client.post("/v1/jobs", headers=user.headers, json=body)
    assert error_fields(problem(resp, 422)) == [f"params.{name}"]
