"""REST: ``GET /api/v1/events`` streams task state changes as Server-Sent Events."""

from __future__ import annotations

import pytest
import trio
from api_helpers import api_server, watching
from log_helpers import captured_json_logs, json_records

from taskqueue.api.rest.sse import event_stream
from taskqueue.daemon.runtime import Mode

both_versions = pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])


@both_versions
async def test_watcher_sees_a_task_run_from_submit_to_success(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url, mode=Mode.RUN) as server:
        async with server.client(http2=http2) as client, watching(client) as watch:
            task = (await client.post("/api/v1/tasks", json={"type": "echo"})).json()
            events = await watch.events(3)
        assert [name for name, _ in events] == ["task", "task", "task"]
        assert [data["state"] for _, data in events] == ["pending", "active", "succeeded"]
        assert all(data == {**data, "task_id": task["id"], "type": "echo"} for _, data in events)


@both_versions
async def test_watch_filtered_by_type_sees_only_that_type(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url, mode=Mode.RUN) as server:
        async with (
            server.client(http2=http2) as client,
            watching(client, {"type": "echo"}) as watch,
        ):
            await client.post("/api/v1/tasks", json={"type": "noop"})
            echo = (await client.post("/api/v1/tasks", json={"type": "echo"})).json()
            events = await watch.events(3)
        assert {data["type"] for _, data in events} == {"echo"}
        assert {data["task_id"] for _, data in events} == {echo["id"]}
        assert events[-1][1]["state"] == "succeeded"


@both_versions
async def test_watch_filtered_by_task_id_sees_only_that_task(redis_url: str, http2: bool) -> None:
    async with api_server(redis_url) as server, server.client(http2=http2) as client:
        waiting = (await client.post("/api/v1/tasks", json={"type": "echo", "delay": 600})).json()
        other = (await client.post("/api/v1/tasks", json={"type": "echo", "delay": 600})).json()
        async with watching(client, {"task_id": waiting["id"]}) as watch:
            await client.post(f"/api/v1/tasks/{other['id']}/cancel")
            await client.post(f"/api/v1/tasks/{waiting['id']}/cancel")
            ((name, data),) = await watch.events(1)
        assert (name, data) == ("task", {**data, "task_id": waiting["id"], "state": "cancelled"})


@both_versions
async def test_a_client_going_away_removes_its_watcher(redis_url: str, http2: bool) -> None:
    # httpx closes an HTTP/2 stream it stops reading only with its connection (it sends no
    # RST_STREAM); a reset stream is covered in test_api_server_h2.py.
    async with api_server(redis_url) as server:
        async with server.client(http2=http2) as client, watching(client):
            assert len(server.events._watchers) == 1
        with trio.fail_after(5):
            while server.events._watchers:  # noqa: ASYNC110 - the server notices on its own
                await trio.sleep(0.01)


@both_versions
async def test_a_client_going_away_mid_stream_is_no_error(redis_url: str, http2: bool) -> None:
    """The response has started when the client leaves: the stream just stops, with no error
    logged and no second response (hypercorn would log one as an error)."""
    with captured_json_logs("info") as lines:
        async with api_server(redis_url) as server:
            for _ in range(3):
                async with server.client(http2=http2) as client, watching(client):
                    pass
            with trio.fail_after(5):
                while server.events._watchers:  # noqa: ASYNC110 - the server notices on its own
                    await trio.sleep(0.01)
            async with server.client(http2=http2) as client:
                assert (await client.get("/healthz")).status_code == 200
    records = json_records(lines)
    assert [r for r in records if r["level"] in ("error", "critical")] == []
    access = [r for r in records if r["logger"] == "taskqueue.access"]
    assert [r["status"] for r in access if r["route"] == "/api/v1/events"] == ["200"] * 3


async def test_idle_stream_sends_keepalives_and_ends_at_shutdown(redis_url: str) -> None:
    async with api_server(redis_url) as server:
        shutdown = trio.Event()
        chunks = []
        stream = event_stream(server.events, shutdown, task_id=None, task_type=None, keepalive=0.5)
        with trio.fail_after(10):
            async for chunk in stream:
                chunks.append(chunk)
                if len(chunks) == 3:
                    shutdown.set()
        assert chunks == [b": watching\n\n", b": keepalive\n\n", b": keepalive\n\n"]
        assert not server.events._watchers
