"""Cancelling: waiting tasks at once, running ones by request to their worker."""

from __future__ import annotations

import pytest
import trio
from broker_helpers import (
    cancelled,
    claim,
    claim_one,
    failed,
    make_dead,
    ready_list,
    released,
    state_of,
    submit,
    submit_many,
    succeeded,
    zscore,
)
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.errors import ConflictingStateError, TaskNotFoundError
from taskqueue.models import TaskState
from taskqueue.redis import Redis


async def test_cancel_of_a_pending_task_takes_it_out_of_its_queue(
    broker: Broker, clock: FakeClock
) -> None:
    before, target, after = await submit_many(broker, 3)

    assert await broker.cancel(target) == "cancelled"

    assert await ready_list(broker, "medium") == [before, after]
    task = await broker.get(target)
    assert (task.state, task.finished_ms) == (TaskState.CANCELLED, clock())
    assert task.error == "cancelled before it ran"
    assert [t.id for t in await claim(broker, 10)] == [before, after]
    await assert_invariants(broker)


async def test_cancel_of_a_scheduled_task_takes_it_off_the_schedule(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker, delay=60)

    assert await broker.cancel(task_id) == "cancelled"

    assert await zscore(broker, broker.keys.scheduled, task_id) is None
    assert await state_of(broker, task_id) is TaskState.CANCELLED
    clock.advance(60)
    assert (await broker.promote()).promoted == 0
    await assert_invariants(broker)


async def test_cancel_of_a_running_task_flags_it_and_tells_its_worker(
    broker: Broker, redis: Redis
) -> None:
    task_id = await submit(broker)
    await claim_one(broker, worker="worker-9")

    async with redis.subscribe(broker.keys.cancel_channel) as subscription:
        outcome = await broker.cancel(task_id)
        with trio.fail_after(5):
            channel, message = await subscription.get_message()

    assert outcome == "requested"
    assert (channel, message) == (broker.keys.cancel_channel, f"worker-9 {task_id}")
    task = await broker.get(task_id)
    assert (task.state, task.cancel_requested) == (TaskState.ACTIVE, True)
    await assert_invariants(broker)


async def test_running_task_whose_worker_confirms_the_cancel_ends_cancelled(
    broker: Broker,
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    await broker.cancel(task_id)

    assert await broker.report([cancelled(task, "cancelled at request")]) == [TaskState.CANCELLED]
    assert (await broker.get(task_id)).error == "cancelled at request"


async def test_running_task_released_after_a_cancel_request_ends_cancelled(
    broker: Broker,
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    await broker.cancel(task_id)

    assert await broker.report([released(task)]) == [TaskState.CANCELLED]
    assert await claim(broker) == []
    await assert_invariants(broker)


async def test_running_task_failing_after_a_cancel_request_is_not_retried(
    broker: Broker,
) -> None:
    task_id = await submit(broker, max_retries=5)
    task = await claim_one(broker)
    await broker.cancel(task_id)

    assert await broker.report([failed(task, "interrupted")]) == [TaskState.CANCELLED]
    stored = await broker.get(task_id)
    assert (stored.state, stored.error) == (TaskState.CANCELLED, "interrupted")
    await assert_invariants(broker)


async def test_running_task_succeeding_despite_a_cancel_request_keeps_its_result(
    broker: Broker,
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    await broker.cancel(task_id)

    assert await broker.report([succeeded(task, 42)]) == [TaskState.SUCCEEDED]
    assert (await broker.get(task_id)).result == 42


@pytest.mark.parametrize("outcome", ["succeeded", "cancelled", "dead"])
async def test_cancel_of_a_finished_task_is_a_conflict(
    make_broker: MakeBroker, outcome: str
) -> None:
    broker = make_broker()
    if outcome == "dead":
        (task_id,) = await make_dead(broker, 1)
    else:
        task_id = await submit(broker)
        task = await claim_one(broker)
        await broker.report([succeeded(task) if outcome == "succeeded" else cancelled(task)])
    before = await broker.get(task_id)

    with pytest.raises(ConflictingStateError, match=f"already ended \\({outcome}\\)"):
        await broker.cancel(task_id)

    assert await broker.get(task_id) == before


async def test_cancel_of_an_unknown_task_is_not_found(broker: Broker) -> None:
    with pytest.raises(TaskNotFoundError) as caught:
        await broker.cancel("no-such-task")

    assert caught.value.task_id == "no-such-task"


async def test_cancelled_tasks_are_counted(broker: Broker) -> None:
    ids = await submit_many(broker, 3)
    for task_id in ids[:2]:
        await broker.cancel(task_id)

    stats = await broker.stats()

    assert stats.by_state[TaskState.CANCELLED] == 2
    assert stats.by_state[TaskState.PENDING] == 1
    assert stats.totals["cancelled"] == 2
