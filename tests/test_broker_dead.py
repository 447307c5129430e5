"""The dead-letter queue: listing, requeueing and purging tasks that used up their attempts."""

from __future__ import annotations

import pytest
from broker_helpers import (
    claim_one,
    make_dead,
    namespace_keys,
    ready_list,
    submit,
    succeeded,
    zscore,
)
from conftest import FakeClock
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.errors import ConflictingStateError, TaskNotFoundError
from taskqueue.models import Task, TaskState


async def _all_pages(broker: Broker, state: TaskState, limit: int, **kw: str) -> list[Task]:
    items: list[Task] = []
    cursor = None
    while True:
        page = await broker.list_tasks(state, limit=limit, cursor=cursor, **kw)
        assert len(page.items) <= limit
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


async def test_dead_letters_are_listed_newest_first_in_pages(
    broker: Broker, clock: FakeClock
) -> None:
    ids = []
    for _ in range(5):
        clock.advance(1)
        ids += await make_dead(broker, 1)

    first = await broker.list_tasks(TaskState.DEAD, limit=2)
    listed = await _all_pages(broker, TaskState.DEAD, limit=2)

    assert [t.id for t in first.items] == ids[::-1][:2]
    assert first.next_cursor is not None
    assert [t.id for t in listed] == ids[::-1]
    assert all(t.state is TaskState.DEAD and t.error == "boom" for t in listed)


async def test_requeue_gives_a_dead_task_fresh_attempts_at_the_back_of_its_queue(
    broker: Broker,
) -> None:
    (dead,) = await make_dead(broker, 1)
    waiting = await submit(broker)

    await broker.requeue_dead(dead)

    task = await broker.get(dead)
    assert task.state is TaskState.PENDING
    assert task.attempt == 0
    assert (task.finished_ms, task.started_ms, task.worker_id) == (None, None, None)
    assert await zscore(broker, broker.keys.dead, dead) is None
    assert await ready_list(broker, "medium") == [waiting, dead]
    assert (await broker.stats()).totals["requeued"] == 1
    await claim_one(broker)
    assert (await claim_one(broker)).attempt == 1
    await assert_invariants(broker)


async def test_requeue_of_a_task_that_is_not_dead_is_a_conflict(broker: Broker) -> None:
    task_id = await submit(broker)

    with pytest.raises(ConflictingStateError, match="is pending, not in the dead-letter queue"):
        await broker.requeue_dead(task_id)

    assert await ready_list(broker, "medium") == [task_id]


async def test_requeue_of_an_unknown_task_is_not_found(broker: Broker) -> None:
    with pytest.raises(TaskNotFoundError):
        await broker.requeue_dead("no-such-task")


async def test_requeue_all_dead_requeues_every_dead_letter(broker: Broker) -> None:
    await make_dead(broker, 3, "a")
    await make_dead(broker, 2, "b")
    await submit(broker, "a")

    assert await broker.requeue_all_dead() == 5

    stats = await broker.stats()
    assert stats.by_state[TaskState.DEAD] == 0
    assert stats.pending_by_type == {"a": 4, "b": 2}
    await assert_invariants(broker)


async def test_requeue_all_dead_of_a_type_leaves_the_other_types_dead(broker: Broker) -> None:
    a = await make_dead(broker, 3, "a")
    b = await make_dead(broker, 2, "b")

    assert await broker.requeue_all_dead("a") == 3

    states = {t.id: t.state for t in await broker.get_many(a + b) if t}
    assert states == {**dict.fromkeys(a, TaskState.PENDING), **dict.fromkeys(b, TaskState.DEAD)}
    assert await broker.requeue_all_dead("a") == 0
    await assert_invariants(broker)


async def test_requeue_and_purge_by_type_work_across_many_interleaved_dead_letters(
    broker: Broker,
) -> None:
    # More than one internal chunk (500) of dead letters, the types interleaved by time.
    for _ in range(3):
        await make_dead(broker, 300, "a")
        await make_dead(broker, 300, "b")

    assert await broker.requeue_all_dead("b") == 900
    assert await broker.purge_dead("a") == 900

    stats = await broker.stats()
    assert stats.by_state[TaskState.DEAD] == 0
    assert stats.pending_by_type == {"b": 900}
    await assert_invariants(broker)


async def test_purge_dead_deletes_every_dead_letter_for_good(broker: Broker) -> None:
    dead = await make_dead(broker, 4)
    alive = await submit(broker)

    assert await broker.purge_dead() == 4

    assert await broker.get_many(dead) == [None] * 4
    assert (await broker.get(alive)).state is TaskState.PENDING
    assert await broker.redis.execute("EXISTS", broker.keys.dead) == 0
    assert (await broker.stats()).totals["purged"] == 4
    await assert_invariants(broker)


async def test_purge_dead_of_a_type_keeps_the_other_types(broker: Broker) -> None:
    a = await make_dead(broker, 2, "a")
    b = await make_dead(broker, 3, "b")

    assert await broker.purge_dead("b") == 3

    assert await broker.get_many(b) == [None] * 3
    assert {t.state for t in await broker.get_many(a) if t} == {TaskState.DEAD}
    await assert_invariants(broker)


async def test_purge_and_requeue_of_an_empty_dead_letter_queue_do_nothing(
    broker: Broker,
) -> None:
    assert await broker.purge_dead() == 0
    assert await broker.requeue_all_dead() == 0
    assert await namespace_keys(broker) == []


async def test_purge_dead_leaves_finished_tasks_alone(broker: Broker) -> None:
    await submit(broker)
    done = await claim_one(broker)
    await broker.report([succeeded(done)])

    assert await broker.purge_dead() == 0
    assert (await broker.get(done.id)).state is TaskState.SUCCEEDED
