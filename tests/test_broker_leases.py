"""Leases and workers: heartbeats extend leases, the reaper takes back what dead workers held."""

from __future__ import annotations

from typing import Any

import pytest
from broker_helpers import (
    claim,
    claim_one,
    submit,
    submit_many,
    succeeded,
    worker_info,
    zscore,
)
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Broker, ReapedTask
from taskqueue.models import TaskState


@pytest.fixture
def make_broker(make_broker: MakeBroker) -> MakeBroker:
    """Brokers with leases of 30 s unless told otherwise: this file's arithmetic counts on it."""

    def make(**settings: Any) -> Broker:
        return make_broker(**{"lease_ttl": 30.0, **settings})

    return make


# -- heartbeat -------------------------------------------------------------------------------


async def test_heartbeat_extends_the_leases_of_the_workers_own_tasks(
    broker: Broker, clock: FakeClock
) -> None:
    mine, other = await submit_many(broker, 2)
    task = await claim_one(broker, worker="w1")
    await claim_one(broker, worker="w2")
    other_lease = await zscore(broker, broker.keys.active, other)
    clock.advance(20)

    reply = await broker.heartbeat(worker_info("w1", clock()), [(task.id, task.attempt)])

    assert (reply.lost, reply.cancel_requested) == ([], [])
    assert await zscore(broker, broker.keys.active, mine) == clock() + 30_000
    assert await zscore(broker, broker.keys.active, other) == other_lease


async def test_heartbeat_in_time_keeps_a_long_task_from_being_reaped(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)

    for _ in range(10):
        clock.advance(25)
        await broker.heartbeat(worker_info("w1", clock()), [(task.id, task.attempt)])
        assert (await broker.reap()).reaped == 0

    assert (await broker.get(task_id)).state is TaskState.ACTIVE
    assert await broker.report([succeeded(task)]) == [TaskState.SUCCEEDED]


async def test_heartbeat_reports_tasks_whose_lease_was_lost_to_another_worker(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=0.0)
    kept_id, lost_id = await submit_many(broker, 2)
    kept, lost = await claim(broker, 2, worker="w1")
    clock.advance(20)
    await broker.heartbeat(worker_info("w1", clock()), [(kept.id, kept.attempt)])
    clock.advance(10)
    assert (await broker.reap()).reaped == 1  # only the lease that was not extended
    taken = await claim_one(broker, worker="w2")
    assert taken.id == lost_id
    lease_of_w2 = await zscore(broker, broker.keys.active, lost_id)
    clock.advance(1)

    reply = await broker.heartbeat(
        worker_info("w1", clock()), [(kept.id, kept.attempt), (lost.id, lost.attempt)]
    )

    assert reply.lost == [lost_id]
    assert await zscore(broker, broker.keys.active, lost_id) == lease_of_w2
    assert await zscore(broker, broker.keys.active, kept_id) == clock() + 30_000


async def test_heartbeat_for_an_earlier_attempt_reports_it_lost_even_on_the_same_worker(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=0.0)
    task_id = await submit(broker)
    first = await claim_one(broker, worker="w1")
    clock.advance(31)
    await broker.reap()
    second = await claim_one(broker, worker="w1")
    lease = await zscore(broker, broker.keys.active, task_id)
    clock.advance(1)

    reply = await broker.heartbeat(worker_info("w1", clock()), [(task_id, first.attempt)])

    assert (first.attempt, second.attempt) == (1, 2)
    assert reply.lost == [task_id]
    assert await zscore(broker, broker.keys.active, task_id) == lease


async def test_heartbeat_reports_finished_and_unknown_tasks_as_lost(broker: Broker) -> None:
    await submit(broker)
    task = await claim_one(broker)
    await broker.report([succeeded(task)])

    reply = await broker.heartbeat(
        worker_info("w1", broker.clock()), [(task.id, task.attempt), ("nope", 1)]
    )

    assert reply.lost == [task.id, "nope"]


async def test_heartbeat_reports_tasks_whose_cancellation_was_requested(
    broker: Broker, clock: FakeClock
) -> None:
    await submit_many(broker, 2)
    one, two = await claim(broker, 2)
    assert await broker.cancel(two.id) == "requested"

    reply = await broker.heartbeat(
        worker_info("w1", clock()), [(one.id, one.attempt), (two.id, two.attempt)]
    )

    assert reply.cancel_requested == [two.id]
    assert reply.lost == []


async def test_heartbeat_registers_the_worker(broker: Broker, clock: FakeClock) -> None:
    info = worker_info("w1", clock(), ("mail.send", "pdf.render"), in_flight=3)
    clock.advance(5)

    await broker.heartbeat(info, [])

    (registered,) = await broker.workers()
    assert registered.id == "w1"
    assert registered.task_types == info.task_types
    assert (registered.host, registered.pid, registered.concurrency) == ("host-1", 4242, 8)
    assert registered.in_flight == 3
    assert registered.started_ms == info.started_ms
    assert registered.last_heartbeat_ms == clock()


