"""A worker process that dies or hangs loses no task: its leases lapse, the reaper of another
worker returns the tasks to the queue (counting the attempt) and forgets the silent worker; and
a hung worker that wakes up lets go of what was taken over instead of reporting on it.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    submit,
    submit_many,
    tasks_of,
    wait_for_count,
    wait_for_running,
    wait_for_state,
    wait_for_worker,
    wait_until,
    worker_env,
)
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.models import TaskState
from taskqueue.redis import Redis

TASKS = 2000


@pytest.fixture
def broker(redis: Redis) -> Broker:
    """The test's broker: the daemon's defaults and the wall clock, as the daemon has."""
    return Broker(redis)


async def test_sigkilled_worker_loses_no_task_and_is_reaped(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    # Short sleeps (10 to 30 ms) at 20 at a time: about two seconds of work for one worker.
    ids = await submit_many(
        broker, "sleep", ({"seconds": 0.01 * (1 + i % 3)} for i in range(TASKS))
    )

    def env(worker_id: str) -> dict[str, str]:
        return worker_env(
            redis_url, TASKQUEUE_WORKER__ID=worker_id, TASKQUEUE_WORKER__CONCURRENCY="20"
        )

    async with WorkerProcess(tmp_path, env("doomed"), name="doomed") as doomed:
        await wait_for_count(broker, TaskState.SUCCEEDED, TASKS // 5, within=STARTUP)
        doomed.send_signal(signal.SIGKILL)
        assert await doomed.wait_exit() == -signal.SIGKILL
    stats = await broker.stats()
    assert stats.by_state[TaskState.SUCCEEDED] < TASKS, "the kill came too late to matter"
    assert stats.by_state[TaskState.ACTIVE] > 0, "the dead worker held no leases"
    orphaned = stats.by_state[TaskState.ACTIVE]

    async with WorkerProcess(tmp_path, env("rescuer"), name="rescuer") as rescuer:
        await wait_for_count(broker, TaskState.SUCCEEDED, TASKS, within=STARTUP + 5)

        async def doomed_is_forgotten() -> bool:
            return [w.id for w in await broker.workers()] == ["rescuer"]

        await wait_until(doomed_is_forgotten, "only the rescuer is registered")
        await assert_invariants(broker)
        rescuer.send_signal(signal.SIGTERM)
        assert await rescuer.wait_exit() == 0

    tasks = await tasks_of(broker, ids)
    assert Counter(t.state for t in tasks) == {TaskState.SUCCEEDED: TASKS}
    stats = await broker.stats()
    assert stats.by_state[TaskState.SUCCEEDED] == TASKS
    assert stats.totals["succeeded"] == TASKS, "some task succeeded more than once"
    reaped = [t for t in tasks if t.attempt == 2]
    assert all(t.attempt in (1, 2) for t in tasks)
    assert len(reaped) == stats.totals["reaped"] == orphaned
    assert {t.worker_id for t in reaped} == {"rescuer"}
    assert stats.totals["workers_removed"] == 1


async def test_worker_paused_past_its_timeout_lets_go_of_the_task_another_worker_took_over(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    task_id = await submit(broker, "sleep", {"seconds": 30}, max_retries=3)

    def env(worker_id: str) -> dict[str, str]:
        return worker_env(redis_url, TASKQUEUE_WORKER__ID=worker_id)

    async with WorkerProcess(tmp_path, env("paused"), name="paused") as paused:
        first = await wait_for_state(broker, task_id, TaskState.ACTIVE, within=STARTUP)
        assert (first.worker_id, first.attempt) == ("paused", 1)
        paused.send_signal(signal.SIGSTOP)

        async with WorkerProcess(tmp_path, env("standby"), name="standby") as standby:

            async def taken_over() -> bool:
                return (await broker.get(task_id)).worker_id == "standby"

            await wait_until(taken_over, "the standby runs the task", within=STARTUP)
            paused.send_signal(signal.SIGCONT)
            # Its lease ran out while it was stopped: trio cancels the body before it goes on,
            # or, when the stop came between the claim and the start, the slot never starts it.
            await paused.wait_for_log(
                f"task {task_id} (sleep) attempt 1 stopped: its lease ran out",
                or_=(f"not starting task {task_id}: its lease ran out",),
            )
            await wait_for_worker(broker, "paused")  # beating again, registered again

            second = await broker.get(task_id)
            assert (second.state, second.worker_id, second.attempt) == (
                TaskState.ACTIVE,
                "standby",
                2,
            )
            assert await broker.cancel(task_id) == "requested"
            last = await wait_for_state(broker, task_id, within=2)
            assert (last.state, last.attempt) == (TaskState.CANCELLED, 2)
            assert (await broker.stats()).totals["reaped"] == 1
            await assert_invariants(broker)

            for worker in (paused, standby):
                worker.send_signal(signal.SIGTERM)
                assert await worker.wait_exit() == 0


async def test_a_killed_workers_tasks_return_as_soon_as_a_worker_of_its_host_starts(
    redis_url: str, broker: Broker, tmp_path: Path
) -> None:
    # A worker timeout far beyond the test's patience: only the dead process can give it away.
    def env(worker_id: str) -> dict[str, str]:
        return worker_env(
            redis_url,
            TASKQUEUE_WORKER__ID=worker_id,
            TASKQUEUE_WORKER__CONCURRENCY="50",
            TASKQUEUE_WORKER__PREFETCH="50",
            TASKQUEUE_WORKER__WORKER_TIMEOUT="1h",
            TASKQUEUE_WORKER__HEARTBEAT_INTERVAL="1s",
        )

    ids = await submit_many(broker, "sleep", ({"seconds": 3} for _ in range(100)))
    async with WorkerProcess(tmp_path, env("doomed"), name="doomed") as doomed:
        await wait_for_running(broker, "doomed", 100)  # 50 running, 50 prefetched
        doomed.send_signal(signal.SIGKILL)
        assert await doomed.wait_exit() == -signal.SIGKILL
    assert (await broker.stats()).by_state[TaskState.ACTIVE] == 100

    async with WorkerProcess(tmp_path, env("rescuer"), name="rescuer") as rescuer:
        record = await rescuer.wait_for_log("worker(s) of this host died", within=STARTUP)
        assert "doomed" in record["message"] and "100 task(s)" in record["message"]
        await wait_for_count(broker, TaskState.SUCCEEDED, 100, within=STARTUP)
        assert [w.id for w in await broker.workers()] == ["rescuer"]
        await assert_invariants(broker)

    tasks = await tasks_of(broker, ids)
    assert Counter((t.state, t.attempt) for t in tasks) == {(TaskState.SUCCEEDED, 2): 100}
    totals = (await broker.stats()).totals
    assert (totals["reaped"], totals["workers_removed"]) == (100, 1)
