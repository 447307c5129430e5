"""REST: cancelling every waiting task of a type, and deleting a finished state."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import ADMIN_TOKEN, READ_TOKEN, api_server, problem
from broker_helpers import claim, make_dead, submit_many, succeeded
from invariants import assert_invariants

from taskqueue.api.auth import hash_token
from taskqueue.models import TaskState

pytestmark = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])


async def test_cancel_of_a_type_answers_the_counts(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        broker = server.broker
        await submit_many(broker, 30, "kind.a", priority="high")
        await submit_many(broker, 20, "kind.a", delay=60)
        kept = await submit_many(broker, 5, "kind.b")
        running = await claim(broker, 2, ("kind.a",))

        response = await client.post("/api/v1/tasks/cancel", json={"type": "kind.a"})

        assert response.status_code == 200
        assert response.json() == {
            "type": "kind.a",
            "cancelled": 48,
            "by_state": {"scheduled": 20, "pending": 28},
            "by_priority": {"high": 28, "medium": 20},
            "requested": 0,
        }
        again = await client.post(
            "/api/v1/tasks/cancel",
            json={"type": "kind.a", "states": ["pending"], "include_active": True},
        )
        assert again.json()["cancelled"] == 0
        assert again.json()["requested"] == 2
        assert all([(await broker.get(t.id)).cancel_requested for t in running])
        assert {(await broker.get(i)).state for i in kept} == {TaskState.PENDING}
        await assert_invariants(broker)


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"type": "kind.a", "states": ["succeeded"]}, "states", "not succeeded"),
        ({"type": "kind.a", "states": ["active"]}, "states", "include_active"),
        ({"type": "kind.a", "states": ["later"]}, "states.0", "later"),
        ({"type": "kind.a", "states": []}, "states", ""),
        ({"type": "no spaces"}, "type", ""),
        ({"states": ["pending"]}, "type", "required"),
        ({"type": "kind.a", "active": True}, "active", "unknown field"),
    ],
)
async def test_cancel_of_a_type_refuses_what_it_cannot_do_with_a_422(
    redis_url: str, http2: bool, body: dict[str, object], field: str, detail: str
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post("/api/v1/tasks/cancel", json=body)
        assert response.status_code == 422
        details = problem(response)
        assert details["field"] == field
        assert detail in details["detail"]


async def test_delete_of_a_finished_state_deletes_it(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        broker = server.broker
        for task_type, n in (("kind.a", 4), ("kind.b", 3)):
            await submit_many(broker, n, task_type)
            await broker.report([succeeded(t) for t in await claim(broker, n, (task_type,))])
        await make_dead(broker, 2, "kind.a")

        only_b = await client.delete(
            "/api/v1/tasks", params={"state": "succeeded", "type": "kind.b"}
        )
        assert only_b.json() == {"state": "succeeded", "type": "kind.b", "purged": 3}
        rest = await client.delete("/api/v1/tasks", params={"state": "succeeded"})
        assert rest.json() == {"state": "succeeded", "type": None, "purged": 4}
        dead = await client.delete("/api/v1/tasks", params={"state": "dead"})
        assert dead.json()["purged"] == 2
        stats = await broker.stats()
        assert (stats.by_state[TaskState.SUCCEEDED], stats.by_state[TaskState.DEAD]) == (0, 0)
        await assert_invariants(broker)


@pytest.mark.parametrize(
    ("params", "field", "detail"),
    [
        ({"state": "pending"}, "state", "only finished tasks can be purged"),
        ({"state": "gone"}, "state", "gone"),
        ({}, "state", "required"),
        ({"state": "succeeded", "type": "no spaces"}, "type", ""),
    ],
)
async def test_delete_of_a_state_refuses_what_has_not_finished_with_a_422(
    redis_url: str, http2: bool, params: dict[str, str], field: str, detail: str
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        await submit_many(server.broker, 2, "kind.a")
        response = await client.delete("/api/v1/tasks", params=params)
        assert response.status_code == 422
        details = problem(response)
        assert details["field"] == field
        assert detail in details["detail"]
        assert (await server.broker.stats()).by_state[TaskState.PENDING] == 2


async def test_bulk_operations_want_an_admin_token(
    redis_url: str, tmp_path: Path, http2: bool
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{hash_token(READ_TOKEN)} read\n")
    async with api_server(
        redis_url, server__tokens=(ADMIN_TOKEN,), server__token_file=str(tokens)
    ) as server:
        await submit_many(server.broker, 3, "kind.a")
        async with server.client(http2=http2, token=READ_TOKEN) as reader:
            refused = await reader.post("/api/v1/tasks/cancel", json={"type": "kind.a"})
            assert refused.status_code == 403
            assert "only read" in problem(refused)["detail"]
            deleting = await reader.delete("/api/v1/tasks", params={"state": "succeeded"})
            assert deleting.status_code == 403
        assert (await server.broker.stats()).by_state[TaskState.PENDING] == 3
        async with server.client(http2=http2, token=ADMIN_TOKEN) as admin:
            done = await admin.post("/api/v1/tasks/cancel", json={"type": "kind.a"})
            assert done.json()["cancelled"] == 3
