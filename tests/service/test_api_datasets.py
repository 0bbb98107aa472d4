"""POST/GET/DELETE /v1/datasets: streamed upload, header-first validation, atomic publish."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.service.api_fixtures import (
    Api,
    error_fields,
    files_under,
    problem,
    stack,
    tiff_bytes,
    upload_dataset,
)


def test_upload_happy_path(any_api: Api) -> None:
    user = any_api.user()
    data = stack(6, 32, 40, np.uint16)
    raw = tiff_bytes(data, pixel_size=0.107)
    resp = upload_dataset(any_api, user, raw, filename="../../etc/cell 1.tif")
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert resp.headers["location"] == f"/v1/datasets/{ds['id']}" == ds["url"]
    assert ds["shape"] == [6, 32, 40] and ds["dtype"] == "uint16"
    assert ds["pixel_size"] == pytest.approx(0.107, rel=1e-5)  # older tifffile: coarser rationals
    assert ds["sha256"] == hashlib.sha256(raw).hexdigest() and ds["bytes"] == len(raw)
    assert ds["filename"] == "cell 1.tif"  # no directories from the client
    stored = any_api.data_dir / "datasets" / f"{ds['id']}.tif"
    assert stored.read_bytes() == raw
    assert files_under(any_api.data_dir) == [stored]  # no temp file left behind
    got = any_api.client.get(f"/v1/datasets/{ds['id']}", headers=user.headers).json()
    assert got == ds
    listed = any_api.client.get("/v1/datasets", headers=user.headers).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == ds["id"]
    down = any_api.client.get(ds["download_url"], headers=user.headers)
    assert down.status_code == 200 and down.content == raw
    assert down.headers["content-type"] == "image/tiff"


def test_2d_image_is_one_frame_and_float_without_calibration(api: Api) -> None:
    user = api.user()
    img = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    ds = upload_dataset(api, user, tiff_bytes(img, pixel_size=None)).json()
    assert ds["shape"] == [1, 128, 128] and ds["dtype"] == "float32"
    assert ds["pixel_size"] is None


def _nothing_left(api: Api) -> None:
    assert files_under(api.data_dir) == []
    user = api.user()
    assert api.client.get("/v1/datasets", headers=user.headers).json()["total"] == 0


def _small_limit_client(api: Api, limit: int, **overrides: Any) -> TestClient:
    from api.main import create_app

    settings = api.env.settings.model_copy(update={"max_upload_bytes": limit, **overrides})
    return TestClient(create_app(settings))


def test_too_large_is_413_and_leaves_nothing(api: Api) -> None:
    user = api.user()
    raw = tiff_bytes(stack(10, 64, 64))  # ~160 kB
    with _small_limit_client(api, 50_000) as client:
        resp = client.post("/v1/datasets", headers=user.headers, files={"file": ("big.tif", raw)})
        body = problem(resp, 413)
        assert "50000" in body["detail"]
        # Without Content-Length (chunked), the limit still stops the stream part-way.
        boundary = "XyZ123"

        def chunks() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="big.tif"\r\nContent-Type: image/tiff\r\n\r\n'
            ).encode()
            for i in range(0, len(raw), 8192):
                yield raw[i : i + 8192]
            yield f"\r\n--{boundary}--\r\n".encode()

        resp = client.post(
            "/v1/datasets",
            headers={**user.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            content=chunks(),
        )
        problem(resp, 413)
    _nothing_left(api)


@pytest.mark.parametrize(
    "name,content,needle",
    [
        ("text", b"hello, this is not a TIFF at all" * 10, "not a readable TIFF"),
        ("empty", b"", "empty"),
        ("4d", tiff_bytes(np.zeros((3, 2, 32, 32), np.float32)), "more than one stack dimension"),
        ("nan", None, "NaN"),
        ("inf", None, "infinite"),
        ("rgb", tiff_bytes(np.zeros((32, 32, 3), np.uint8), photometric="rgb"), "RGB"),
        ("tiny", tiff_bytes(stack(3, 8, 8)), "at least"),
        ("truncated", None, "truncated"),
        ("float64-overflow", None, "too large"),
    ],
)
def test_bad_stacks_are_422_and_leave_nothing(
    api: Api, name: str, content: bytes | None, needle: str
) -> None:
    if name in ("nan", "inf"):
        data = stack(4, 32, 32)
        data[2, 5, 5] = np.nan if name == "nan" else np.inf
        content = tiff_bytes(data)
    elif name == "truncated":
        content = tiff_bytes(stack(4, 64, 64))[:-5000]
    elif name == "float64-overflow":
        data = stack(2, 32, 32).astype(np.float64)
        data[1, 0, 0] = 1e300
        content = tiff_bytes(data)
    user = api.user()
    resp = upload_dataset(api, user, content, filename=f"{name}.tif")
    body = problem(resp, 422)
    assert error_fields(body) == ["file"]
    assert needle in body["detail"], body["detail"]
    assert ".upload" not in body["detail"]  # the client's name, never the temp file's
    _nothing_left(api)


def test_stack_limits_are_checked_from_the_header(api: Api) -> None:
    user = api.user()
    with _small_limit_client(api, 10**9, max_frames=3, max_pixels_per_frame=10**6) as client:
        resp = client.post(
            "/v1/datasets",
            headers=user.headers,
            files={"file": ("long.tif", tiff_bytes(stack(4, 16, 16)))},
        )
        assert "at most 3" in problem(resp, 422)["detail"]
    with _small_limit_client(api, 10**9, max_pixels_per_frame=1000) as client:
        resp = client.post(
            "/v1/datasets",
            headers=user.headers,
            files={"file": ("wide.tif", tiff_bytes(stack(1, 32, 64)))},
        )
        assert "pixels per frame" in problem(resp, 422)["detail"]
    _nothing_left(api)


def test_request_shape_errors(api: Api) -> None:
    user = api.user()
    c = api.client
    problem(c.post("/v1/datasets", headers=user.headers, json={"file": "x"}), 415)
    resp = c.post("/v1/datasets", headers=user.headers, data={"other": "1"})
    problem(resp, 415)  # urlencoded form
    raw = tiff_bytes(stack())
    resp = c.post("/v1/datasets", headers=user.headers, files={"data": ("a.tif", raw)})
    assert error_fields(problem(resp, 422)) == ["data"]
    resp = c.post(
        "/v1/datasets", headers=user.headers, files={"file": ("a.tif", raw)}, data={"x": "1"}
    )
    assert error_fields(problem(resp, 422)) == ["x"]
    resp = c.post(
        "/v1/datasets",
        headers={**user.headers, "Content-Type": "multipart/form-data; boundary=abc"},
        content=b'--abc\r\nContent-Disposition: form-data; name="file"\r\n\r\nxx',
    )
    problem(resp, 400)
    _nothing_left(api)


def _post_multipart(api: Api, body: str, boundary: str = "b0undary") -> Any:
    return api.client.post(
        "/v1/datasets",
        headers={**api.user().headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body.encode(),
    )


def test_unexpected_field_without_file_is_422_on_that_field(api: Api) -> None:
    body = '--b0undary\r\nContent-Disposition: form-data; name="kind"\r\n\r\nsr\r\n--b0undary--\r\n'
    assert error_fields(problem(_post_multipart(api, body), 422)) == ["kind"]


def test_missing_file_field_is_422(api: Api) -> None:
    """A well-formed multipart body with no part at all: the error names field ``file``."""
    body = problem(_post_multipart(api, "--b0undary--\r\n"), 422)
    assert error_fields(body) == ["file"]
    assert "multipart form field 'file'" in body["detail"] + str(body.get("errors"))
    _nothing_left(api)


def test_delete(api: Api) -> None:
    user = api.user()
    c = api.client
    a = upload_dataset(api, user, tiff_bytes(stack())).json()
    b = upload_dataset(api, user, tiff_bytes(stack(seed=2))).json()
    assert c.post("/v1/jobs", headers=user.headers, json={"lr_dataset": b["id"]}).status_code == 202
    assert c.delete(f"/v1/datasets/{a['id']}", headers=user.headers).status_code == 204
    assert not (api.data_dir / "datasets" / f"{a['id']}.tif").exists()
    problem(c.get(f"/v1/datasets/{a['id']}", headers=user.headers), 404)
    body = problem(c.delete(f"/v1/datasets/{b['id']}", headers=user.headers), 409)
    assert "job" in body["detail"]
    assert (api.data_dir / "datasets" / f"{b['id']}.tif").exists()


def test_pagination(api: Api) -> None:
    user = api.user()
    ids = [upload_dataset(api, user, tiff_bytes(stack(seed=i))).json()["id"] for i in range(3)]
    page = api.client.get("/v1/datasets?limit=2&offset=1", headers=user.headers).json()
    assert page["total"] == 3 and [d["id"] for d in page["items"]] == ids[::-1][1:]
    assert page["next"] is None


def test_upload_that_cannot_fit_on_disk_is_507(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import api.uploads as uploads

    real = shutil.disk_usage

    def almost_full(path: object) -> object:
        usage = real(path)  # type: ignore[arg-type]
        return usage._replace(free=uploads.FREE_SPACE_MARGIN + 1000)

    monkeypatch.setattr(uploads.shutil, "disk_usage", almost_full)
    user = api.user()
    body = problem(upload_dataset(api, user, tiff_bytes(stack())), 507)
    assert "storage" in body["detail"]
    _nothing_left(api)
