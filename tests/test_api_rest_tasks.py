"""REST: submitting, reading, listing and cancelling tasks, over HTTP/1.1 and HTTP/2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_helpers import api_server, problem
from broker_helpers import claim_one

from taskqueue.broker import Submission
from taskqueue.models import TaskState

pytestmark = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])


async def test_submitted_task_comes_back_as_json_with_its_location(
    redis_url: str, http2: bool
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post("/api/v1/tasks", json={"type": "echo", "payload": [1, "a"]})
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert response.status_code == 201
        task = response.json()
        assert response.headers["location"] == f"/api/v1/tasks/{task['id']}"
        assert task["type"] == "echo"
        assert task["payload"] == [1, "a"]
        assert task["state"] == "pending"
        assert task["priority"] == "medium"
        assert task["attempt"] == 0
        assert task["max_retries"] == 3
        assert task["timeout_ms"] == 300_000
        created = datetime.fromisoformat(task["created_at"])
        assert abs(created.timestamp() * 1000 - task["created_ms"]) < 1

        # An API-only server has no worker: the reply says nothing will run the task yet.
        assert task.pop("warnings") == [
            "no live worker serves task type 'echo': it waits until one starts"
        ]
        assert task.pop("debounced") is None  # not a debounced submission

        fetched = await client.get(response.headers["location"])
        assert fetched.status_code == 200
        assert fetched.json() == task


async def test_submission_fields_reach_the_task(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks",
            json={
                "type": "echo",
                "priority": "critical",
                "max_retries": 7,
                "timeout": 2.5,
                "delay": 60,
            },
        )
        task = response.json()
        assert (task["priority"], task["max_retries"], task["timeout_ms"]) == ("critical", 7, 2500)
        assert task["state"] == "scheduled"
        assert 59_000 <= task["ready_ms"] - task["created_ms"] <= 60_000


async def test_a_deadline_is_kept_and_both_forms_at_once_are_refused(
    redis_url: str, http2: bool
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        relative = await client.post("/api/v1/tasks", json={"type": "echo", "expires_in": 30})
        absolute = await client.post(
            "/api/v1/tasks", json={"type": "echo", "expires_at": later.isoformat()}
        )
        both = await client.post(
            "/api/v1/tasks", json={"type": "echo", "expires_in": 30, "expires_at": 2e9}
        )
        too_soon = await client.post(
            "/api/v1/tasks", json={"type": "echo", "delay": 60, "expires_in": 30}
        )
    assert relative.status_code == 201, relative.text
    assert relative.json()["expires_ms"] - relative.json()["created_ms"] == 30_000
    assert absolute.status_code == 201, absolute.text
    assert abs(absolute.json()["expires_ms"] - later.timestamp() * 1000) <= 1
    for refused in (both, too_soon):
        assert refused.status_code == 422
    assert problem(both)["field"] == "expires_in"
    assert "expires_at" in problem(both)["detail"]
    assert problem(too_soon)["detail"].endswith("it could never run")


async def test_eta_is_accepted_as_rfc3339_or_epoch_seconds(redis_url: str, http2: bool) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        as_text = await client.post(
            "/api/v1/tasks", json={"type": "echo", "eta": later.isoformat()}
        )
        as_number = await client.post(
            "/api/v1/tasks", json={"type": "echo", "eta": later.timestamp()}
        )
        for response in (as_text, as_number):
            assert response.status_code == 201, response.text
            assert response.json()["state"] == "scheduled"
            assert abs(response.json()["ready_ms"] - later.timestamp() * 1000) <= 1


async def test_idempotency_key_in_body_or_header_returns_the_first_task(
    redis_url: str, http2: bool
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        first = await client.post("/api/v1/tasks", json={"type": "echo", "idempotency_key": "k1"})
        by_body = await client.post("/api/v1/tasks", json={"type": "echo", "idempotency_key": "k1"})
        by_header = await client.post(
            "/api/v1/tasks", json={"type": "echo"}, headers={"Idempotency-Key": "k1"}
        )
        assert first.status_code == 201
        assert by_body.status_code == by_header.status_code == 200
        assert first.json()["id"] == by_body.json()["id"] == by_header.json()["id"]
        assert by_header.json()["idempotency_key"] == "k1"
        assert (await server.broker.stats()).by_state[TaskState.PENDING] == 1


async def test_idempotency_key_header_and_body_must_agree(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks",
            json={"type": "echo", "idempotency_key": "a"},
            headers={"Idempotency-Key": "b"},
        )
        assert response.status_code == 422
        assert problem(response)["field"] == "idempotency_key"


async def test_batch_submits_all_tasks_in_order(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"type": "echo", "payload": i} for i in range(50)]},
        )
        assert response.status_code == 201
        results = response.json()["tasks"]
        assert len(results) == 50
        assert all(r["created"] and r["state"] == "pending" for r in results)
        payloads = [(await server.broker.get(r["id"])).payload for r in results]
        assert payloads == list(range(50))


async def test_batch_with_one_invalid_task_names_it_and_submits_none(
    redis_url: str, http2: bool
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"type": "echo"}, {"type": "echo", "priority": "urgent"}]},
        )
        assert response.status_code == 422
        body = problem(response)
        assert body["field"] == "tasks.1.priority"
        assert "urgent" in body["detail"]
        assert (await server.broker.stats()).totals.get("submitted", 0) == 0


async def test_batch_item_refused_by_the_broker_is_named_too(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"type": "echo"}, {"type": "echo", "delay": 5, "eta": 1.0}]},
        )
        assert response.status_code == 422
        assert problem(response)["field"] == "tasks.1.delay"


async def test_batch_of_known_idempotency_keys_answers_200(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        batch = {"tasks": [{"type": "echo", "idempotency_key": f"k{i}"} for i in range(3)]}
        first = await client.post("/api/v1/tasks/batch", json=batch)
        again = await client.post("/api/v1/tasks/batch", json=batch)
        assert (first.status_code, again.status_code) == (201, 200)
        assert [r["id"] for r in first.json()["tasks"]] == [r["id"] for r in again.json()["tasks"]]
        assert not any(r["created"] for r in again.json()["tasks"])


async def test_unknown_task_is_404(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.get("/api/v1/tasks/no-such-task")
        assert response.status_code == 404
        assert "no-such-task" in problem(response)["detail"]


async def test_listing_pages_through_pending_tasks_by_type(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        echo = [
            (await server.broker.enqueue(Submission(type="echo", payload=i))).id for i in range(5)
        ]
        await server.broker.enqueue(Submission(type="noop"))
        seen: list[str] = []
        cursor = None
        while True:
            params = {"state": "pending", "type": "echo", "limit": "2"}
            if cursor:
                params["cursor"] = cursor
            response = await client.get("/api/v1/tasks", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["tasks"]) <= 2
            seen += [t["id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == echo

        everything = await client.get("/api/v1/tasks")  # state defaults to pending
        assert len(everything.json()["tasks"]) == 6


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "sleeping"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"sort": "id"}, "sort"),
    ],
)
async def test_invalid_listing_parameters_are_named(
    redis_url: str, http2: bool, params: dict[str, str], field: str
) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        await server.broker.enqueue(Submission(type="echo"))
        response = await client.get("/api/v1/tasks", params=params)
        assert response.status_code == 422
        assert problem(response)["field"] == field


async def test_cancelling_a_waiting_task_cancels_it_at_once(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        task = (await client.post("/api/v1/tasks", json={"type": "echo"})).json()
        response = await client.post(f"/api/v1/tasks/{task['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["state"] == "cancelled"

        again = await client.post(f"/api/v1/tasks/{task['id']}/cancel")
        assert again.status_code == 409
        assert "cancelled" in problem(again)["detail"]


async def test_cancelling_a_running_task_asks_its_worker(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        task = (await client.post("/api/v1/tasks", json={"type": "echo"})).json()
        await claim_one(server.broker, "echo")
        response = await client.post(f"/api/v1/tasks/{task['id']}/cancel")
        assert response.status_code == 202
        assert response.json()["state"] == "active"
        assert response.json()["cancel_requested"] is True


async def test_cancelling_an_unknown_task_is_404(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        response = await client.post("/api/v1/tasks/nope/cancel")
        assert response.status_code == 404
        problem(response)
