"""POST/GET /v1/jobs: validation naming the field, idempotency, pagination, cancel, enqueue."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.service.api_fixtures import (
    Api,
    ApiUser,
    add_dataset,
    add_model,
    error_fields,
    problem,
    queued_ids,
    stack,
)


@pytest.fixture
def user(api: Api) -> ApiUser:
    return api.user()


@pytest.fixture
def lr(api: Api, user: ApiUser) -> str:
    return add_dataset(api, user, stack(6, 32, 32))


def submit(api: Api, user: ApiUser, body: dict[str, Any], **headers: str) -> Any:
    return api.client.post("/v1/jobs", headers={**user.headers, **headers}, json=body)


def test_submit_returns_202_queued_with_location_and_sends_a_message(
    any_api: Api,
) -> None:
    user = any_api.user()
    lr = add_dataset(any_api, user, stack())
    edge = add_dataset(any_api, user, stack(seed=1))
    body = {
        "lr_dataset": lr,
        "edge_dataset": edge,
        "params": {"iterations": 2, "lr": 1e-4, "sigma": "auto", "ksize": 7, "seed": 3},
    }
    resp = submit(any_api, user, body)
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued" and job["progress"] == 0 and job["iterations_done"] == 0
    assert job["mode"] == "saft" and job["sr_model"] == "default"
    assert job["params"]["iterations"] == 2 and job["params"]["sigma"] == "auto"
    assert job["params"]["ksize"] == 7 and job["params"]["continuity_level"] == 1.0
    assert job["iterations_total"] == 2
    assert job["edge_dataset"] == edge and job["smlm_dataset"] is None
    assert job["id"] in queued_ids(any_api.env)
    got = any_api.client.get(resp.headers["location"], headers=user.headers)
    assert got.status_code == 200 and got.json()["id"] == job["id"]


def test_defaults_are_frozen_into_the_job(api: Api, user: ApiUser, lr: str) -> None:
    job = submit(api, user, {"lr_dataset": lr}).json()
    from saft_core.params import SaftParams

    assert job["params"] == SaftParams().to_dict()
    smlm = add_dataset(api, user, stack(1, 128, 128))
    wsf = submit(api, user, {"lr_dataset": lr, "mode": "wsf", "smlm_dataset": smlm}).json()
    assert wsf["params"]["iterations"] == 3 and wsf["mode"] == "wsf"


def test_presets_resolve_into_the_stored_params(api: Api, user: ApiUser, lr: str) -> None:
    from saft_core.params import DEFAULT_PRESET, PRESETS, SaftParams

    job = submit(api, user, {"lr_dataset": lr, "params": {"preset": "adaptive", "lr": 5e-4}})
    assert job.status_code == 202, job.text
    p = job.json()["params"]
    assert p == SaftParams.preset("adaptive", lr=5e-4).to_dict()
    assert "preset" not in p  # the resolved values are the record, not the name
    # The explicit value wins; every other value is the preset's.
    assert p["lr"] == 5e-4 and p["ema"] == 0.95 and p["warmup"] == 30
    assert p["tile"] == 32 and p["windows_per_tile"] == 4 and p["background"] == "map"
    assert p["consistency_level"] == 0.1 and p["haze_level"] == 0.3
    assert p["iterations"] == 5 and p["sparse_level"] == 1.0 and p["window"] == 5
    got = api.client.get(f"/v1/jobs/{job.json()['id']}", headers=user.headers).json()
    assert got["params"] == p

    # "reference" is the authors' loop; no preset at all is DEFAULT_PRESET (the dataclass).
    ref = submit(api, user, {"lr_dataset": lr, "params": {"preset": "reference"}}).json()
    assert ref["params"] == SaftParams.preset("reference").to_dict()
    assert ref["params"]["lr"] == 1e-5 and ref["params"]["background"] == "mean"
    plain = submit(api, user, {"lr_dataset": lr, "params": {}}).json()
    assert plain["params"] == SaftParams().to_dict() == SaftParams.preset(DEFAULT_PRESET).to_dict()
    # The preset and mode combine: wsf keeps its own iteration default.
    smlm = add_dataset(api, user, stack(1, 128, 128))
    wsf = submit(
        api,
        user,
        {"lr_dataset": lr, "mode": "wsf", "smlm_dataset": smlm, "params": {"preset": "adaptive"}},
    ).json()
    assert wsf["params"]["iterations"] == 3 and wsf["params"]["ema"] == 0.95
    # The API offers exactly the presets the science core has.
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["ParamsIn"]
    enum = schema["properties"]["preset"]["anyOf"][0]["enum"]
    assert enum == list(PRESETS)


def test_new_params_are_accepted_without_a_preset(api: Api, user: ApiUser, lr: str) -> None:
    params = {
        "background": "mean",
        "ema": 0.5,
        "warmup": 7,
        "haze_level": 2,
        "tile": 16,
        "windows_per_tile": "auto",
    }
    job = submit(api, user, {"lr_dataset": lr, "params": params})
    assert job.status_code == 202, job.text
    p = job.json()["params"]
    assert p["background"] == "mean" and p["ema"] == 0.5 and p["warmup"] == 7
    assert p["haze_level"] == 2 and p["tile"] == 16
    assert p["windows_per_tile"] is None  # "auto": enough windows to visit every frame
    from saft_core.params import DEFAULT_PRESET, PRESETS

    default = PRESETS[DEFAULT_PRESET]  # what no preset means
    assert p["lr"] == default["lr"] and p["consistency_level"] == default["consistency_level"]
    wpt = submit(api, user, {"lr_dataset": lr, "params": {"windows_per_tile": 3}}).json()
    assert wpt["params"]["windows_per_tile"] == 3


def test_a_preset_and_a_bad_reference_are_reported_together(api: Api, user: ApiUser) -> None:
    body = {"lr_dataset": "x", "params": {"preset": "adaptive", "warmup": -5}}
    assert set(error_fields(problem(submit(api, user, body), 422))) == {
        "lr_dataset",
        "params.warmup",
    }


BAD_PARAMS = [
    ({"ksize": 4}, "params.ksize"),
    ({"ksize": 5.0}, "params.ksize"),
    ({"lr": 2e-3}, "params.lr"),
    ({"lr": 0}, "params.lr"),
    ({"lr": "1e-5"}, "params.lr"),
    ({"iterations": 0}, "params.iterations"),
    ({"iterations": 51}, "params.iterations"),
    ({"iterations": True}, "params.iterations"),
    ({"sigma": 0}, "params.sigma"),
    ({"sigma": -1.5}, "params.sigma"),
    ({"sigma": "big"}, "params.sigma"),
    ({"continuity_level": -1}, "params.continuity_level"),
    ({"sparse_level": 101}, "params.sparse_level"),
    ({"consistency_level": "x"}, "params.consistency_level"),
    ({"seed": -1}, "params.seed"),
    ({"early_stop": "yes"}, "params.early_stop"),
    ({"window": 4}, "params.window"),
    ({"tile": 8}, "params.tile"),
    ({"bogus": 1}, "params.bogus"),
    ({"mode": "wsf"}, "params.mode"),
    ({"preset": "fast"}, "params.preset"),
    ({"preset": 1}, "params.preset"),
    ({"ema": 1.5}, "params.ema"),
    ({"ema": 1}, "params.ema"),
    ({"ema": -0.1}, "params.ema"),
    ({"ema": "0.9"}, "params.ema"),
    ({"warmup": -1}, "params.warmup"),
    ({"warmup": 10_001}, "params.warmup"),
    ({"warmup": 3.0}, "params.warmup"),
    ({"haze_level": 101}, "params.haze_level"),
    ({"background": "median"}, "params.background"),
    ({"windows_per_tile": 0}, "params.windows_per_tile"),
    ({"windows_per_tile": 101}, "params.windows_per_tile"),
    ({"windows_per_tile": "many"}, "params.windows_per_tile"),
    ({"windows_per_tile": 2.0}, "params.windows_per_tile"),
    # A preset does not excuse a bad explicit value, and a bad value is named with a preset.
    ({"preset": "adaptive", "ema": 1.0}, "params.ema"),
    ({"preset": "adaptive", "lr": 2e-3}, "params.lr"),
    ({"preset": "adaptive", "tile": 8}, "params.tile"),
]


@pytest.mark.parametrize("params,field", BAD_PARAMS, ids=[f for _, f in BAD_PARAMS])
def test_each_invalid_param_is_422_naming_the_field(
    api: Api, user: ApiUser, lr: str, params: dict[str, Any], field: str
) -> None:
    body = problem(submit(api, user, {"lr_dataset": lr, "params": params}), 422)
    assert field in error_fields(body), body
    assert body["type"].endswith("validation-error")
    assert api.client.get("/v1/jobs", headers=user.headers).json()["total"] == 0


def test_non_finite_params_are_422(api: Api, user: ApiUser, lr: str) -> None:
    raw = '{"lr_dataset": "' + lr + '", "params": {"lr": NaN}}'
    resp = api.client.post(
        "/v1/jobs",
        headers={**user.headers, "Content-Type": "application/json"},
        content=raw,
    )
    assert error_fields(problem(resp, 422)) == ["params.lr"]


def test_reference_and_shape_errors_name_the_field(api: Api, user: ApiUser, lr: str) -> None:
    small = add_dataset(api, user, stack(6, 16, 16))
    smlm = add_dataset(api, user, stack(1, 128, 128))
    sr = add_model(api, user, "sr")
    den = add_model(api, user, "den")
    cases = [
        ({"lr_dataset": "nope"}, "lr_dataset"),
        ({"lr_dataset": lr, "edge_dataset": small}, "edge_dataset"),
        ({"lr_dataset": lr, "edge_dataset": "missing"}, "edge_dataset"),
        ({"lr_dataset": lr, "mode": "wsf"}, "smlm_dataset"),
        ({"lr_dataset": lr, "mode": "wsf", "smlm_dataset": lr}, "smlm_dataset"),
        ({"lr_dataset": small, "mode": "wsf", "smlm_dataset": smlm}, "smlm_dataset"),
        ({"lr_dataset": lr, "smlm_dataset": smlm}, "smlm_dataset"),
        ({"lr_dataset": lr, "mode": "other"}, "mode"),
        ({"lr_dataset": lr, "sr_model": "missing"}, "sr_model"),
        ({"lr_dataset": lr, "sr_model": den}, "sr_model"),
        ({"lr_dataset": lr, "den_model": sr}, "den_model"),
        ({"lr_dataset": lr, "extra": 1}, "extra"),
        ({}, "lr_dataset"),
    ]
    for body, field in cases:
        resp = submit(api, user, body)
        assert field in error_fields(problem(resp, 422)), (body, resp.text)
    ok = submit(api, user, {"lr_dataset": lr, "sr_model": sr, "den_model": den})
    assert ok.status_code == 202, ok.text
    wsf = submit(api, user, {"lr_dataset": lr, "mode": "wsf", "smlm_dataset": smlm})
    assert wsf.status_code == 202, wsf.text


def test_several_errors_are_reported_together(api: Api, user: ApiUser) -> None:
    body = problem(
        submit(api, user, {"lr_dataset": "x", "sr_model": "y", "params": {"ksize": 2}}), 422
    )
    assert set(error_fields(body)) == {"lr_dataset", "sr_model", "params.ksize"}


def test_smlm_grid_follows_the_sr_model_scale(api: Api, user: ApiUser, lr: str) -> None:
    sr8 = add_model(api, user, "sr", {"scale": 8})
    smlm4 = add_dataset(api, user, np.ones((128, 128), np.float32))
    smlm8 = add_dataset(api, user, np.ones((256, 256), np.float32))
    body = {"lr_dataset": lr, "mode": "wsf", "sr_model": sr8}
    problem(submit(api, user, {**body, "smlm_dataset": smlm4}), 422)
    assert submit(api, user, {**body, "smlm_dataset": smlm8}).status_code == 202


def test_idempotency_key_returns_the_same_job(any_api: Api) -> None:
    user = any_api.user()
    lr = add_dataset(any_api, user, stack())
    body = {"lr_dataset": lr, "params": {"iterations": 2}}
    first = submit(any_api, user, body, **{"Idempotency-Key": "k-1"})
    again = submit(any_api, user, body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    # The same request spelled differently (defaults written out) is the same request.
    same = submit(
        any_api,
        user,
        {**body, "params": {"iterations": 2, "lr": 1e-3}, "edge_dataset": None},
        **{"Idempotency-Key": "k-1"},
    )
    assert same.json()["id"] == first.json()["id"]
    # A preset is compared by the values it resolves to: written out, it is the same request;
    # the same preset with another explicit value is a different one.
    adaptive = {"lr_dataset": lr, "params": {"preset": "adaptive", "iterations": 2}}
    a1 = submit(any_api, user, adaptive, **{"Idempotency-Key": "k-adaptive"})
    from saft_core.params import PRESETS

    spelled = {"lr_dataset": lr, "params": {**PRESETS["adaptive"], "iterations": 2}}
    a2 = submit(any_api, user, spelled, **{"Idempotency-Key": "k-adaptive"})
    assert a1.status_code == a2.status_code == 202 and a1.json()["id"] == a2.json()["id"]
    changed = {"lr_dataset": lr, "params": {"preset": "adaptive", "iterations": 2, "ema": 0.9}}
    problem(submit(any_api, user, changed, **{"Idempotency-Key": "k-adaptive"}), 409)
    # Same key, different body: a conflict, no new job.
    body409 = problem(
        submit(any_api, user, {**body, "params": {"iterations": 3}}, **{"Idempotency-Key": "k-1"}),
        409,
    )
    assert "Idempotency-Key" in body409["detail"]
    assert any_api.client.get("/v1/jobs", headers=user.headers).json()["total"] == 2
    # Keys are per user: another user's identical key makes their own job.
    other = any_api.user()
    lr2 = add_dataset(any_api, other, stack())
    theirs = submit(any_api, other, {"lr_dataset": lr2}, **{"Idempotency-Key": "k-1"})
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    # No key: a new job each time.
    a, b = submit(any_api, user, body), submit(any_api, user, body)
    assert a.json()["id"] != b.json()["id"]


def test_idempotency_key_too_long_is_422(api: Api, user: ApiUser, lr: str) -> None:
    resp = submit(api, user, {"lr_dataset": lr}, **{"Idempotency-Key": "x" * 256})
    assert "Idempotency-Key" in error_fields(problem(resp, 422))


def test_pagination_and_state_filter(any_api: Api) -> None:
    user = any_api.user()
    lr = add_dataset(any_api, user, stack())
    ids = [submit(any_api, user, {"lr_dataset": lr}).json()["id"] for _ in range(5)]
    c = any_api.client
    page1 = c.get("/v1/jobs?limit=2", headers=user.headers).json()
    assert page1["total"] == 5 and page1["limit"] == 2 and page1["offset"] == 0
    assert [j["id"] for j in page1["items"]] == ids[::-1][:2]  # newest first
    seen = [j["id"] for j in page1["items"]]
    nxt = page1["next"]
    while nxt:
        page = c.get(nxt, headers=user.headers).json()
        seen += [j["id"] for j in page["items"]]
        nxt = page["next"]
    assert seen == ids[::-1]
    c.post(f"/v1/jobs/{ids[0]}/cancel", headers=user.headers)
    cancelled = c.get("/v1/jobs?state=cancelled", headers=user.headers).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]
    queued = c.get("/v1/jobs", params={"state": "queued", "limit": 10}, headers=user.headers)
    assert queued.json()["total"] == 4 and queued.json()["next"] is None
    for bad in ("limit=0", "limit=101", "offset=-1", "state=done"):
        body = problem(c.get(f"/v1/jobs?{bad}", headers=user.headers), 422)
        assert error_fields(body) == [bad.split("=")[0]]


def test_cancel_a_queued_job_is_immediate_and_idempotent(any_api: Api) -> None:
    user = any_api.user()
    lr = add_dataset(any_api, user, stack())
    job = submit(any_api, user, {"lr_dataset": lr}).json()
    c = any_api.client
    r1 = c.post(f"/v1/jobs/{job['id']}/cancel", headers=user.headers)
    assert r1.status_code == 200 and r1.json()["state"] == "cancelled"
    assert r1.json()["finished_at"] is not None and r1.json()["cancel_requested"] is True
    r2 = c.post(f"/v1/jobs/{job['id']}/cancel", headers=user.headers)
    assert r2.status_code == 200 and r2.json()["state"] == "cancelled"


def test_cancel_running_is_202_and_finished_is_409(api: Api, user: ApiUser, lr: str) -> None:
    from persistence.db import session_scope
    from persistence.jobs import claim_job, finish_job

    running = submit(api, user, {"lr_dataset": lr}).json()["id"]
    done = submit(api, user, {"lr_dataset": lr}).json()["id"]
    with session_scope() as s:
        assert claim_job(s, running, "w1") and claim_job(s, done, "w2")
    with session_scope() as s:
        assert finish_job(s, done, "succeeded", worker="w2", recommended_iteration=1)
    r = api.client.post(f"/v1/jobs/{running}/cancel", headers=user.headers)
    assert r.status_code == 202 and r.json()["state"] == "running"
    assert r.json()["cancel_requested"] is True
    body = problem(api.client.post(f"/v1/jobs/{done}/cancel", headers=user.headers), 409)
    assert "succeeded" in body["detail"]


def test_iterations_list_and_reconstruction_requests(api: Api, user: ApiUser, lr: str) -> None:
    from persistence.db import session_scope
    from persistence.jobs import claim_job, record_iteration

    job = submit(api, user, {"lr_dataset": lr, "params": {"iterations": 2}}).json()["id"]
    with session_scope() as s:
        assert claim_job(s, job, "w")
    with session_scope() as s:
        for k in (0, 1):
            assert record_iteration(
                s,
                job,
                "w",
                iteration=k,
                losses={} if k == 0 else {"total": 0.5, "degradation": 0.1},
                rse=1.0,
                rsp=0.9,
                resolution=3.2,
                seconds=0.5,
                checkpoint_path=f"jobs/{job}/iteration_{k:02d}.pth",
                preview_png_path=f"jobs/{job}/previews/iteration_{k:02d}.png",
                preview_tif_path=f"jobs/{job}/previews/iteration_{k:02d}.tif",
                progress=k / 2,
                sigma_used=1.1,
            )
    c = api.client
    its = c.get(f"/v1/jobs/{job}/iterations", headers=user.headers).json()
    assert [i["iteration"] for i in its["items"]] == [0, 1]
    one = its["items"][1]
    assert one["losses"] == {"total": 0.5, "degradation": 0.1} and one["rse"] == 1.0
    base = f"/v1/jobs/{job}/iterations/1"
    assert one["preview_url"] == f"{base}/preview.png"
    assert one["checkpoint_url"] == f"{base}/checkpoint"
    assert c.get(f"/v1/jobs/{job}", headers=user.headers).json()["iterations_done"] == 1

    for bad in ({"iteration": 2}, {"iteration": -1}, {"iteration": "1"}, {}):
        resp = c.post(f"/v1/jobs/{job}/reconstructions", headers=user.headers, json=bad)
        assert error_fields(problem(resp, 422)) == ["iteration"], bad
    resp = c.post(f"/v1/jobs/{job}/reconstructions", headers=user.headers, json={"iteration": 1})
    assert resp.status_code == 202, resp.text
    rec = resp.json()
    assert rec["state"] == "queued" and rec["iteration"] == 1 and rec["tiff_url"] is None
    assert resp.headers["location"] == f"/v1/reconstructions/{rec['id']}"
    assert rec["id"] in queued_ids(api.env)
    got = c.get(f"/v1/reconstructions/{rec['id']}", headers=user.headers).json()
    assert got["state"] == "queued"
    listed = c.get(f"/v1/jobs/{job}/reconstructions", headers=user.headers).json()
    assert [r["id"] for r in listed["items"]] == [rec["id"]]
    body = problem(c.get(f"/v1/reconstructions/{rec['id']}/tiff", headers=user.headers), 409)
    assert "queued" in body["detail"]
    cancel = c.post(f"/v1/reconstructions/{rec['id']}/cancel", headers=user.headers)
    assert cancel.status_code == 200 and cancel.json()["state"] == "cancelled"


def test_malformed_json_and_missing_body_are_422_naming_body(api: Api, user: ApiUser) -> None:
    h = {**user.headers, "Content-Type": "application/json"}
    body = problem(api.client.post("/v1/jobs", headers=h, content=b'{"lr_dataset": '), 422)
    assert error_fields(body) == ["body"] and "invalid JSON" in body["detail"]
    body = problem(api.client.post("/v1/jobs", headers=h), 422)
    assert error_fields(body) == ["body"]


def test_submit_while_the_broker_is_down_still_queues_the_job(api: Api, user: ApiUser, lr: str):
    """The row is committed first; the reconciler sends the message once the broker is back."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    settings = api.env.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings)) as client:
        resp = client.post("/v1/jobs", headers=user.headers, json={"lr_dataset": lr})
    assert resp.status_code == 202, resp.text
    job = api.client.get(resp.headers["location"], headers=user.headers).json()
    assert job["state"] == "queued"
    assert job["id"] not in queued_ids(api.env)
