"""Schedules in Redis: defining, reading, pausing and deleting them, and firing each tick
exactly once however many runners race for it (the broker's fake clock drives time)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Broker, BrokerSettings, Submission
from taskqueue.daemon.schedule_runner import ScheduleRunner, tick_key
from taskqueue.errors import (
    ConflictingStateError,
    InvalidTaskError,
    PayloadTooLargeError,
    ScheduleNotFoundError,
    TooManySchedulesError,
)
from taskqueue.health import Health
from taskqueue.models import Policy, TaskState
from taskqueue.redis import Redis
from taskqueue.schedules import ScheduleSpec, schedule_spec


def spec(name: str = "tick", **fields: Any) -> ScheduleSpec:
    return schedule_spec({"name": name, "type": "echo", "every": 1, **fields})


def runner(broker: Broker) -> ScheduleRunner:
    return ScheduleRunner(broker, health=Health())


async def scheduled_tasks(broker: Broker) -> list[str]:
    page = await broker.list_tasks(TaskState.PENDING, limit=1000)
    return [t.id for t in page.items]


async def test_a_schedule_reads_back_with_its_next_run(broker: Broker, clock: FakeClock) -> None:
    assert await broker.put_schedule(spec(payload={"n": 1}, priority="high")) == "created"

    found = await broker.schedule("tick")
    assert found.spec.payload == {"n": 1}
    assert found.next_run_ms == (clock() // 1000 + 1) * 1000
    assert (found.paused, found.fired, found.last_task_id) == (False, 0, None)
    assert found.created_ms == found.updated_ms == clock()
    await assert_invariants(broker)


async def test_putting_the_same_definition_again_keeps_its_next_run(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.put_schedule(spec(every=3600))
    first = (await broker.schedule("tick")).next_run_ms
    clock.advance(7200)

    assert await broker.put_schedule(spec(every=3600)) == "unchanged"
    assert (await broker.schedule("tick")).next_run_ms == first  # still due: missed decides
    assert await broker.put_schedule(spec(every=60)) == "replaced"
    assert (await broker.schedule("tick")).next_run_ms == (clock() // 60_000 + 1) * 60_000


async def test_create_only_refuses_an_existing_name(broker: Broker) -> None:
    await broker.put_schedule(spec())
    with pytest.raises(ConflictingStateError, match="a schedule named 'tick' exists"):
        await broker.put_schedule(spec(every=5), create_only=True)


async def test_a_payload_over_the_limit_is_refused(make_broker: MakeBroker) -> None:
    broker = make_broker(max_payload_bytes=100)
    with pytest.raises(PayloadTooLargeError, match=r"over task\.max_payload_bytes"):
        await broker.put_schedule(spec(payload="x" * 200))


async def test_the_number_of_schedules_is_bounded(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskqueue.broker import schedule_operations

    monkeypatch.setattr(schedule_operations, "MAX_SCHEDULES", 3)
    for name in "abc":
        await broker.put_schedule(spec(name))
    with pytest.raises(TooManySchedulesError, match="3 schedules"):
        await broker.put_schedule(spec("d"))
    assert await broker.put_schedule(spec("a", every=9)) == "replaced"  # replacing is fine


async def test_schedules_page_by_name(broker: Broker) -> None:
    for name in ["c", "a", "b"]:
        await broker.put_schedule(spec(name))
    first = await broker.schedules(limit=2)
    assert [s.spec.name for s in first.items] == ["a", "b"]
    rest = await broker.schedules(cursor=first.next_cursor, limit=2)
    assert ([s.spec.name for s in rest.items], rest.next_cursor) == (["c"], None)
    with pytest.raises(InvalidTaskError, match="cursor"):
        await broker.schedules(cursor="¹")


async def test_unknown_names_are_not_found(broker: Broker) -> None:
    for call in (
        broker.schedule("nope"),
        broker.delete_schedule("nope"),
        broker.pause_schedule("nope"),
        broker.pause_schedule("nope", paused=False),
    ):
        with pytest.raises(ScheduleNotFoundError, match="no schedule named 'nope'"):
            await call


async def test_a_runner_fires_each_tick_once_and_records_it(
    broker: Broker, clock: FakeClock
) -> None:
    clock.set(1_000_000_000_500)
    await broker.put_schedule(spec(payload=[1, 2]))
    run = runner(broker)

    assert await run.fire_due() == pytest.approx(0.5)  # nothing due yet: sleep until the tick
    clock.advance(0.5)
    await run.fire_due()
    await run.fire_due()  # same instant: the tick is done

    (task_id,) = await scheduled_tasks(broker)
    task = await broker.get(task_id)
    assert (task.type, task.payload) == ("echo", [1, 2])
    assert task.idempotency_key == tick_key("tick", 1_000_000_001_000)
    found = await broker.schedule("tick")
    assert (found.fired, found.last_task_id, found.last_task_state) == (1, task_id, "pending")
    assert (found.last_tick_ms, found.last_run_ms, found.next_run_ms) == (
        1_000_000_001_000,
        1_000_000_001_000,
        1_000_000_002_000,
    )
    await assert_invariants(broker)


async def test_three_runners_for_ten_seconds_fire_ten_tasks(
    redis_url: str, clock: FakeClock
) -> None:
    """Three runners on their own connections, racing in random order every 50 ms."""
    clock.set(2_000_000_000_000)
    redises = [Redis.from_url(redis_url) for _ in range(3)]
    brokers = [Broker(r, BrokerSettings(), clock=clock) for r in redises]
    runners = [runner(b) for b in brokers]
    rng = random.Random(7)
    try:
        await brokers[0].put_schedule(spec())
        for _ in range(200):
            clock.advance(ms=50)
            async with trio.open_nursery() as nursery:
                for r in rng.sample(runners, 3):
                    nursery.start_soon(r.fire_due)
        ids = await scheduled_tasks(brokers[0])
        tasks = await brokers[0].get_many(ids)
        keys = sorted(t.idempotency_key or "" for t in tasks if t)
        assert keys == [tick_key("tick", 2_000_000_001_000 + 1000 * i) for i in range(10)]
        assert sum(r.fired for r in runners) == 10
        assert (await brokers[0].schedule("tick")).fired == 10
        await assert_invariants(brokers[0])
    finally:
        for client in redises:
            await client.aclose()


async def test_a_runner_that_died_after_submitting_leaves_the_task_to_the_next(
    broker: Broker, clock: FakeClock
) -> None:
    clock.set(3_000_000_000_000)
    await broker.put_schedule(spec())
    clock.advance(1)
    due = await broker.due_schedules(10)
    # The first runner submitted the tick's task, then died before recording the firing.
    first = runner(broker)
    (submitted,) = await first._submit(
        [Submission(type="echo", idempotency_key=tick_key("tick", due.due[0].due_ms))]
    )
    await runner(broker).fire_due()

    assert await scheduled_tasks(broker) == [submitted.id]  # type: ignore[union-attr]
    assert (await broker.schedule("tick")).last_task_id == submitted.id  # type: ignore[union-attr]


async def test_pause_stops_firing_and_resume_starts_from_the_next_tick(
    broker: Broker, clock: FakeClock
) -> None:
    clock.set(4_000_000_000_000)
    await broker.put_schedule(spec())
    await broker.pause_schedule("tick")
    paused = await broker.schedule("tick")
    assert (paused.paused, paused.next_run_ms) == (True, None)

    clock.advance(30)
    await runner(broker).fire_due()
    assert await scheduled_tasks(broker) == []

    await broker.put_schedule(spec(payload="new"))  # a new definition stays paused
    assert (await broker.schedule("tick")).paused
    await broker.pause_schedule("tick", paused=False)
    resumed = await broker.schedule("tick")
    assert (resumed.paused, resumed.next_run_ms) == (False, clock() + 1000)
    await assert_invariants(broker)


async def test_missed_skip_after_downtime_submits_nothing_and_counts_it(
    broker: Broker, clock: FakeClock
) -> None:
    clock.set(4_999_997_200_000)  # 400 s past a whole hour
    await broker.put_schedule(spec(every="1h"))
    clock.advance(5 * 3600)  # five hours without a runner: five hourly ticks, the last 400 s ago
    await runner(broker).fire_due()

    assert await scheduled_tasks(broker) == []
    found = await broker.schedule("tick")
    assert (found.fired, found.skipped, found.next_run_ms) == (0, 5, clock() + 3_200_000)


async def test_a_refused_submission_is_recorded_and_the_tick_passes(
    broker: Broker, clock: FakeClock
) -> None:
    clock.set(6_000_000_000_000)
    await broker.put_schedule(spec())
    await broker.put_schedule(spec("other", type="mail.send"))
    await broker.set_policy(Policy(max_queue_depth=1), task_type="echo")
    await broker.enqueue(Submission(type="echo"))
    clock.advance(1)
    await runner(broker).fire_due()

    refused = await broker.schedule("tick")
    assert refused.last_error == "queue of task type 'echo' is full: 1 pending, limit 1"
    assert (refused.fired, refused.next_run_ms) == (0, clock() + 1000)
    other = await broker.schedule("other")  # the batch's refusal was this one's alone
    assert (other.fired, other.last_error, other.last_task_state) == (1, None, "pending")


async def test_delete_removes_the_schedule_and_leaves_its_tasks(
    broker: Broker, clock: FakeClock
) -> None:
    clock.set(7_000_000_000_000)
    await broker.put_schedule(spec())
    clock.advance(1)
    await runner(broker).fire_due()
    await broker.delete_schedule("tick")

    assert (await broker.schedules()).items == []
    assert len(await scheduled_tasks(broker)) == 1
    await assert_invariants(broker)
