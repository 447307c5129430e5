"""Deadlines (``expires_in`` / ``expires_at``): a task not started by its deadline ends
``expired``, never run and never retried, whichever script meets it past its deadline: a claim,
a promote (the scheduler's sweep), a report or the reaper."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from broker_helpers import (
    TYPE,
    cancelled,
    claim_one,
    failed,
    make_dead,
    released,
    state_of,
    submit,
    succeeded,
    zscore,
)
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Broker, Report, Retention, Submission
from taskqueue.errors import InvalidTaskError
from taskqueue.models import Priority, TaskState
from taskqueue.outcomes import OutcomeKind


async def test_a_task_keeps_its_deadline_and_runs_before_it(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker, expires_in=5)
    task = await broker.get(task_id)
    assert task.expires_ms == clock() + 5000
    assert await zscore(broker, broker.keys.deadlines, task_id) == clock() + 5000

    clock.advance(4.999)
    claimed = await claim_one(broker)
    assert await broker.report([succeeded(claimed, 1)]) == [TaskState.SUCCEEDED]
    assert await zscore(broker, broker.keys.deadlines, task_id) is None  # gone when it ends
    await assert_invariants(broker)


async def test_a_claim_ends_a_task_past_its_deadline_and_takes_the_next_one(
    broker: Broker, clock: FakeClock
) -> None:
    doomed = await submit(broker, expires_in=1, priority="high")
    other = await submit(broker, expires_in=1, priority="high")
    kept = await submit(broker, priority="high")
    clock.advance(1)  # at the deadline: too late to start

    claim = await broker.claim_batch("w1", [TYPE], 1)

    assert [t.id for t in claim.tasks] == [kept]
    assert claim.expired == [(TYPE, Priority.HIGH), (TYPE, Priority.HIGH)]
    for task_id in (doomed, other):
        task = await broker.get(task_id)
        assert (task.state, task.attempt, task.finished_ms) == (TaskState.EXPIRED, 0, clock())
        assert task.error == "its deadline passed before it started"
    stats = await broker.stats()
    assert stats.by_state[TaskState.EXPIRED] == 2
    assert stats.totals["expired"] == 2
    await assert_invariants(broker)


@pytest.mark.parametrize("waiting", ["pending", "scheduled", "blocked"])
async def test_promote_ends_waiting_tasks_past_their_deadline(
    broker: Broker, clock: FakeClock, waiting: str
) -> None:
    fields: dict[str, Any] = {"expires_in": 2}
    if waiting == "scheduled":
        fields["delay"] = 1
    elif waiting == "blocked":
        fields["depends_on"] = [await submit(broker, "other")]
    task_id = await submit(broker, **fields)
    assert await state_of(broker, task_id) == TaskState(waiting)
    assert (await broker.promote()).next_due_ms == clock() + (
        1000 if waiting == "scheduled" else 2000
    )

    clock.advance(1.999)
    if waiting == "scheduled":
        assert (await broker.promote()).promoted == 1  # its start came first: pending now
    assert (await broker.promote()).expired == []
    clock.advance(0.001)
    result = await broker.promote()

    assert result.expired == [(TYPE, Priority.MEDIUM)]
    assert await state_of(broker, task_id) == TaskState.EXPIRED
    assert await broker.claim("w1", [TYPE], 10) == []
    await assert_invariants(broker)


async def test_a_promote_leaves_a_running_task_to_its_report(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker, expires_in=1)
    task = await claim_one(broker)
    clock.advance(2)

    assert (await broker.promote()).expired == []
    assert await state_of(broker, task_id) == TaskState.ACTIVE  # it started in time
    assert await zscore(broker, broker.keys.deadlines, task_id) is None
    assert await broker.report([succeeded(task, "done")]) == [TaskState.SUCCEEDED]
    await assert_invariants(broker)


async def test_a_retry_that_would_start_after_the_deadline_ends_expired(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=10.0, retry_max_delay=10.0)
    task_id = await submit(broker, expires_in=1, max_retries=5)
    task = await claim_one(broker)

    # The seeded jitter puts the retry seconds away, past the deadline.
    states = await broker.report([failed(task, "flaky")])
    task_view = await broker.get(task_id)
    assert states == [TaskState.EXPIRED]
    assert (task_view.state, task_view.error, task_view.attempt) == (TaskState.EXPIRED, "flaky", 1)
    stats = await broker.stats()
    assert stats.totals.get("retried", 0) == 0
    assert stats.totals["failed"] == 1
    await assert_invariants(broker)


async def test_a_retry_within_the_deadline_is_scheduled_as_usual(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=1.0, retry_max_delay=1.0)
    task_id = await submit(broker, expires_in=60, max_retries=5)
    task = await claim_one(broker)
    assert await broker.report([failed(task)]) in ([TaskState.SCHEDULED], [TaskState.PENDING])
    assert await zscore(broker, broker.keys.deadlines, task_id) == clock() + 60_000
    await assert_invariants(broker)


async def test_a_snooze_past_the_deadline_ends_expired(broker: Broker, clock: FakeClock) -> None:
    task_id = await submit(broker, expires_in=10)
    task = await claim_one(broker)
    snooze = Report(
        task_id=task.id, attempt=task.attempt, kind=OutcomeKind.SNOOZED, snooze_ms=10_000
    )
    assert await broker.report([snooze]) == [TaskState.EXPIRED]
    done = await broker.get(task_id)
    assert (done.state, done.snoozes, done.attempt) == (TaskState.EXPIRED, 1, 0)
    await assert_invariants(broker)


async def test_a_task_released_at_shutdown_after_its_deadline_ends_expired(
    broker: Broker, clock: FakeClock
) -> None:
    late = await submit(broker, expires_in=1)
    in_time = await submit(broker, expires_in=10)
    first, second = await broker.claim("w1", [TYPE], 2)
    clock.advance(1)

    assert await broker.report([released(first), released(second)]) == [
        TaskState.EXPIRED,
        TaskState.PENDING,
    ]
    assert await state_of(broker, late) == TaskState.EXPIRED
    assert await state_of(broker, in_time) == TaskState.PENDING
    await assert_invariants(broker)


async def test_a_reaped_lease_past_the_deadline_ends_expired(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=0.0)
    task_id = await submit(broker, expires_in=1, max_retries=5)
    await claim_one(broker)
    clock.advance(broker.settings.lease_ttl + 1)

    result = await broker.reap()

    assert [(t.id, t.state) for t in result.outcomes] == [(task_id, TaskState.EXPIRED)]
    await assert_invariants(broker)


async def test_an_expired_dependency_cancels_its_dependents(
    broker: Broker, clock: FakeClock
) -> None:
    parent = await submit(broker, "parent", expires_in=1)
    child = await submit(broker, depends_on=[parent])
    runs_anyway = await submit(broker, depends_on=[parent], on_dependency_failure="run")
    clock.advance(1)
    await broker.promote()

    assert await state_of(broker, child) == TaskState.CANCELLED
    assert (await broker.get(child)).error == f"dependency {parent} ended expired"
    assert await state_of(broker, runs_anyway) == TaskState.PENDING
    late = await broker.enqueue(Submission(type=TYPE, depends_on=[parent]))
    assert late.state == TaskState.CANCELLED  # a dependency already expired
    await assert_invariants(broker)


async def test_an_expired_unique_task_lets_go_of_its_key(broker: Broker, clock: FakeClock) -> None:
    first = await submit(broker, payload="x", unique=True, expires_in=1)
    clock.advance(1)
    await broker.promote()
    again = await broker.enqueue(Submission(type=TYPE, payload="x", unique=True))
    assert again.created and again.id != first
    await assert_invariants(broker)


async def test_a_cancelled_task_leaves_the_deadlines(broker: Broker, clock: FakeClock) -> None:
    waiting = await submit(broker, expires_in=5)
    assert await broker.cancel(waiting) == "cancelled"
    running = await submit(broker, expires_in=5)
    task = await claim_one(broker)
    assert task.id == running
    assert await broker.report([cancelled(task)]) == [TaskState.CANCELLED]
    assert await broker.redis.execute("ZCARD", broker.keys.deadlines) == 0
    await assert_invariants(broker)


async def test_a_requeued_dead_letter_runs_whatever_its_deadline_was(
    broker: Broker, clock: FakeClock
) -> None:
    (task_id,) = await make_dead(broker, 1)
    await broker.redis.execute("HSET", broker.keys.task(task_id), "expires_ms", clock() + 1)
    clock.advance(5)
    await broker.requeue_dead(task_id)
    task = await broker.get(task_id)
    assert (task.state, task.expires_ms) == (TaskState.PENDING, None)
    assert (await claim_one(broker)).id == task_id
    await assert_invariants(broker)


async def test_expired_records_are_trimmed_by_their_own_retention(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retention=Retention(expired=60, expired_max=0))
    task_id = await submit(broker, expires_in=1)
    clock.advance(1)
    await broker.promote()
    assert (await broker.trim()).expired == 0
    clock.advance(60)
    result = await broker.trim()
    assert (result.expired, result.total) == (1, 1)
    assert await broker.get_many([task_id]) == [None]
    await assert_invariants(broker)


async def test_expired_tasks_can_be_listed_and_purged(broker: Broker, clock: FakeClock) -> None:
    ids = [await submit(broker, expires_in=1) for _ in range(3)]
    clock.advance(1)
    await broker.promote()
    page = await broker.list_tasks(TaskState.EXPIRED)
    assert sorted(t.id for t in page.items) == sorted(ids)
    assert await broker.purge(TaskState.EXPIRED) == 3
    assert (await broker.stats()).by_state[TaskState.EXPIRED] == 0
    await assert_invariants(broker)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"expires_in": 1, "expires_at": 2e9}, "expires_in", "either expires_in or expires_at"),
        ({"expires_at": 1.0}, "expires_at", "has passed already"),
        ({"expires_in": 5, "delay": 5}, "expires_in", "after the task's start (delay)"),
        ({"expires_at": +30, "eta": +31}, "expires_at", "after the task's start (eta)"),
        ({"expires_at": 9e9}, "expires_at", "less than 10 years from now"),
        ({"expires_in": 0}, "expires_in", "Expected float > 0"),
        ({"expires_in": -1}, "expires_in", "Expected float > 0"),
    ],
)
async def test_a_deadline_that_could_never_be_met_is_refused(
    broker: Broker, clock: FakeClock, fields: dict[str, float], field: str, message: str
) -> None:
    if "eta" in fields:  # seconds from the fake clock's now
        now_s = clock() / 1000
        fields = {name: now_s + value for name, value in fields.items()}
    with pytest.raises(InvalidTaskError, match=re.escape(message)) as info:
        await broker.enqueue(Submission(type=TYPE, **fields))  # type: ignore[arg-type]
    assert info.value.field == field
    assert (await broker.stats()).totals == {}


async def test_expires_at_takes_a_time_with_its_zone(broker: Broker, clock: FakeClock) -> None:
    at = datetime.fromtimestamp(clock() / 1000 + 30, UTC)
    task_id = await submit(broker, expires_at=at)
    assert (await broker.get(task_id)).expires_ms == clock() + 30_000
