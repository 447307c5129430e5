"""REST: live workers, queue statistics and the dead-letter queue."""

from __future__ import annotations

import pytest
from api_helpers import SLOW_REAPER, api_server, problem
from broker_helpers import make_dead, register_worker
from daemon_helpers import wait_until

from taskqueue.broker import Submission
from taskqueue.daemon.runtime import Mode
from taskqueue.models import TaskState

pytestmark = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])


async def test_workers_lists_a_running_worker_with_its_task_types(
    redis_url: str, http2: bool
) -> None:
    async with (
        api_server(redis_url, mode=Mode.RUN, worker__id="w-api") as server,
        server.client(http2=http2) as client,
    ):

        async def registered() -> bool:
            return bool((await client.get("/api/v1/workers")).json()["workers"])

        await wait_until(registered, "the worker shows in /api/v1/workers")
        (worker,) = (await client.get("/api/v1/workers")).json()["workers"]
        assert worker["id"] == "w-api"
        assert {"echo", "noop", "sleep"} <= set(worker["task_types"])
        assert worker["concurrency"] == 50
        assert worker["in_flight"] == 0
        assert worker["last_heartbeat_ms"] >= worker["started_ms"]
        assert worker["last_heartbeat_at"].endswith("Z")


async def test_queues_counts_tasks_by_state_priority_and_type(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        await server.broker.enqueue_many(
            [
                Submission(type="echo", priority="high"),
                Submission(type="echo"),
                Submission(type="noop", delay=60),
            ]
        )
        stats = (await client.get("/api/v1/queues")).json()
        assert stats["by_state"]["pending"] == 2
        assert stats["by_state"]["scheduled"] == 1
        assert stats["pending_by_priority"] == {"critical": 0, "high": 1, "medium": 1, "low": 0}
        assert stats["by_type"] == {"echo": {"pending": 2}, "noop": {"scheduled": 1}}
        assert stats["totals"]["submitted"] == 3


async def test_dead_letters_are_listed_and_filtered_by_type(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        dead_a = await make_dead(server.broker, 3, "kind.a")
        dead_b = await make_dead(server.broker, 2, "kind.b")
        everything = (await client.get("/api/v1/dead-letters")).json()
        assert {t["id"] for t in everything["tasks"]} == set(dead_a + dead_b)
        assert all(t["state"] == "dead" and t["error"] for t in everything["tasks"])

        only_b = (await client.get("/api/v1/dead-letters", params={"type": "kind.b"})).json()
        assert {t["id"] for t in only_b["tasks"]} == set(dead_b)

        first = (await client.get("/api/v1/dead-letters", params={"limit": "4"})).json()
        rest = await client.get(
            "/api/v1/dead-letters", params={"limit": "4", "cursor": first["next_cursor"]}
        )
        assert len(first["tasks"]) == 4
        assert len(rest.json()["tasks"]) == 1


async def test_requeueing_one_dead_task_makes_it_pending(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        (task_id,) = await make_dead(server.broker, 1, "kind.a")
        response = await client.post(f"/api/v1/dead-letters/{task_id}/requeue")
        assert response.status_code == 200
        assert response.json()["state"] == "pending"

        again = await client.post(f"/api/v1/dead-letters/{task_id}/requeue")
        assert again.status_code == 409
        assert "not in the dead-letter queue" in problem(again)["detail"]

        unknown = await client.post("/api/v1/dead-letters/nope/requeue")
        assert unknown.status_code == 404
        problem(unknown)


async def test_requeueing_all_dead_tasks_of_a_type(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        await make_dead(server.broker, 3, "kind.a")
        await make_dead(server.broker, 2, "kind.b")
        response = await client.post("/api/v1/dead-letters/requeue", params={"type": "kind.a"})
        assert response.json() == {"requeued": 3}
        rest = await client.post("/api/v1/dead-letters/requeue")
        assert rest.json() == {"requeued": 2}
        assert (await server.broker.stats()).by_state[TaskState.DEAD] == 0


async def test_purging_dead_tasks_by_type_then_all(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        await make_dead(server.broker, 3, "kind.a")
        await make_dead(server.broker, 2, "kind.b")
        response = await client.delete("/api/v1/dead-letters", params={"type": "kind.b"})
        assert response.json() == {"purged": 2}
        assert (await client.delete("/api/v1/dead-letters")).json() == {"purged": 3}
        assert (await client.get("/api/v1/dead-letters")).json()["tasks"] == []


async def test_a_silent_worker_is_marked_dead_until_a_reaper_forgets_it(
    redis_url: str, http2: bool
) -> None:
    async with api_server(redis_url, **SLOW_REAPER) as server, server.client(http2=http2) as client:
        await register_worker(server.broker, "w-live", silent_for=1.0)
        await register_worker(server.broker, "w-dead", silent_for=1000.0)
        listing = (await client.get("/api/v1/workers")).json()
        assert listing["dead_after_seconds"] == 900.0
        assert {w["id"]: w["dead"] for w in listing["workers"]} == {
            "w-live": False,
            "w-dead": True,
        }
        await server.broker.reap()
        (left,) = (await client.get("/api/v1/workers")).json()["workers"]
        assert (left["id"], left["dead"]) == ("w-live", False)
