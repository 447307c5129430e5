"""Reading: single tasks, listings by state with type filters and cursors, and statistics."""

from __future__ import annotations

from typing import Any

import pytest
from broker_helpers import cancelled, claim_one, failed, submit, submit_many, succeeded
from conftest import FakeClock
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.broker.keys import COUNTED_STATES
from taskqueue.errors import InvalidTaskError, TaskNotFoundError
from taskqueue.models import PRIORITY_ORDER, Priority, TaskState

TYPES = ("a", "b")

#: Per state, (sort key in the listing's order, type, id) of every task.
Population = dict[TaskState, list[tuple[Any, str, str]]]


async def populate(broker: Broker, clock: FakeClock) -> Population:
    """Tasks of types a and b in every state, each with its place in its state's listing.

    Listing orders: pending by priority, then type, then first in first out; blocked by
    creation time; scheduled by ready time; active by lease deadline; finished states newest first.
    """
    tasks: Population = {state: [] for state in TaskState}
    for _ in range(2):
        for task_type in TYPES:
            await submit_many(broker, 4, task_type, max_retries=0)
            claimed = []
            for _ in range(4):
                clock.advance(1)
                claimed.append(await claim_one(broker, task_type))
            running = claimed[0]
            lease = running.started_ms + int(broker.settings.lease_ttl * 1000)
            tasks[TaskState.ACTIVE].append((lease, task_type, running.id))
            clock.advance(1)
            blocked = await submit(broker, task_type, depends_on=[running.id])
            tasks[TaskState.BLOCKED].append((clock(), task_type, blocked))
            for report, state in (
                (succeeded(claimed[1]), TaskState.SUCCEEDED),
                (failed(claimed[2]), TaskState.DEAD),
                (cancelled(claimed[3]), TaskState.CANCELLED),
            ):
                clock.advance(1)
                assert await broker.report([report]) == [state]
                tasks[state].append((-clock(), task_type, report.task_id))
            clock.advance(1)
            doomed = await submit(broker, task_type, expires_in=1)
            clock.advance(1000)
            assert (await broker.promote()).expired == [(task_type, Priority.MEDIUM)]
            tasks[TaskState.EXPIRED].append((-clock(), task_type, doomed))
    seq = 0
    for task_type in TYPES:
        for priority in (Priority.LOW, Priority.CRITICAL, Priority.MEDIUM, Priority.CRITICAL):
            task_id = await submit(broker, task_type, priority=priority)
            tasks[TaskState.PENDING].append(
                ((PRIORITY_ORDER.index(priority), task_type, seq), task_type, task_id)
            )
            seq += 1
        for delay in (30, 10, 20):
            clock.advance(1)
            task_id = await submit(broker, task_type, delay=delay)
            tasks[TaskState.SCHEDULED].append((clock() + delay * 1000, task_type, task_id))
    return tasks


def expected(tasks: Population, state: TaskState, task_type: str | None) -> list[str]:
    return [i for _, t, i in sorted(tasks[state]) if task_type in (None, t)]


