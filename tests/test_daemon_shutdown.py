"""Stopping a real ``taskqueue worker`` process with SIGTERM: the drain, its deadline, and the
second signal that cuts it short. Whatever does not finish goes back to its queue with the
attempt not spent, and the worker leaves the registry before the process exits 0.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    submit_many,
    tasks_of,
    wait_for_running,
    wait_for_state,
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


async def test_sigterm_lets_running_tasks_finish_and_gives_unstarted_ones_back_at_once(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    running = await submit_many(broker, "sleep", [{"seconds": 2}] * 2)
    waiting = await submit_many(broker, "sleep", [{"seconds": 2}] * 3)
    env = worker_env(
        redis_url,
        TASKQUEUE_WORKER__ID="drainer",
        TASKQUEUE_WORKER__CONCURRENCY="2",
        TASKQUEUE_WORKER__PREFETCH="3",  # so the three waiting ones are claimed, then given back
        TASKQUEUE_WORKER__DRAIN_TIMEOUT="20s",
    )
    async with WorkerProcess(tmp_path, env) as worker:
        await wait_for_running(broker, "drainer", 5)

        worker.send_signal(signal.SIGTERM)
        signalled = trio.current_time()
        # The claimed ones that had not started are back in their queue for other workers
        # while the running ones still run.
        for task_id in waiting:
            await wait_for_state(broker, task_id, TaskState.PENDING, within=1)
        for task in await tasks_of(broker, running):
            assert task.state is TaskState.ACTIVE, task

        assert await worker.wait_exit() == 0
        drain = trio.current_time() - signalled

    assert drain < 6, f"the drain took {drain:.1f}s: it should end when the tasks do"
    for task in await tasks_of(broker, running):
        assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 1), task
        assert task.result == {"slept": 2}
    for task in await tasks_of(broker, waiting):
        assert (task.state, task.attempt) == (TaskState.PENDING, 0), task
    assert await broker.workers() == []
    await assert_invariants(broker)


async def test_drain_deadline_puts_still_running_tasks_back_unspent(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    ids = await submit_many(broker, "sleep", [{"seconds": 30}] * 2)
    env = worker_env(
        redis_url, TASKQUEUE_WORKER__ID="deadline", TASKQUEUE_WORKER__DRAIN_TIMEOUT="300ms"
    )
    async with WorkerProcess(tmp_path, env) as worker:
        await wait_for_running(broker, "deadline", 2)

        worker.send_signal(signal.SIGTERM)
        signalled = trio.current_time()
        assert await worker.wait_exit() == 0
        drain = trio.current_time() - signalled

    assert 0.3 <= drain < 5
    for task in await tasks_of(broker, ids):
        assert (task.state, task.attempt) == (TaskState.PENDING, 0), task
    assert await broker.workers() == []
    await assert_invariants(broker)


async def test_second_sigterm_interrupts_running_tasks_at_once(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    ids = await submit_many(broker, "sleep", [{"seconds": 30}] * 2)
    env = worker_env(
        redis_url, TASKQUEUE_WORKER__ID="impatient", TASKQUEUE_WORKER__DRAIN_TIMEOUT="60s"
    )
    async with WorkerProcess(tmp_path, env) as worker:
        await wait_for_running(broker, "impatient", 2)

        worker.send_signal(signal.SIGTERM)
        await worker.wait_for_log("draining")
        worker.send_signal(signal.SIGTERM)
        signalled = trio.current_time()
        assert await worker.wait_exit() == 0
        stop = trio.current_time() - signalled

    assert stop < 4, f"stopping took {stop:.1f}s after the second SIGTERM"
    await worker.wait_for_log("interrupting running tasks now")
    for task in await tasks_of(broker, ids):
        assert (task.state, task.attempt) == (TaskState.PENDING, 0), task
    assert await broker.workers() == []
    await assert_invariants(broker)


async def test_sigterm_stops_a_worker_still_waiting_for_redis_at_start_up(tmp_path: Path) -> None:
    nowhere = f"unix://{tmp_path / 'no-redis.sock'}"
    async with WorkerProcess(tmp_path, worker_env(nowhere)) as worker:
        await worker.wait_for_log("Redis is unreachable", within=STARTUP)

        worker.send_signal(signal.SIGTERM)
        assert await worker.wait_exit() == 0

    await worker.wait_for_log("stopped before its start-up completed")
