"""Deadlines in a real daemon: a task whose deadline passes while it waits behind a busy worker
is ended ``expired`` by the scheduler's sweep (woken for that deadline, not polling), never runs,
and every way of looking at it says so: REST, gRPC, the CLI and the metrics.

The daemon runs in this trio run against the session's Redis; this module is also a plugin
(see :func:`taskqueue_register_processors`).
"""

from __future__ import annotations

import sys

import pytest
import trio
from api_helpers import api_server
from cli_helpers import cli_env, run_in_process
from daemon_helpers import wait_for_state, wait_until
from grpc_helpers import Target, grpc_call
from invariants import assert_invariants

from taskqueue.api.grpc import TaskQueueStub
from taskqueue.api.grpc.gen.taskqueue.v1 import GetTaskRequest
from taskqueue.api.grpc.gen.taskqueue.v1 import TaskState as GrpcTaskState
from taskqueue.broker import Submission
from taskqueue.daemon.runtime import Mode
from taskqueue.models import TaskState
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl

#: What a task ends with when a claim or the sweep finds it past its deadline.
EXPIRED_ERROR = "its deadline passed before it started"
#: The ids of the tasks the ``test.record`` processor ran.
ran: list[str] = []
#: Set by the ``test.hold`` task once it runs, and by the test to let it finish.
holding = trio.Event()
release = trio.Event()


async def hold(ctx: TaskContext) -> str:
    """Keeps the only worker slot busy until the test sets :data:`release`."""
    holding.set()
    await release.wait()
    return "held"


async def record(ctx: TaskContext) -> None:
    ran.append(ctx.id)


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.hold", hold)
    registry.add("test.record", record)


@pytest.mark.parametrize("prefetch", [0, 50], ids=["queued", "prefetched"])
async def test_a_task_whose_deadline_passes_behind_a_busy_worker_never_runs_and_says_expired(
    redis_url: str, prefetch: int
) -> None:
    """Not prefetched, it waits in Redis and the scheduler's sweep ends it, woken for its
    deadline (the sweep's idle sleep is 30 s). Prefetched, it waits in the worker for a slot;
    the slot that takes it after its deadline releases it unrun and Redis ends it."""
    global holding, release
    holding, release = trio.Event(), trio.Event()
    ran.clear()
    async with api_server(
        redis_url,
        mode=Mode.RUN,
        plugins=(sys.modules[__name__],),
        worker__concurrency=1,
        worker__prefetch=prefetch,
    ) as server:
        broker = server.broker
        blocker = (await broker.enqueue(Submission(type="test.hold"))).id
        await holding.wait()
        doomed = (await broker.enqueue(Submission(type="test.record", expires_in=0.3))).id
        in_time = (await broker.enqueue(Submission(type="test.record", expires_in=60))).id

        if prefetch:
            deadline = (await broker.get(doomed)).expires_ms
            assert deadline is not None

            async def passed() -> bool:
                return broker.clock() > deadline

            await wait_until(passed, "the deadline passed")
        else:
            assert (await wait_for_state(broker, doomed, within=10)).state is TaskState.EXPIRED
            assert (await broker.get(in_time)).state is TaskState.PENDING  # due in a minute
        release.set()
        assert (await wait_for_state(broker, blocker)).state is TaskState.SUCCEEDED
        assert (await wait_for_state(broker, in_time)).state is TaskState.SUCCEEDED
        task = await wait_for_state(broker, doomed)
        assert ran == [in_time]
        assert (task.state, task.attempt) == (TaskState.EXPIRED, 0)
        error = "its worker released it after its deadline" if prefetch else EXPIRED_ERROR
        assert task.error == error

        async with server.client() as client:
            shown = (await client.get(f"/api/v1/tasks/{doomed}")).json()
            listed = (await client.get("/api/v1/tasks", params={"state": "expired"})).json()
            metrics = (await client.get("/metrics")).text
        assert (shown["state"], shown["expires_ms"]) == ("expired", task.expires_ms)
        assert [t["id"] for t in listed["tasks"]] == [doomed]
        assert 'taskqueue_tasks_expired_total{priority="medium",type="test.record"} 1.0' in metrics

        host, _, port = server.url.removeprefix("http://").rpartition(":")

        async def get(stub: TaskQueueStub) -> GrpcTaskState:
            return (await stub.get_task(GetTaskRequest(id=doomed))).state

        assert await grpc_call(Target(host, int(port)), get) is GrpcTaskState.EXPIRED

        await assert_invariants(broker)
        namespace = server.daemon.config.redis.namespace

    # The CLI runs its own trio loop, in a thread; the daemon has stopped by now.
    env = cli_env(redis_url, namespace)
    status = await trio.to_thread.run_sync(run_in_process, env, "status", doomed)
    assert status.code == 0, status
    assert "expired" in status.out
    assert error in status.out
    queues = await trio.to_thread.run_sync(run_in_process, env, "queues", "--json")
    assert queues.json()["totals"]["expired"] == 1

    purged = await trio.to_thread.run_sync(
        run_in_process, env, "purge", "expired", "--yes", "--json"
    )
    assert purged.json()["purged"] == 1
