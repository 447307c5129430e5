"""REST: every class of error is an RFC 9457 problem that says what is wrong (never a 500)."""

from __future__ import annotations

import pytest
import trio
from api_helpers import api_server, problem

pytestmark = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])


async def test_malformed_json_is_400(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks",
            content=b'{"type": "echo",',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400
        body = problem(response)
        assert body["title"] == "Malformed JSON"
        assert "not valid JSON" in body["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_json_is_415(
    redis_url: str, http2: bool, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post("/api/v1/tasks", content=b'{"type":"echo"}', headers=headers)
        assert response.status_code == 415
        assert "application/json" in problem(response)["detail"]


async def test_json_with_a_charset_or_a_json_suffix_is_accepted(
    redis_url: str, http2: bool
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        for content_type in ("application/json; charset=utf-8", "application/vnd.task+json"):
            response = await client.post(
                "/api/v1/tasks", content=b'{"type":"echo"}', headers={"Content-Type": content_type}
            )
            assert response.status_code == 201, response.text


async def test_body_over_max_request_bytes_is_413(redis_url: str, http2: bool) -> None:
    async with (
        api_server(redis_url, server__max_request_bytes=1000) as server,
        server.client(http2=http2) as client,
    ):
        response = await client.post("/api/v1/tasks", json={"type": "echo", "payload": "x" * 2000})
        assert response.status_code == 413
        assert "1000 bytes" in problem(response)["detail"]

        # The connection (and the server) still serve the next request.
        ok = await client.post("/api/v1/tasks", json={"type": "echo"})
        assert ok.status_code == 201


async def test_streamed_body_without_length_over_the_limit_is_413(
    redis_url: str, http2: bool
) -> None:
    async def chunks() -> object:
        yield b'{"type": "echo", "payload": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    async with (
        api_server(redis_url, server__max_request_bytes=1000) as server,
        server.client(http2=http2) as client,
    ):
        response = await client.post(
            "/api/v1/tasks",
            content=chunks(),  # type: ignore[arg-type]
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413
        problem(response)


async def test_payload_over_max_payload_bytes_is_413_naming_the_payload(
    redis_url: str, http2: bool
) -> None:
    async with (
        api_server(redis_url, task__max_payload_bytes=100) as server,
        server.client(http2=http2) as client,
    ):
        response = await client.post("/api/v1/tasks", json={"type": "echo", "payload": "x" * 200})
        assert response.status_code == 413
        body = problem(response)
        assert body["field"] == "payload"
        assert "limit of 100" in body["detail"]


@pytest.mark.parametrize(
    ("submission", "field", "words"),
    [
        ({"payload": 1}, "type", "required"),
        ({"type": ""}, "type", "Expected str of length >= 1"),
        ({"type": "has space"}, "type", "invalid task type 'has space'"),
        ({"type": 5}, "type", "Expected str, got int (5)"),
        ({"type": "echo", "priority": "urgent"}, "priority", "expected one of critical, high"),
        ({"type": "echo", "max_retries": -1}, "max_retries", "Expected int >= 0, not -1"),
        ({"type": "echo", "max_retries": 1.5}, "max_retries", "got float (1.5)"),
        ({"type": "echo", "timeout": 0}, "timeout", "Expected float > 0.0"),
        ({"type": "echo", "timeout": "5s"}, "timeout", "got str ('5s')"),
        ({"type": "echo", "delay": -1}, "delay", "Expected float >= 0.0"),
        ({"type": "echo", "eta": "tomorrow"}, "eta", "Invalid RFC3339 encoded datetime"),
        ({"type": "echo", "eta": "2030-01-01T00:00:00"}, "eta", "with a timezone component"),
        ({"type": "echo", "eta": 4e9}, "eta", "10 years"),
        ({"type": "echo", "delay": 1, "eta": 1.0}, "delay", "not both"),
        ({"type": "echo", "idempotency_key": ""}, "idempotency_key", "of length >= 1"),
        ({"type": "echo", "colour": "blue"}, "colour", "unknown field"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    redis_url: str, http2: bool, submission: dict[str, object], field: str, words: str
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post("/api/v1/tasks", json=submission)
        assert response.status_code == 422, response.text
        body = problem(response)
        assert body["field"] == field
        assert words in body["detail"]


@pytest.mark.parametrize("body", [b"[]", b'"echo"', b"5", b"null"])
async def test_a_body_that_is_not_an_object_is_422(
    redis_url: str, http2: bool, body: bytes
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert "Expected object" in problem(response)["detail"]


async def test_full_queue_is_429_with_retry_after(redis_url: str, http2: bool) -> None:
    async with (
        api_server(redis_url, task__max_queue_depth=1) as server,
        server.client(http2=http2) as client,
    ):
        assert (await client.post("/api/v1/tasks", json={"type": "echo"})).status_code == 201
        response = await client.post("/api/v1/tasks", json={"type": "echo"})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert "full" in problem(response)["detail"]


async def test_wrong_method_is_405_with_allow(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.patch("/api/v1/tasks")
        assert response.status_code == 405
        assert set(response.headers["allow"].split(", ")) >= {"GET", "POST", "DELETE"}
        problem(response)


async def test_unknown_path_is_404(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.get("/api/v1/nothing-here")
        assert response.status_code == 404
        assert "/api/v1/nothing-here" in problem(response)["detail"]


async def test_redis_down_is_503_and_the_server_stays_up(redis_url: str, http2: bool) -> None:
    # Port 1 refuses connections: every Redis command fails at once.
    async with (
        api_server("redis://127.0.0.1:1/0") as server,
        server.client(http2=http2) as client,
    ):
        for _ in range(2):
            response = await client.post("/api/v1/tasks", json={"type": "echo"})
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "Redis" in problem(response)["detail"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert (await client.get("/healthz")).status_code == 200


async def test_client_that_hangs_up_mid_body_leaves_the_server_serving(
    redis_url: str, http2: bool
) -> None:
    async def slow_body() -> object:
        yield b'{"type": "echo", "payload": "'
        await trio.sleep(10)
        yield b'"}'

    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        with trio.move_on_after(0.3):
            await client.post(
                "/api/v1/tasks",
                content=slow_body(),  # type: ignore[arg-type]
                headers={"Content-Type": "application/json"},
            )
        async with server.client(http2=http2) as other:
            assert (await other.get("/healthz")).status_code == 200
