"""No API call can hold the event loop long enough to cost the worker beside it its leases.

A ``taskqueue run`` process serves the API and runs long tasks; while they run, clients flood
it with the worst calls known, valid and invalid, over gRPC and REST. A reaper in this
process (another daemon's, in effect) reaps every 0.1 s with the daemon's lease: if a
heartbeat came late past the lease, it would take the tasks back, and they would run twice.
Each call's duration, and the longest gap between the worker's beats, are printed (not
asserted: a loaded machine is slower). The lease is 5 s: a machine loaded by other test runs
delays beats by itself, and the freeze this guards against lasted 19-60 s.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from pathlib import Path

import trio
from abuse_helpers import GRPC_HEADERS, JSON_HEADERS, H2Client, api_daemon
from daemon_helpers import STARTUP, wait_until
from history import TASK_TYPE, History

from taskqueue import _json
from taskqueue.api.grpc import pb
from taskqueue.api.grpc.framing import frame
from taskqueue.broker import Broker, BrokerSettings, Submission
from taskqueue.models import TaskState
from taskqueue.redis import Redis

SERVICE = "/taskqueue.v1.TaskQueue/"
LEASE = 5.0  # worker_timeout: the daemon's own lease, and this test's reaper's
TASKS = 4
TASK_SECONDS = 8.0


def worst_calls() -> list[tuple[str, str, bytes, Mapping[str, str]]]:
    """(name, path, body, headers) of each worst-case call, each body near 2 MiB."""
    one = bytes(pb.SubmitTaskRequest(type="a"))
    tiny_entries = b"".join(b"\x0a" + bytes([len(one)]) + one for _ in range(262_000))
    full_batch = bytes(
        pb.SubmitTasksRequest(
            tasks=[
                pb.SubmitTaskRequest(type="abuse.unserved", payload_json='"' + "x" * 1900 + '"')
                for _ in range(1000)
            ]
        )
    )
    unknown_fields = b"\x08\x01" * 1_000_000
    rest_entries = _json.dumps({"tasks": [{"type": "a"}] * 150_000}).encode()
    deep = b"[" * 1_000_000 + b"]" * 1_000_000
    return [
        ("grpc 262,000 tiny entries", SERVICE + "SubmitTasks", frame(tiny_entries), GRPC_HEADERS),
        ("grpc 1,000-task batch", SERVICE + "SubmitTasks", frame(full_batch), GRPC_HEADERS),
        ("grpc 1M unknown fields", SERVICE + "GetTask", frame(unknown_fields), GRPC_HEADERS),
        (
            "grpc list 1,000",
            SERVICE + "ListTasks",
            frame(bytes(pb.ListTasksRequest(state=pb.TaskState.PENDING, limit=1000))),
            GRPC_HEADERS,
        ),
        ("rest 150,000 entries", "/api/v1/tasks/batch", rest_entries, JSON_HEADERS),
        ("rest deep nesting", "/api/v1/tasks/batch", deep[: 2 * 2**20 - 2], JSON_HEADERS),
    ]


async def test_a_flood_of_worst_case_calls_costs_the_worker_no_lease(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    history = History(tmp_path)
    broker = Broker(redis, BrokerSettings(lease_ttl=LEASE))
    variables = {
        **history.worker_env(),
        "TASKQUEUE_WORKER__HEARTBEAT_INTERVAL": "0.2s",
        "TASKQUEUE_WORKER__WORKER_TIMEOUT": f"{LEASE}s",
        "TASKQUEUE_WORKER__PREFETCH": "0",
    }
    calls = worst_calls()
    slowest: dict[str, float] = {}
    reaped: list[int] = []
    beats: list[int] = []  # the worker's last_heartbeat_ms, each new one seen
    async with api_daemon(tmp_path, redis_url, **variables) as (daemon, port):
        batch = [
            Submission(type=TASK_TYPE, payload=history.payload(TASK_SECONDS)) for _ in range(TASKS)
        ]
        history.acknowledge(s.id for s in await broker.enqueue_many(batch))

        async def all_started() -> bool:
            return sum(e.event == "start" for e in history.entries()) >= TASKS

        await wait_until(all_started, "every task started", STARTUP)

        async def reaper() -> None:
            while True:
                result = await broker.reap()
                reaped.append(result.reaped)
                for worker in await broker.workers():
                    if not beats or worker.last_heartbeat_ms != beats[-1]:
                        beats.append(worker.last_heartbeat_ms)
                await trio.sleep(0.1)

        async def flood(client_index: int) -> None:
            until = trio.current_time() + TASK_SECONDS - 1
            while trio.current_time() < until:
                async with H2Client.connect(port) as client:
                    for name, path, body, headers in calls:
                        started = time.perf_counter()
                        stream_id = await client.request(path, body, headers)
                        response = await client.response(stream_id)
                        seconds = time.perf_counter() - started
                        slowest[name] = max(slowest.get(name, 0.0), seconds)
                        assert response.status is not None and response.status < 500, name
                        if client.closed:
                            break

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reaper)
            async with trio.open_nursery() as clients:
                for index in range(3):
                    clients.start_soon(flood, index)

            async def all_ended() -> bool:
                tasks = await broker.get_many(history.acknowledged)
                return all(t is not None and t.state.is_terminal for t in tasks)

            await wait_until(all_ended, "every task ended", TASK_SECONDS + STARTUP)
            nursery.cancel_scope.cancel()
        print("slowest call of each kind (s):", {k: round(v, 3) for k, v in slowest.items()})
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        print("longest gap between beats (s):", max(gaps, default=0) / 1000, "of", len(beats))
        tasks = await broker.get_many(history.acknowledged)
        assert all(t is not None and t.state is TaskState.SUCCEEDED for t in tasks)
        assert all(t is not None and t.attempt == 1 for t in tasks), [
            t and t.attempt for t in tasks
        ]
        starts = [e.task_id for e in history.entries() if e.event == "start"]
        assert sorted(starts) == sorted(history.acknowledged), "a task's body ran twice"
        assert sum(reaped) == 0, f"the reaper took back {sum(reaped)} leases"
        assert daemon.process is not None and daemon.process.returncode is None
