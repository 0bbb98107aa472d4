"""Artifact downloads: content types, Range (206, multi-range, 416), If-Range, HEAD."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from api.ranges import parse_range
from tests.service.api_fixtures import (
    Api,
    ApiUser,
    add_dataset,
    problem,
    stack,
)

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every offset recognisable


@dataclass
class Artifacts:
    user: ApiUser
    job: str
    recon: str


@pytest.fixture
def artifacts(api: Api) -> Artifacts:
    """A job with iteration 1 and a succeeded reconstruction, files written on disk."""
    from persistence.db import session_scope
    from persistence.jobs import (
        claim_job,
        claim_reconstruction,
        create_reconstruction,
        finish_reconstruction,
        record_iteration,
    )
    from persistence.storage import Storage
    from persistence.tables import Job, User

    user = api.user()
    lr = add_dataset(api, user, stack())
    job = api.client.post("/v1/jobs", headers=user.headers, json={"lr_dataset": lr}).json()["id"]
    st = Storage(api.data_dir)
    st.checkpoint_path(job, 1).write_bytes(PAYLOAD)
    st.preview_png_path(job, 1).write_bytes(b"\x89PNG" + PAYLOAD[:100])
    st.preview_tif_path(job, 1).write_bytes(b"II*\x00" + PAYLOAD[:100])
    with session_scope() as s:
        assert claim_job(s, job, "w")
    with session_scope() as s:
        assert record_iteration(
            s,
            job,
            "w",
            iteration=1,
            losses={"total": 1.0},
            rse=None,
            rsp=None,
            resolution=None,
            seconds=1.0,
            checkpoint_path=st.relative(st.checkpoint_path(job, 1)),
            preview_png_path=st.relative(st.preview_png_path(job, 1)),
            preview_tif_path=st.relative(st.preview_tif_path(job, 1)),
            progress=0.5,
            sigma_used=1.1,
        )
    with session_scope() as s:
        owner = s.get_one(User, user.id)
        rec = create_reconstruction(s, owner, s.get_one(Job, job), 1)
        rec_id = rec.id
    tif, mp4 = st.reconstruction_tiff(rec_id), st.reconstruction_mp4(rec_id)
    tif.write_bytes(b"II*\x00" + PAYLOAD)
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42" + PAYLOAD[:500])
    with session_scope() as s:
        assert claim_reconstruction(s, rec_id, "w2")
    with session_scope() as s:
        assert finish_reconstruction(
            s,
            rec_id,
            "succeeded",
            worker="w2",
            tiff_path=st.relative(tif),
            mp4_path=st.relative(mp4),
        )
    return Artifacts(user, job, rec_id)


def test_content_types_and_links(api: Api, artifacts: Artifacts) -> None:
    c, h = api.client, artifacts.user.headers
    it = c.get(f"/v1/jobs/{artifacts.job}/iterations", headers=h).json()["items"][0]
    rec = c.get(f"/v1/reconstructions/{artifacts.recon}", headers=h).json()
    assert rec["state"] == "succeeded"
    cases = [
        (it["checkpoint_url"], "application/octet-stream", "attachment"),
        (it["preview_url"], "image/png", "inline"),
        (it["preview_tif_url"], "image/tiff", "attachment"),
        (rec["tiff_url"], "image/tiff", "attachment"),
        (rec["mp4_url"], "video/mp4", "inline"),
    ]
    for url, ctype, disposition in cases:
        resp = c.get(url, headers=h)
        assert resp.status_code == 200, (url, resp.text)
        assert resp.headers["content-type"] == ctype
        assert resp.headers["accept-ranges"] == "bytes"
        assert resp.headers["content-disposition"].startswith(disposition)
        assert int(resp.headers["content-length"]) == len(resp.content)
    ckpt = c.get(it["checkpoint_url"], headers=h)
    assert ckpt.content == PAYLOAD
    assert 'filename="job-' in ckpt.headers["content-disposition"]


def test_range_requests(api: Api, artifacts: Artifacts) -> None:
    c, h = api.client, artifacts.user.headers
    url = f"/v1/jobs/{artifacts.job}/iterations/1/checkpoint"
    size = len(PAYLOAD)

    def get(rng: str, **extra: str):
        return c.get(url, headers={**h, "Range": rng, **extra})

    r = get("bytes=0-9")
    assert r.status_code == 206 and r.content == PAYLOAD[:10]
    assert r.headers["content-range"] == f"bytes 0-9/{size}"
    assert r.headers["content-length"] == "10"
    r = get("bytes=1000-")
    assert r.status_code == 206 and r.content == PAYLOAD[1000:]
    r = get("bytes=-100")
    assert r.status_code == 206 and r.content == PAYLOAD[-100:]
    r = get(f"bytes=10000-{size + 500}")  # an end past the file is clipped
    assert r.status_code == 206 and r.content == PAYLOAD[10000:]
    assert r.headers["content-range"] == f"bytes 10000-{size - 1}/{size}"
    r = get("bytes=0-1,100-101")
    assert r.status_code == 206
    assert r.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert b"Content-Range: bytes 100-101/" in r.content
    # Unsatisfiable: 416 problem with the size.
    for bad in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        r = get(bad)
        body = problem(r, 416)
        assert r.headers["content-range"] == f"bytes */{size}"
        assert str(size) in body["detail"]
    # Partly satisfiable: the satisfiable part is served.
    r = get(f"bytes=0-3,{size + 5}-")
    assert r.status_code == 206 and r.content == PAYLOAD[:4]
    # Invalid syntax or another unit: the header is ignored (RFC 9110), the whole file sent.
    for ignored in ("bytes=abc", "items=0-5", "bytes=9-3", "bytes", "bytes=--1"):
        r = get(ignored)
        assert r.status_code == 200 and r.content == PAYLOAD, ignored
    # If-Range: ranges only while the validator still matches.
    etag = c.get(url, headers=h).headers["etag"]
    assert get("bytes=0-1", **{"If-Range": etag}).status_code == 206
    r = get("bytes=0-1", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == PAYLOAD


def test_head_sends_headers_only(api: Api, artifacts: Artifacts) -> None:
    r = api.client.head(
        f"/v1/reconstructions/{artifacts.recon}/tiff", headers=artifacts.user.headers
    )
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(len(PAYLOAD) + 4)
    assert r.headers["content-type"] == "image/tiff"


def test_missing_things_are_404(api: Api, artifacts: Artifacts) -> None:
    c, h = api.client, artifacts.user.headers
    problem(c.get(f"/v1/jobs/{artifacts.job}/iterations/7/checkpoint", headers=h), 404)
    problem(c.get(f"/v1/jobs/{artifacts.job}/iterations/-1/preview.png", headers=h), 422)
    (api.data_dir / "jobs" / artifacts.job / "iteration_01.pth").unlink()
    body = problem(c.get(f"/v1/jobs/{artifacts.job}/iterations/1/checkpoint", headers=h), 404)
    assert "no longer on disk" in body["detail"]
    other = api.user()
    problem(c.get(f"/v1/reconstructions/{artifacts.recon}/mp4", headers=other.headers), 404)


@pytest.mark.parametrize(
    "header,size,expected",
    [
        ("bytes=0-0", 10, [(0, 0)]),
        ("bytes=5-", 10, [(5, 9)]),
        ("bytes=-3", 10, [(7, 9)]),
        ("bytes=-30", 10, [(0, 9)]),
        ("bytes=8-20", 10, [(8, 9)]),
        ("bytes=10-", 10, []),
        ("bytes=0-", 0, []),
        ("bytes=-5", 0, []),
        ("bytes= 1-2 , 4-5", 10, [(1, 2), (4, 5)]),
        ("BYTES=1-2", 10, [(1, 2)]),
        ("bytes=2-1", 10, None),
        ("bytes=x-1", 10, None),
        ("bytes=1-2,", 10, None),
        ("pages=1-2", 10, None),
        ("bytes=" + ",".join(["0-1"] * 101), 10, None),
    ],
)
def test_parse_range(header: str, size: int, expected: list[tuple[int, int]] | None) -> None:
    assert parse_range(header, size) == expected
