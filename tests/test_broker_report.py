"""Reporting outcomes: success, failure with backoff, dead letters, fencing, release, trimming."""

from __future__ import annotations

import math
import random

import pytest
from broker_helpers import (
    cancelled,
    claim,
    claim_one,
    command_calls,
    failed,
    ready_list,
    released,
    submit,
    submit_many,
    succeeded,
    zscore,
)
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Broker, Report
from taskqueue.models import TaskState
from taskqueue.outcomes import OutcomeKind
from taskqueue.redis import ResponseError


async def test_success_stores_the_result_and_the_finish_time(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    clock.advance(2)

    states = await broker.report([succeeded(task, {"sent": 3, "ids": ["m1"]})])

    assert states == [TaskState.SUCCEEDED]
    stored = await broker.get(task_id)
    assert stored.state is TaskState.SUCCEEDED
    assert stored.result == {"sent": 3, "ids": ["m1"]}
    assert stored.finished_ms == clock()
    assert await zscore(broker, broker.keys.active, task_id) is None
    assert await zscore(broker, broker.keys.succeeded, task_id) == clock()
    assert (await broker.stats()).totals["succeeded"] == 1
    await assert_invariants(broker)


async def test_failure_schedules_a_retry_after_capped_exponential_backoff_with_jitter(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=1.0, retry_max_delay=20.0, seed=7)
    jitter = random.Random(7)  # the broker draws one jitter per failure report, in order
    task_id = await submit(broker, max_retries=10)

    for attempt in range(1, 11):
        task = await claim_one(broker)
        assert task.attempt == attempt
        failed_at = clock.advance(1)

        (state,) = await broker.report([failed(task, error=f"failure {attempt}")])

        cap_ms = min(20_000, 1000 * 2 ** (attempt - 1))
        delay_ms = math.floor(cap_ms * jitter.random())
        assert 0 <= delay_ms < cap_ms
        stored = await broker.get(task_id)
        assert stored.error == f"failure {attempt}"
        if delay_ms == 0:
            assert state is TaskState.PENDING
            continue
        assert state is TaskState.SCHEDULED
        assert stored.ready_ms == failed_at + delay_ms
        assert await zscore(broker, broker.keys.scheduled, task_id) == failed_at + delay_ms
        await assert_invariants(broker)
        clock.set(stored.ready_ms)
        assert (await broker.promote()).promoted == 1


async def test_retry_delays_stay_below_the_cap_and_their_jitter_varies(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=2.0, retry_max_delay=5.0)
    await submit_many(broker, 40, max_retries=5)
    delays: dict[int, list[int]] = {1: [], 2: [], 3: []}

    for attempt, cap_ms in ((1, 2000), (2, 4000), (3, 5000)):
        tasks = await claim(broker, 40)
        assert {t.attempt for t in tasks} == {attempt}
        now = clock()
        await broker.report([failed(t) for t in tasks])
        for task in await broker.get_many([t.id for t in tasks]):
            assert task is not None
            delays[attempt].append(task.ready_ms - now)
        assert all(0 <= d < cap_ms for d in delays[attempt]), delays[attempt]
        assert len(set(delays[attempt])) > 30  # full jitter: spread over the whole range
        clock.advance(cap_ms / 1000)
        assert (await broker.promote()).promoted == sum(d > 0 for d in delays[attempt])

    assert max(delays[3]) > 4000  # the third delay may exceed the second's cap, up to max
    await assert_invariants(broker)


async def test_failing_the_last_attempt_dead_letters_the_task_with_its_error(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=0.0)
    task_id = await submit(broker, max_retries=2)

    states = []
    for attempt in range(1, 4):
        task = await claim_one(broker)
        states += await broker.report(
            [failed(task, error=f"error {attempt}", traceback=f"Traceback {attempt}")]
        )

    assert states == [TaskState.PENDING, TaskState.PENDING, TaskState.DEAD]
    dead = await broker.get(task_id)
    assert dead.state is TaskState.DEAD
    assert dead.attempt == 3
    assert (dead.error, dead.traceback) == ("error 3", "Traceback 3")
    assert dead.finished_ms == clock()
    assert await zscore(broker, broker.keys.dead, task_id) == clock()
    assert await claim(broker) == []
    totals = (await broker.stats()).totals
    assert (totals["failed"], totals["retried"], totals["dead"]) == (3, 2, 1)
    await assert_invariants(broker)


async def test_a_task_without_retries_is_dead_after_one_failure(broker: Broker) -> None:
    await submit(broker, max_retries=0)

    assert await broker.report([failed(await claim_one(broker))]) == [TaskState.DEAD]


async def test_a_rejected_attempt_dead_letters_the_task_with_retries_left(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker, max_retries=5)
    task = await claim_one(broker)

    rejection = Report(
        task_id=task.id,
        attempt=task.attempt,
        kind=OutcomeKind.REJECTED,
        error="PermanentError: bad payload",
        traceback="Traceback: bad",
    )
    assert await broker.report([rejection]) == [TaskState.DEAD]

    dead = await broker.get(task_id)
    assert (dead.state, dead.attempt, dead.attempts_left) == (TaskState.DEAD, 1, 5)
    assert (dead.error, dead.traceback) == ("PermanentError: bad payload", "Traceback: bad")
    assert await zscore(broker, broker.keys.dead, task_id) == clock()
    totals = (await broker.stats()).totals
    assert (totals["failed"], totals["dead"], totals.get("retried", 0)) == (1, 1, 0)
    await assert_invariants(broker)


async def test_a_rejected_attempt_of_a_task_being_cancelled_ends_it_cancelled(
    broker: Broker,
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    assert await broker.cancel(task_id) == "requested"

    rejection = Report(task_id=task.id, attempt=task.attempt, kind=OutcomeKind.REJECTED, error="no")
    assert await broker.report([rejection]) == [TaskState.CANCELLED]
    await assert_invariants(broker)


async def test_stale_report_is_ignored_and_changes_nothing(broker: Broker) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    before = await broker.get(task_id)
    lease = await zscore(broker, broker.keys.active, task_id)

    stale = [
        Report(task_id=task_id, attempt=task.attempt + 1, kind=OutcomeKind.SUCCEEDED, result=1),
        Report(task_id=task_id, attempt=task.attempt - 1, kind=OutcomeKind.FAILED, error="old"),
        Report(task_id="no-such-task", attempt=1, kind=OutcomeKind.SUCCEEDED),
    ]
    states = await broker.report(stale)

    assert states == [None, None, None]
    assert await broker.get(task_id) == before
    assert await zscore(broker, broker.keys.active, task_id) == lease
    await assert_invariants(broker)


async def test_report_from_a_worker_whose_lease_was_taken_over_is_ignored(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=0.0)
    task_id = await submit(broker)
    old = await claim_one(broker, worker="w1")
    clock.advance(broker.settings.lease_ttl)
    await broker.reap()
    new = await claim_one(broker, worker="w2")

    assert await broker.report([succeeded(old, "late")]) == [None]

    task = await broker.get(task_id)
    assert (task.state, task.attempt, task.worker_id) == (TaskState.ACTIVE, 2, "w2")
    assert await broker.report([succeeded(new, "on time")]) == [TaskState.SUCCEEDED]
    assert (await broker.get(task_id)).result == "on time"


async def test_report_after_the_outcome_was_recorded_is_ignored(broker: Broker) -> None:
    await submit(broker)
    task = await claim_one(broker)

    assert await broker.report([succeeded(task), failed(task)]) == [TaskState.SUCCEEDED, None]
    assert await broker.report([succeeded(task)]) == [None]


async def test_cancelled_outcome_ends_the_task_cancelled_with_its_reason(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)

    assert await broker.report([cancelled(task, "stopped by ops")]) == [TaskState.CANCELLED]

    stored = await broker.get(task_id)
    assert (stored.state, stored.error, stored.finished_ms) == (
        TaskState.CANCELLED,
        "stopped by ops",
        clock(),
    )
    assert await zscore(broker, broker.keys.cancelled, task_id) == clock()
    await assert_invariants(broker)


async def test_released_task_goes_back_to_the_front_with_its_attempt_unspent(
    broker: Broker,
) -> None:
    first, second, third = await submit_many(broker, 3)
    task = await claim_one(broker)
    assert task.id == first

    assert await broker.report([released(task)]) == [TaskState.PENDING]

    assert await ready_list(broker, "medium") == [first, second, third]
    assert (await broker.get(first)).attempt == 0
    again = await claim_one(broker)
    assert (again.id, again.attempt) == (first, 1)
    await assert_invariants(broker)


async def test_tasks_released_together_keep_their_order_at_the_front(broker: Broker) -> None:
    ids = await submit_many(broker, 5)
    tasks = await claim(broker, 3)

    await broker.report([released(t) for t in tasks])

    assert await ready_list(broker, "medium") == ids


async def test_a_mixed_batch_of_outcomes_is_recorded_in_one_round_trip(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(retry_base_delay=10.0)
    ids = await submit_many(broker, 5, max_retries=1)
    tasks = await claim(broker, 5)
    before = await command_calls(broker)

    states = await broker.report(
        [
            succeeded(tasks[0], "ok"),
            failed(tasks[1]),
            cancelled(tasks[2]),
            released(tasks[3]),
            Report(task_id=tasks[4].id, attempt=99, kind=OutcomeKind.SUCCEEDED),
        ]
    )

    assert (await command_calls(broker))["evalsha"] - before["evalsha"] == 1
    assert states[0] is TaskState.SUCCEEDED
    assert states[1] in (TaskState.SCHEDULED, TaskState.PENDING)
    assert states[2:] == [TaskState.CANCELLED, TaskState.PENDING, None]
    stored = await broker.get_many(ids)
    assert [t.state if t else None for t in stored] == [*states[:4], TaskState.ACTIVE]
    await assert_invariants(broker)


async def test_report_with_an_unknown_kind_is_refused_and_changes_nothing(
    broker: Broker,
) -> None:
    ids = await submit_many(broker, 2)
    first, second = await claim(broker, 2)
    bogus = Report(task_id=second.id, attempt=second.attempt, kind="exploded")  # type: ignore[arg-type]

    with pytest.raises(ResponseError, match="unknown outcome kind exploded"):
        await broker.report([succeeded(first), bogus])

    assert {t.state for t in await broker.get_many(ids) if t} == {TaskState.ACTIVE}
    await assert_invariants(broker)


async def test_report_of_nothing_sends_nothing(broker: Broker) -> None:
    before = await command_calls(broker)

    assert await broker.report([]) == []

    assert (await command_calls(broker)).get("evalsha", 0) == before.get("evalsha", 0)


async def test_progress_is_recorded_only_for_the_attempt_holding_the_lease(
    broker: Broker,
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)

    assert await broker.set_progress(task_id, task.attempt, {"done": 40})
    assert not await broker.set_progress(task_id, task.attempt + 1, {"done": 99})

    assert (await broker.get(task_id)).progress == {"done": 40}
