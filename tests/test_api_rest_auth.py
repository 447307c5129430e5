"""REST authentication: admin tokens write, read tokens read, the rest are turned away."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ADMIN_TOKEN, READ_TOKEN, ApiServer, api_server, problem

from taskqueue.api.auth import hash_token

pytestmark = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])


def _token_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens"
    path.write_text(f"# operators\n{hash_token(READ_TOKEN)} read\n")
    return str(path)


def _secured(
    redis_url: str, tmp_path: Path, **settings: Any
) -> AbstractAsyncContextManager[ApiServer]:
    return api_server(
        redis_url,
        server__tokens=(ADMIN_TOKEN,),
        server__token_file=_token_file(tmp_path),
        **settings,
    )


async def _status(server: ApiServer, http2: bool, token: str | None, method: str, path: str) -> int:
    async with server.client(http2=http2, token=token) as client:
        body = {"type": "echo"} if method == "POST" and path.endswith("tasks") else None
        response = await client.request(method, path, json=body)
        if response.status_code >= 400:
            problem(response)
        return response.status_code


async def test_admin_token_reads_and_writes(redis_url: str, tmp_path: Path, http2: bool) -> None:
    async with _secured(redis_url, tmp_path) as server:
        assert await _status(server, http2, ADMIN_TOKEN, "POST", "/api/v1/tasks") == 201
        assert await _status(server, http2, ADMIN_TOKEN, "GET", "/api/v1/tasks") == 200
        assert await _status(server, http2, ADMIN_TOKEN, "DELETE", "/api/v1/dead-letters") == 200


async def test_read_token_reads_but_may_not_write(
    redis_url: str, tmp_path: Path, http2: bool
) -> None:
    async with _secured(redis_url, tmp_path) as server:
        for path in ("/api/v1/tasks", "/api/v1/workers", "/api/v1/queues", "/api/v1/dead-letters"):
            assert await _status(server, http2, READ_TOKEN, "GET", path) == 200
        async with server.client(http2=http2, token=READ_TOKEN) as client:
            response = await client.post("/api/v1/tasks", json={"type": "echo"})
            assert response.status_code == 403
            assert "insufficient_scope" in response.headers["www-authenticate"]
            assert "only read" in problem(response)["detail"]
        assert (
            await _status(server, http2, READ_TOKEN, "POST", "/api/v1/dead-letters/requeue") == 403
        )
        assert await _status(server, http2, READ_TOKEN, "DELETE", "/api/v1/dead-letters") == 403
        assert (await server.broker.stats()).totals.get("submitted", 0) == 0


async def test_missing_token_is_401_with_a_bearer_challenge(
    redis_url: str, tmp_path: Path, http2: bool
) -> None:
    async with _secured(redis_url, tmp_path) as server, server.client(http2=http2) as client:
        for method, path in (("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks")):
            response = await client.request(method, path, json={"type": "echo"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="taskqueue"'
            assert "bearer token is required" in problem(response)["detail"]


@pytest.mark.parametrize(
    "authorization", ["Bearer wrong", "Basic YWRtaW46YWRtaW4=", "Bearer", f"Bearer {READ_TOKEN}x"]
)
async def test_wrong_token_is_401(
    redis_url: str, tmp_path: Path, http2: bool, authorization: str
) -> None:
    async with (
        _secured(redis_url, tmp_path) as server,
        server.client(http2=http2, headers={"Authorization": authorization}) as client,
    ):
        response = await client.get("/api/v1/tasks")
        assert response.status_code == 401
        assert "invalid_token" in response.headers["www-authenticate"]
        problem(response)


async def test_auth_is_checked_before_the_body(redis_url: str, tmp_path: Path, http2: bool) -> None:
    async with (
        _secured(redis_url, tmp_path) as server,
        server.client(http2=http2, token=READ_TOKEN) as client,
    ):
        response = await client.post("/api/v1/tasks", content=b"not json")
        assert response.status_code == 403


async def test_health_and_openapi_are_open_by_default(
    redis_url: str, tmp_path: Path, http2: bool
) -> None:
    async with _secured(redis_url, tmp_path) as server:
        for path in ("/healthz", "/readyz", "/api/v1/openapi.json"):
            assert await _status(server, http2, None, "GET", path) == 200


async def test_metrics_need_a_read_token_when_tokens_are_set(
    redis_url: str, tmp_path: Path, http2: bool
) -> None:
    async with _secured(redis_url, tmp_path) as server:
        assert await _status(server, http2, None, "GET", "/metrics") == 401
        assert await _status(server, http2, "Bearer wrong", "GET", "/metrics") == 401
        assert await _status(server, http2, READ_TOKEN, "GET", "/metrics") == 200
        assert await _status(server, http2, ADMIN_TOKEN, "GET", "/metrics") == 200


async def test_public_metrics_answer_without_a_token(
    redis_url: str, tmp_path: Path, http2: bool
) -> None:
    async with _secured(redis_url, tmp_path, metrics__public=True) as server:
        async with server.client(http2=http2) as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        assert "taskqueue_api_requests_total" in response.text


async def test_closed_health_endpoints_need_a_read_token(
    redis_url: str, tmp_path: Path, http2: bool
) -> None:
    settings = {"server__open_health_endpoints": False}
    async with _secured(redis_url, tmp_path, **settings) as server:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert await _status(server, http2, None, "GET", path) == 401
            assert await _status(server, http2, READ_TOKEN, "GET", path) == 200
        assert await _status(server, http2, None, "GET", "/api/v1/openapi.json") == 200


async def test_without_tokens_everything_is_allowed_and_the_log_says_so(
    redis_url: str, http2: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "taskqueue.api.service")
    async with api_server(redis_url) as server:
        assert await _status(server, http2, None, "POST", "/api/v1/tasks") == 201
        assert await _status(server, http2, "anything", "GET", "/api/v1/tasks") == 200
    assert any("authentication is OFF" in r.getMessage() for r in caplog.records)
