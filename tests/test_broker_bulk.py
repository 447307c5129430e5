"""Bulk operations: cancelling every waiting task of a type in bounded steps, and purging a
finished state."""

from __future__ import annotations

import pytest
import trio
from broker_helpers import (
    claim,
    claim_one,
    command_calls,
    make_dead,
    ready_list,
    state_of,
    submit,
    submit_many,
    succeeded,
)
from conftest import FakeClock
from invariants import assert_invariants

from taskqueue._json import loads
from taskqueue.broker import Broker, Submission
from taskqueue.broker.operations import CANCEL_CHUNK
from taskqueue.errors import InvalidTaskError
from taskqueue.models import Priority, TaskState
from taskqueue.redis import Redis


async def _submit_spread(broker: Broker, task_type: str, n: int) -> dict[str, list[str]]:
    """``n`` tasks of ``task_type``, a quarter scheduled and the rest over every priority."""
    ids: dict[str, list[str]] = {}
    priorities = list(Priority)
    for start in range(0, n, 1000):
        batch = []
        for i in range(start, min(n, start + 1000)):
            if i % 4 == 0:
                batch.append(Submission(type=task_type, payload=i, delay=60 + i))
            else:
                batch.append(Submission(type=task_type, payload=i, priority=priorities[i % 4]))
        for submission, done in zip(batch, await broker.enqueue_many(batch), strict=True):
            ids.setdefault(done.state.value, []).append(done.id)
            assert submission.type == task_type
    return ids


