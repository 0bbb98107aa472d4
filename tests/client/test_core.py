"""The sans-I/O core both clients share: request building, retry decisions, paging, and
that the sync and the async client act the same on the same server answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from saft_client import AsyncSaftClient, NotFoundError, SaftClient, SaftConnectionError
from saft_client._core import USER_AGENT, ClientCore, Pager, RetryPolicy


def test_request_building() -> None:
    core = ClientCore("http://saft.local:9000/saft", "k", timeout=7.0, retries=2)
    req = core.request("POST", "/v1/jobs", json={"a": 1}, headers={"Idempotency-Key": "x"})
    assert str(req.url) == "http://saft.local:9000/saft/v1/jobs"
    assert req.headers["User-Agent"] == USER_AGENT
    assert req.headers["Idempotency-Key"] == "x"
    assert req.extensions["timeout"]["read"] == 7.0
    assert json.loads(req.read()) == {"a": 1}


def test_retry_policy() -> None:
    policy = RetryPolicy(retries=2)
    unavailable = httpx.Response(503, headers={"Retry-After": "4"})
    assert policy.after_response(unavailable, 1, retry=True) == 4.0
    assert policy.after_response(unavailable, 3, retry=True) is None  # retries used up
    assert policy.after_response(unavailable, 1, retry=False) is None  # not safe to repeat
    assert policy.after_response(httpx.Response(500), 1, retry=True) is None
    assert policy.after_error(1, retry=True) == 0.5
    assert policy.after_error(2, retry=True) == 1.0
    assert policy.after_error(3, retry=True) is None
    assert policy.after_error(1, retry=False) is None
    assert policy.after_broken_download(2) == 1.0
    assert policy.after_broken_download(3) is None


def test_pager_follows_next_and_stops_at_the_limit() -> None:
    pager = Pager("/v1/jobs", {"state": "queued", "kind": None}, limit=3, page_limit=100)
    assert pager.query == {"state": "queued", "limit": 3}
    assert pager.take({"items": [1, 2], "next": "/v1/jobs?offset=2"}) == [1, 2]
    assert (pager.url, pager.query) == ("/v1/jobs?offset=2", None)
    assert pager.take({"items": [3, 4], "next": "/v1/jobs?offset=4"}) == [3]
    assert pager.url is None


class _Script:
    """A server answering from a script, recording what it was asked."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _answers() -> list[Any]:
    job = {"id": "j1", "state": "running"}
    problem = {"title": "Not Found", "status": 404, "detail": "no job j2"}
    return [
        httpx.ConnectError("refused"),
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(200, json=job),
        httpx.Response(404, json=problem, headers={"content-type": "application/problem+json"}),
        httpx.ConnectError("refused"),
    ]


def _run_sync(script: _Script) -> list[Any]:
    out: list[Any] = []
    with SaftClient("http://saft.local", "k", transport=httpx.MockTransport(script)) as c:
        out.append(c.get_job("j1").state)
        with pytest.raises(NotFoundError) as err:
            c.get_job("j2")
        out.append(err.value.message)
        with pytest.raises(SaftConnectionError) as err2:
            c.reconstruct("j1", 1)  # a POST that is not repeated
        out.append(str(err2.value))
    return out


def _run_async(script: _Script) -> list[Any]:
    async def main() -> list[Any]:
        out: list[Any] = []
        transport = httpx.MockTransport(script)
        async with AsyncSaftClient("http://saft.local", "k", transport=transport) as c:
            out.append((await c.get_job("j1")).state)
            with pytest.raises(NotFoundError) as err:
                await c.get_job("j2")
            out.append(err.value.message)
            with pytest.raises(SaftConnectionError) as err2:
                await c.reconstruct("j1", 1)
            out.append(str(err2.value))
        return out

    return asyncio.run(main())


def test_sync_and_async_clients_retry_and_map_errors_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("saft_client._core.backoff", lambda attempt: 0.0)
    sync, aio = _Script(_answers()), _Script(_answers())
    assert _run_sync(sync) == _run_async(aio)
    assert sync.seen == aio.seen
    assert sync.seen == [("GET", "/v1/jobs/j1")] * 3 + [
        ("GET", "/v1/jobs/j2"),
        ("POST", "/v1/jobs/j1/reconstructions"),
    ]