async def list_all(
    broker: Broker, state: TaskState, limit: int, task_type: str | None = None
) -> list[str]:
    """Every id of a listing, following its cursor from page to page."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page = await broker.list_tasks(state, task_type=task_type, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        assert all(t.state is state for t in page.items)
        assert all(task_type in (None, t.type) for t in page.items)
        ids += [t.id for t in page.items]
        if page.next_cursor is None:
            return ids
        assert page.items, "a page with a cursor to follow must not be empty"
        cursor = page.next_cursor
    raise AssertionError("the cursor never ended")


# -- get ---------------------------------------------------------------------------------


async def test_get_returns_the_task_and_raises_not_found_for_an_unknown_id(
    broker: Broker,
) -> None:
    task_id = await submit(broker, payload=[1, 2])

    assert (await broker.get(task_id)).payload == [1, 2]
    with pytest.raises(TaskNotFoundError, match="no task with id 'nope'"):
        await broker.get("nope")


async def test_get_many_returns_none_in_place_of_unknown_ids(broker: Broker) -> None:
    one = await submit(broker, payload=1)
    two = await submit(broker, payload=2)

    tasks = await broker.get_many([two, "nope", one])

    assert [t.payload if t else None for t in tasks] == [2, None, 1]
    assert await broker.get_many([]) == []


# -- list_tasks ----------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(TaskState))
async def test_listing_pages_cover_every_task_of_a_state_once_in_order(
    broker: Broker, clock: FakeClock, state: TaskState
) -> None:
    tasks = await populate(broker, clock)
    await assert_invariants(broker)

    for task_type in (None, *TYPES, "unknown"):
        want = expected(tasks, state, task_type)
        assert (len(want) >= 2) is (task_type != "unknown")
        for limit in (1, 3, 100):
            assert await list_all(broker, state, limit, task_type) == want, (task_type, limit)


async def test_pending_listing_cursor_survives_a_new_task_type(broker: Broker) -> None:
    b = [await submit(broker, "b") for _ in range(3)]
    c = await submit(broker, "c")
    page = await broker.list_tasks(TaskState.PENDING, limit=2)
    assert [t.id for t in page.items] == b[:2]

    await submit(broker, "a")  # sorts before the types the cursor has passed
    rest = await broker.list_tasks(TaskState.PENDING, limit=10, cursor=page.next_cursor)

    assert [t.id for t in rest.items] == [b[2], c]


async def test_listing_filtered_by_a_rare_type_finds_it_among_many(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.enqueue_many([Submission(type="common", delay=5)] * 450)
    rare = []
    for _ in range(3):
        clock.advance(ms=1)
        rare.append(await submit(broker, "rare", delay=6))

    assert await list_all(broker, TaskState.SCHEDULED, 2, "rare") == rare


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_listing_limit_out_of_range_is_refused(broker: Broker, limit: int) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        await broker.list_tasks(TaskState.DEAD, limit=limit)

    assert caught.value.field == "limit"


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.SCHEDULED, TaskState.DEAD])
@pytest.mark.parametrize("cursor", ["x", "-1", "1:2:3", "1:x"])
async def test_listing_with_a_malformed_cursor_is_refused(
    broker: Broker, state: TaskState, cursor: str
) -> None:
    await submit(broker)

    with pytest.raises(InvalidTaskError) as caught:
        await broker.list_tasks(state, cursor=cursor)

    assert caught.value.field == "cursor"


# -- stats -----------------------------------------------------------------------------------


async def test_stats_match_the_tasks_in_every_state(broker: Broker, clock: FakeClock) -> None:
    tasks = await populate(broker, clock)

    stats = await broker.stats()

    assert stats.by_state == {state: len(tasks[state]) for state in TaskState}
    assert stats.pending_by_priority == {
        Priority.CRITICAL: 4,
        Priority.HIGH: 0,
        Priority.MEDIUM: 2,
        Priority.LOW: 2,
    }
    assert stats.pending_by_type == {"a": 4, "b": 4}
    assert stats.by_state_and_type == {
        (state, t): len(expected(tasks, state, t)) for state in COUNTED_STATES for t in TYPES
    }
    assert stats.totals == {
        "submitted": 16 + 4 + 4 + 14,
        "succeeded": 4,
        "failed": 4,
        "dead": 4,
        "cancelled": 4,
        "expired": 4,
    }
    await assert_invariants(broker)


async def test_stats_of_an_empty_namespace_are_all_zero(broker: Broker) -> None:
    stats = await broker.stats()

    assert set(stats.by_state.values()) == {0}
    assert set(stats.pending_by_priority.values()) == {0}
    assert stats.pending_by_type == {}
    assert stats.by_state_and_type == {}
    assert stats.totals == {}
