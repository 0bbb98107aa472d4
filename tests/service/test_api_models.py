"""GET/POST /v1/models: defaults listed, uploads validated by loading in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.api_fixtures import (
    Api,
    ApiUser,
    add_dataset,
    add_model,
    error_fields,
    files_under,
    problem,
    stack,
)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from saft_core.networks import DENConfig, SRConfig, build_den, build_sr, save_checkpoint

    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    sr, den = d / "sr.pth", d / "den.pth"
    save_checkpoint(sr, build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4)), "sr")
    save_checkpoint(den, build_den(DENConfig(base=4, depth=2)), "den")
    bare = d / "bare_sr.pth"
    torch.save(build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4)).state_dict(), bare)
    evil = d / "evil.pth"
    torch.save({"x": Path("/")}, evil)  # a pickled object: weights_only loading refuses it
    return {"sr": sr, "den": den, "bare": bare, "evil": evil}


def upload(api: Api, user: ApiUser, path: Path, kind: str, **fields: str):
    return api.client.post(
        "/v1/models",
        headers=user.headers,
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        data={"kind": kind, **fields},
    )


def test_upload_list_use_and_delete(api: Api, tiny_checkpoints: dict[str, Path]) -> None:
    user = api.user()
    c = api.client
    resp = upload(api, user, tiny_checkpoints["sr"], "sr", name="my tiny SR")
    assert resp.status_code == 201, resp.text
    sr = resp.json()
    assert resp.headers["location"] == f"/v1/models/{sr['id']}"
    assert sr["kind"] == "sr" and sr["name"] == "my tiny SR" and sr["default"] is False
    assert sr["config"]["nf"] == 8 and sr["config"]["scale"] == 4 and sr["parameters"] > 0
    stored = api.data_dir / "models" / f"{sr['id']}.pth"
    assert stored.read_bytes() == tiny_checkpoints["sr"].read_bytes()

    listed = c.get("/v1/models", headers=user.headers).json()
    assert [(m["id"], m["kind"]) for m in listed["items"]] == [
        ("default", "sr"),
        ("default", "den"),
        (sr["id"], "sr"),
    ]
    assert listed["total"] == 3
    defaults = listed["items"][:2]
    assert all(m["default"] and m["parameters"] for m in defaults), defaults
    only_den = c.get("/v1/models?kind=den", headers=user.headers).json()
    assert [m["kind"] for m in only_den["items"]] == ["den"]
    page2 = c.get("/v1/models?limit=2&offset=2", headers=user.headers).json()
    assert [m["id"] for m in page2["items"]] == [sr["id"]] and page2["next"] is None
    page1 = c.get("/v1/models?limit=2", headers=user.headers).json()
    assert page1["next"] is not None and len(page1["items"]) == 2

    lr = add_dataset(api, user, stack())
    job = c.post("/v1/jobs", headers=user.headers, json={"lr_dataset": lr, "sr_model": sr["id"]})
    assert job.status_code == 202, job.text
    problem(c.delete(f"/v1/models/{sr['id']}", headers=user.headers), 409)  # queued job uses it
    c.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=user.headers)
    assert c.delete(f"/v1/models/{sr['id']}", headers=user.headers).status_code == 204
    assert not stored.exists()
    other = api.user()
    assert c.get("/v1/models", headers=other.headers).json()["total"] == 2


def test_bad_model_uploads_are_422_and_leave_nothing(
    api: Api, tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    user = api.user()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a torch file" * 100)
    # Each case: (file, kind, field named, words in the detail)
    cases = [
        (tiny_checkpoints["den"], "sr", "file", "DEN"),
        (garbage, "sr", "file", "garbage.pth"),
        (tiny_checkpoints["evil"], "den", "file", ""),
        (tiny_checkpoints["sr"], "xx", "kind", "kind"),
    ]
    for path, kind, field, words in cases:
        body = problem(upload(api, user, path, kind), 422)
        assert error_fields(body) == [field], body
        assert words in body["detail"], body
        assert "Traceback" not in body["detail"] and ".upload" not in body["detail"]
    resp = api.client.post(
        "/v1/models",
        headers=user.headers,
        files={"file": ("a.pth", tiny_checkpoints["sr"].read_bytes())},
    )
    assert error_fields(problem(resp, 422)) == ["kind"]
    assert files_under(api.data_dir) == []
    # A bare state dict is accepted; its config is inferred from the tensor shapes.
    ok = upload(api, user, tiny_checkpoints["bare"], "sr")
    assert ok.status_code == 201, ok.text
    assert ok.json()["config"]["nf"] == 8 and ok.json()["name"] == "bare_sr.pth"


def test_another_users_model_is_404(api: Api) -> None:
    """An uploaded model is private: its id is unknown to every other user, reads and deletes."""
    owner, other = api.user(), api.user()
    c = api.client
    m_id = add_model(api, owner, "sr")
    assert c.get(f"/v1/models/{m_id}", headers=owner.headers).json()["id"] == m_id
    assert problem(c.get(f"/v1/models/{m_id}", headers=other.headers), 404)["detail"]
    problem(c.delete(f"/v1/models/{m_id}", headers=other.headers), 404)
    assert c.get(f"/v1/models/{m_id}", headers=owner.headers).status_code == 200
    assert m_id not in {m["id"] for m in c.get("/v1/models", headers=other.headers).json()["items"]}