async def test_a_bulk_cancel_of_5000_tasks_across_priorities_and_schedule_cancels_only_them(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    mine = await _submit_spread(broker, "report.build", 5000)
    others = await _submit_spread(broker, "mail.send", 400)
    before = await broker.stats()

    async with redis.subscribe(broker.keys.events_channel) as subscription:
        cancellation = await broker.cancel_all("report.build")
        events: list[list[str]] = []
        with trio.move_on_after(5):
            while sum(len(e) for e in events) < 5000:
                _, message = await subscription.get_message()
                events.append(loads(message))

    assert cancellation.by_state == {TaskState.PENDING: 3750, TaskState.SCHEDULED: 1250}
    assert cancellation.cancelled == 5000
    assert cancellation.requested == 0
    assert sum(cancellation.by_priority.values()) == 5000
    assert len(events) >= 5000 // CANCEL_CHUNK  # batched: one message per step, not per task
    flat = [e for message in events for e in message]
    assert len(flat) == 5000
    assert {tuple(e[1:]) for e in flat} == {("report.build", "cancelled")}
    stats = await broker.stats()
    assert stats.by_state[TaskState.CANCELLED] == 5000
    assert stats.totals["cancelled"] == before.totals.get("cancelled", 0) + 5000
    for state in (TaskState.PENDING, TaskState.SCHEDULED):
        assert stats.by_state_and_type.get((state, "report.build"), 0) == 0
        assert stats.by_state_and_type[(state, "mail.send")] == len(others[state.value])
    assert "report.build" not in await redis.execute("SMEMBERS", broker.keys.types)
    for task_id in mine["pending"][:3] + mine["scheduled"][:3]:
        task = await broker.get(task_id)
        assert (task.state, task.error) == (TaskState.CANCELLED, "cancelled before it ran")
    await assert_invariants(broker)
    clock.advance(10_000)
    assert (await broker.promote()).promoted == len(others["scheduled"])


async def test_each_step_of_a_bulk_cancel_is_one_bounded_script(broker: Broker) -> None:
    await submit_many(broker, 2500, "report.build")
    calls = await command_calls(broker)

    assert (await broker.cancel_all("report.build")).cancelled == 2500

    after = await command_calls(broker)
    scripts = after.get("evalsha", 0) - calls.get("evalsha", 0)
    assert 3 <= scripts <= 2 + 2500 // CANCEL_CHUNK + 1  # the scheduled step, the pending ones
    await assert_invariants(broker)


async def test_a_bulk_cancel_of_one_state_leaves_the_other(broker: Broker) -> None:
    pending = await submit_many(broker, 30, "report.build")
    scheduled = await submit_many(broker, 20, "report.build", delay=60)

    cancellation = await broker.cancel_all("report.build", states=[TaskState.SCHEDULED])

    assert cancellation.by_state == {TaskState.SCHEDULED: 20}
    assert {await state_of(broker, i) for i in scheduled} == {TaskState.CANCELLED}
    assert await ready_list(broker, "medium", "report.build") == pending
    await assert_invariants(broker)


async def test_a_bulk_cancel_flags_the_running_tasks_only_when_asked(
    broker: Broker, redis: Redis
) -> None:
    await submit_many(broker, 3, "report.build")
    other = await submit(broker, "mail.send")
    running = [t.id for t in await claim(broker, 2, ("report.build",), worker="worker-7")]
    await claim_one(broker, "mail.send", worker="worker-7")

    plain = await broker.cancel_all("report.build")
    assert (plain.cancelled, plain.requested) == (1, 0)
    assert not any([(await broker.get(i)).cancel_requested for i in running])

    async with redis.subscribe(broker.keys.cancel_channel) as subscription:
        flagged = await broker.cancel_all("report.build", include_active=True)
        messages: list[str] = []
        with trio.fail_after(5):
            while len(messages) < 2:
                messages.append((await subscription.get_message())[1])

    assert (flagged.cancelled, flagged.requested) == (0, 2)
    assert sorted(messages) == sorted(f"worker-7 {i}" for i in running)
    for task_id in running:
        task = await broker.get(task_id)
        assert (task.state, task.cancel_requested) == (TaskState.ACTIVE, True)
    assert not (await broker.get(other)).cancel_requested
    await assert_invariants(broker)


async def test_a_bulk_cancel_finds_a_type_among_many_scheduled_of_others(broker: Broker) -> None:
    for _ in range(3):
        await submit_many(broker, 1000, "mail.send", delay=30)
        await submit_many(broker, 5, "report.build", delay=30)

    cancellation = await broker.cancel_all("report.build", states=[TaskState.SCHEDULED])

    assert cancellation.cancelled == 15
    assert (await broker.stats()).by_state[TaskState.SCHEDULED] == 3000
    await assert_invariants(broker)


@pytest.mark.parametrize(
    ("states", "message"),
    [
        ([TaskState.ACTIVE], "not active; ask for running tasks with include_active"),
        ([TaskState.SUCCEEDED], "not succeeded"),
    ],
)
async def test_a_bulk_cancel_refuses_states_that_do_not_wait(
    broker: Broker, states: list[TaskState], message: str
) -> None:
    with pytest.raises(InvalidTaskError, match=message) as caught:
        await broker.cancel_all("report.build", states=states)
    assert caught.value.field == "states"


async def test_a_bulk_cancel_refuses_an_invalid_type(broker: Broker) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        await broker.cancel_all("no spaces allowed")
    assert caught.value.field == "type"


async def test_a_bulk_cancel_of_a_type_without_tasks_cancels_nothing(broker: Broker) -> None:
    cancellation = await broker.cancel_all("report.build", include_active=True)
    assert (cancellation.cancelled, cancellation.requested) == (0, 0)


async def _finish(broker: Broker, n: int, task_type: str) -> list[str]:
    ids = await submit_many(broker, n, task_type)
    tasks = await claim(broker, n, (task_type,))
    await broker.report([succeeded(t) for t in tasks])
    return ids


async def test_purge_of_succeeded_tasks_of_a_type_keeps_the_others(broker: Broker) -> None:
    await _finish(broker, 700, "report.build")
    kept = await _finish(broker, 300, "mail.send")

    assert await broker.purge(TaskState.SUCCEEDED, "report.build") == 700

    stats = await broker.stats()
    assert stats.by_state[TaskState.SUCCEEDED] == 300
    assert (await broker.get(kept[0])).state is TaskState.SUCCEEDED
    await assert_invariants(broker)
    assert await broker.purge(TaskState.SUCCEEDED) == 300
    assert (await broker.stats()).by_state[TaskState.SUCCEEDED] == 0
    await assert_invariants(broker)


async def test_purge_of_cancelled_tasks_deletes_them_and_leaves_the_rest(broker: Broker) -> None:
    await submit_many(broker, 40, "report.build")
    await broker.cancel_all("report.build")
    (dead,) = await make_dead(broker, 1)
    live = await submit(broker, "report.build")

    assert await broker.purge(TaskState.CANCELLED) == 40

    stats = await broker.stats()
    assert (stats.by_state[TaskState.CANCELLED], stats.by_state[TaskState.DEAD]) == (0, 1)
    assert "purged" not in stats.totals  # the total counts dead letters purged
    assert (await broker.get(live)).state is TaskState.PENDING
    assert (await broker.get(dead)).state is TaskState.DEAD
    await assert_invariants(broker)


async def test_purge_of_the_dead_is_purge_dead(broker: Broker, redis: Redis) -> None:
    await make_dead(broker, 3, "report.build")

    assert await broker.purge(TaskState.DEAD) == 3

    stats = await broker.stats()
    assert (stats.by_state[TaskState.DEAD], stats.totals["purged"]) == (0, 3)
    assert "report.build" not in await redis.execute("SMEMBERS", broker.keys.types)
    await assert_invariants(broker)


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.SCHEDULED, TaskState.ACTIVE])
async def test_purge_refuses_live_states(broker: Broker, state: TaskState) -> None:
    await submit(broker)
    with pytest.raises(InvalidTaskError, match="only finished tasks can be purged") as caught:
        await broker.purge(state)
    assert caught.value.field == "state"


async def test_purge_drops_a_member_whose_record_is_gone(broker: Broker, redis: Redis) -> None:
    kept = await _finish(broker, 2, "report.build")
    await redis.execute("ZADD", broker.keys.succeeded, 1, "no-such-task")

    assert await broker.purge(TaskState.SUCCEEDED, "report.build") == 2
    assert await broker.purge(TaskState.SUCCEEDED) == 0

    assert await redis.execute("ZCARD", broker.keys.succeeded) == 0
    assert kept
    await assert_invariants(broker)
