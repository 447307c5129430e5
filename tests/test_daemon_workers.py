"""Several real worker processes on one Redis: each claims only the task types it is told to run,
and a task no running worker can run waits for one.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    submit,
    submit_many,
    tasks_of,
    wait_for_count,
    worker_env,
)
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.models import TaskState
from taskqueue.redis import Redis


@pytest.fixture
def broker(redis: Redis) -> Broker:
    """The test's broker: the daemon's defaults and the wall clock, as the daemon has."""
    return Broker(redis)


async def test_workers_with_disjoint_task_types_each_run_only_their_own(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    echoes = await submit_many(broker, "echo", range(50))
    noops = await submit_many(broker, "noop", [None] * 50)
    unclaimed = await submit(broker, "sleep", {"seconds": 0})

    def env(worker_id: str, task_types: str) -> dict[str, str]:
        return worker_env(
            redis_url, TASKQUEUE_WORKER__ID=worker_id, TASKQUEUE_WORKER__TASK_TYPES=task_types
        )

    async with (
        WorkerProcess(tmp_path, env("echoer", "echo"), name="echoer") as echoer,
        WorkerProcess(tmp_path, env("nooper", "noop,clock"), name="nooper") as nooper,
    ):
        await wait_for_count(broker, TaskState.SUCCEEDED, 100, within=STARTUP)
        registered = {w.id: sorted(w.task_types) for w in await broker.workers()}
        for worker in (echoer, nooper):
            worker.send_signal(signal.SIGTERM)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echoer.wait_exit)
            nursery.start_soon(nooper.wait_exit)

    assert registered == {"echoer": ["echo"], "nooper": ["clock", "noop"]}
    for task in await tasks_of(broker, echoes):
        assert (task.state, task.worker_id) == (TaskState.SUCCEEDED, "echoer"), task
    for task in await tasks_of(broker, noops):
        assert (task.state, task.worker_id) == (TaskState.SUCCEEDED, "nooper"), task
    waiting = await broker.get(unclaimed)
    assert (waiting.state, waiting.attempt, waiting.worker_id) == (TaskState.PENDING, 0, None)
    assert (await broker.stats()).pending_by_type == {"sleep": 1}
    await assert_invariants(broker)