async def test_workers_lists_the_most_recent_heartbeat_first(
    broker: Broker, clock: FakeClock
) -> None:
    for name in ("w1", "w2", "w3"):
        clock.advance(1)
        await broker.heartbeat(worker_info(name, clock()), [])
    clock.advance(1)
    await broker.heartbeat(worker_info("w1", clock()), [])

    assert [w.id for w in await broker.workers()] == ["w1", "w3", "w2"]


async def test_deregister_removes_the_workers_registration(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.heartbeat(worker_info("w1", clock()), [])
    await broker.heartbeat(worker_info("w2", clock()), [])

    assert await broker.deregister("w1")
    assert not await broker.deregister("w1")

    assert [w.id for w in await broker.workers()] == ["w2"]
    await assert_invariants(broker)


# -- reaper ----------------------------------------------------------------------------------


async def test_reaper_retries_a_task_whose_lease_expired_counting_the_attempt(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker)
    await claim_one(broker, worker="w1")
    clock.advance(broker.settings.lease_ttl)

    result = await broker.reap()

    assert result.reaped == 1
    task = await broker.get(task_id)
    assert task.state in (TaskState.SCHEDULED, TaskState.PENDING)
    assert result.outcomes == [ReapedTask(task_id, task.type, task.priority, task.state)]
    assert clock() <= task.ready_ms < clock() + 1000  # the first backoff: below base delay
    assert task.attempt == 1
    assert task.error == "lease expired: worker w1 stopped sending heartbeats"
    assert await zscore(broker, broker.keys.active, task_id) is None
    clock.set(task.ready_ms)
    await broker.promote()
    assert (await claim_one(broker)).attempt == 2
    await assert_invariants(broker)


async def test_reaper_leaves_leases_that_have_not_expired(broker: Broker, clock: FakeClock) -> None:
    task_id = await submit(broker)
    await claim_one(broker)
    clock.advance(broker.settings.lease_ttl - 0.001)

    assert (await broker.reap()).reaped == 0
    assert (await broker.get(task_id)).state is TaskState.ACTIVE


async def test_reaper_dead_letters_an_expired_task_without_retries_left(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker, max_retries=0)
    await claim_one(broker)
    clock.advance(31)

    result = await broker.reap()

    task = await broker.get(task_id)
    assert task.state is TaskState.DEAD
    assert [(o.id, o.state) for o in result.outcomes] == [(task_id, TaskState.DEAD)]
    assert task.finished_ms == clock()
    assert "lease expired" in (task.error or "")
    await assert_invariants(broker)


async def test_reaper_cancels_an_expired_task_whose_cancellation_was_requested(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker)
    await claim_one(broker)
    await broker.cancel(task_id)
    clock.advance(31)

    result = await broker.reap()
    assert result.reaped == 1
    assert [(o.id, o.state) for o in result.outcomes] == [(task_id, TaskState.CANCELLED)]

    task = await broker.get(task_id)
    assert task.state is TaskState.CANCELLED
    assert "cancelled at request" in (task.error or "")
    await assert_invariants(broker)


async def test_reaper_removes_workers_silent_longer_than_the_lease_ttl(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.heartbeat(worker_info("w1", clock()), [])
    clock.advance(20)
    await broker.heartbeat(worker_info("w2", clock()), [])
    clock.advance(11)

    result = await broker.reap()

    assert result.workers_removed == ["w1"]
    assert [w.id for w in await broker.workers()] == ["w2"]
    assert (await broker.stats()).totals["workers_removed"] == 1
    await assert_invariants(broker)


async def test_reaper_takes_back_every_task_of_a_dead_worker_but_none_of_a_live_one(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retry_base_delay=0.0)
    await submit_many(broker, 6)
    dead_workers_tasks = await claim(broker, 3, worker="dead")
    live_workers_tasks = await claim(broker, 3, worker="live")
    for _ in range(4):
        clock.advance(10)
        await broker.heartbeat(
            worker_info("live", clock()), [(t.id, t.attempt) for t in live_workers_tasks]
        )
        await broker.reap()

    states = await broker.get_many([t.id for t in dead_workers_tasks + live_workers_tasks])

    assert [t.state if t else None for t in states] == [TaskState.PENDING] * 3 + [
        TaskState.ACTIVE
    ] * 3
    await assert_invariants(broker)


async def test_reaper_takes_at_most_its_limit_per_call(broker: Broker, clock: FakeClock) -> None:
    await submit_many(broker, 5)
    await claim(broker, 5)
    clock.advance(31)

    assert (await broker.reap(limit=2)).reaped == 2
    assert (await broker.reap(limit=2)).reaped == 2
    assert (await broker.reap(limit=2)).reaped == 1
    assert (await broker.stats()).by_state[TaskState.ACTIVE] == 0
    await assert_invariants(broker)
