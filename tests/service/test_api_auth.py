"""Authentication, ownership (404 for others' ids), problem+json and the health probes."""

from __future__ import annotations

import sys

import pytest
from fastapi.testclient import TestClient

from tests.service.api_fixtures import (
    Api,
    add_dataset,
    problem,
    stack,
)

PROTECTED = [
    ("GET", "/v1/datasets"),
    ("POST", "/v1/datasets"),
    ("GET", "/v1/models"),
    ("POST", "/v1/models"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/abc"),
    ("GET", "/v1/jobs/abc/events"),
    ("GET", "/v1/reconstructions/abc/tiff"),
]


@pytest.mark.parametrize("method,path", PROTECTED)
def test_missing_key_is_401_with_www_authenticate(api: Api, method: str, path: str) -> None:
    resp = api.client.request(method, path)
    body = problem(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization" in body["detail"]
    assert body["instance"] == path


@pytest.mark.parametrize(
    "header", ["Bearer wrong-key", "Basic dXNlcjpwYXNz", "Bearer", "bearer    "]
)
def test_bad_key_is_401(api: Api, header: str) -> None:
    resp = api.client.get("/v1/jobs", headers={"Authorization": header})
    problem(resp, 401)
    assert "Bearer" in resp.headers["www-authenticate"]


def test_unauthenticated_upload_is_refused_before_the_body_is_read(api: Api) -> None:
    resp = api.client.post("/v1/datasets", files={"file": ("a.tif", b"x" * 1000)})
    problem(resp, 401)
    tmp = api.data_dir / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


def test_other_users_ids_are_404(any_api: Api) -> None:
    alice, bob = any_api.user(), any_api.user()
    ds = add_dataset(any_api, alice, stack())
    resp = any_api.client.post("/v1/jobs", headers=alice.headers, json={"lr_dataset": ds})
    assert resp.status_code == 202, resp.text
    job = resp.json()["id"]
    c = any_api.client
    assert c.get(f"/v1/datasets/{ds}", headers=alice.headers).status_code == 200
    for path in (
        f"/v1/datasets/{ds}",
        f"/v1/datasets/{ds}/file",
        f"/v1/jobs/{job}",
        f"/v1/jobs/{job}/iterations",
        f"/v1/jobs/{job}/events",
        f"/v1/jobs/{job}/reconstructions",
        f"/v1/jobs/{job}/iterations/0/checkpoint",
    ):
        body = problem(c.get(path, headers=bob.headers), 404)
        assert "not found" in body["detail"]
    problem(c.post(f"/v1/jobs/{job}/cancel", headers=bob.headers), 404)
    problem(c.delete(f"/v1/datasets/{ds}", headers=bob.headers), 404)
    problem(
        c.post(f"/v1/jobs/{job}/reconstructions", headers=bob.headers, json={"iteration": 0}),
        404,
    )
    # Using someone else's dataset in a job reads as "not found", naming the field.
    body = problem(c.post("/v1/jobs", headers=bob.headers, json={"lr_dataset": ds}), 422)
    assert body["errors"][0]["field"] == "lr_dataset"
    assert c.get("/v1/jobs", headers=bob.headers).json()["total"] == 0
    assert c.get("/v1/datasets", headers=bob.headers).json()["total"] == 0


def test_unknown_route_and_method_are_problems(api: Api) -> None:
    problem(api.client.get("/nope"), 404)
    user = api.user()
    body = problem(api.client.put("/v1/jobs", headers=user.headers), 405)
    assert "PUT" in body["detail"]


def test_unexpected_errors_are_500_problems_without_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.routes.jobs as jobs_routes

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(jobs_routes, "check_job_request", boom)
    user = api.user()
    client = TestClient(api.client.app, raise_server_exceptions=False)
    resp = client.post("/v1/jobs", headers=user.headers, json={"lr_dataset": "x"})
    body = problem(resp, 500)
    assert "secret" not in resp.text and "RuntimeError" not in resp.text
    assert body["type"].endswith("internal-error")


def test_healthz_and_readyz(any_api: Api) -> None:
    assert any_api.client.get("/healthz").json() == {"status": "ok"}
    resp = any_api.client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ready", "database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_down(api: Api) -> None:
    from api.main import create_app

    settings = api.env.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings)) as client:
        body = problem(client.get("/readyz"), 503)
    assert "broker" in body["detail"] and "database" not in body["detail"]


def test_openapi_is_valid_and_documents_problems(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    post = schema["paths"]["/v1/jobs"]["post"]
    assert "application/problem+json" in post["responses"]["422"]["content"]
    upload = schema["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    from openapi_spec_validator import validate

    validate(schema)


def test_the_api_never_imports_torch(api: Api) -> None:
    user = api.user()
    api.client.get("/v1/jobs", headers=user.headers)
    api.client.get("/openapi.json")
    assert "torch" not in sys.modules or _torch_imported_by_tests()


def _torch_imported_by_tests() -> bool:
    """Other tests in this session may import torch themselves; check in a fresh process."""
    import subprocess

    code = (
        "import sys; from fastapi.testclient import TestClient; from api.main import create_app;"
        "c = TestClient(create_app()); c.get('/healthz'); c.get('/openapi.json');"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    return subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
