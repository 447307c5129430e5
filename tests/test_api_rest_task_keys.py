"""REST: finding a task by the idempotency key it was submitted with, which is what an operator
holding only a client's key (an order number, say) has to go on."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import ADMIN_TOKEN, READ_TOKEN, api_server, problem

from taskqueue.api.auth import hash_token
from taskqueue.models import MAX_IDEMPOTENCY_KEY_LENGTH

pytestmark = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])

BY_KEY = "/api/v1/tasks/by-idempotency-key"


async def test_a_key_gives_its_task_as_get_task_does(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        key = "order/42 ü?&="  # a key is any text: it travels in the query, escaped
        submitted = await client.post(
            "/api/v1/tasks", json={"type": "echo", "payload": {"n": 1}, "idempotency_key": key}
        )
        assert submitted.status_code == 201, submitted.text
        task_id = submitted.json()["id"]
        found = await client.get(BY_KEY, params={"key": key})
        assert found.status_code == 200, found.text
        assert found.json() == (await client.get(f"/api/v1/tasks/{task_id}")).json()
        assert found.json()["idempotency_key"] == key


async def test_an_unknown_key_is_a_404_that_says_so(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        await client.post("/api/v1/tasks", json={"type": "echo", "idempotency_key": "known"})
        response = await client.get(BY_KEY, params={"key": "unknown"})
        assert response.status_code == 404
        assert "no task has idempotency key 'unknown'" in problem(response)["detail"]


async def test_a_key_whose_task_expired_is_not_found(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        submitted = await client.post(
            "/api/v1/tasks", json={"type": "echo", "idempotency_key": "gone"}
        )
        await server.broker.redis.execute("DEL", server.broker.keys.task(submitted.json()["id"]))
        assert (await client.get(BY_KEY, params={"key": "gone"})).status_code == 404


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({}, "key: required"),
        ({"key": ""}, "key"),
        ({"key": "k" * (MAX_IDEMPOTENCY_KEY_LENGTH + 1)}, "key"),
        ({"key": "a", "id": "b"}, "id: unknown query parameter"),
    ],
    ids=["missing", "empty", "too-long", "unknown-parameter"],
)
async def test_bad_input_is_a_422_naming_the_parameter(
    redis_url: str, http2: bool, params: dict[str, str], why: str
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.get(BY_KEY, params=params)
        assert response.status_code == 422, response.text
        body = problem(response)
        assert body["detail"].startswith(why), body
        assert body["field"] == why.split(":")[0]


async def test_it_needs_a_token_and_a_read_token_will_do(
    redis_url: str, http2: bool, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{hash_token(ADMIN_TOKEN)} admin\n{hash_token(READ_TOKEN)} read\n")
    async with api_server(redis_url, server__token_file=str(tokens)) as server:
        async with server.client(http2=http2, token=ADMIN_TOKEN) as admin:
            await admin.post("/api/v1/tasks", json={"type": "echo", "idempotency_key": "k"})
        async with server.client(http2=http2) as anonymous:
            assert (await anonymous.get(BY_KEY, params={"key": "k"})).status_code == 401
        async with server.client(http2=http2, token=READ_TOKEN) as reader:
            assert (await reader.get(BY_KEY, params={"key": "k"})).status_code == 200
