"""Hand-offs: a worker whose claim came back short is leased the next task of its types by the
script that makes the task pending, and told on its own channel (see _lib.lua)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from broker_helpers import TYPE, claim, released, submit, succeeded, worker_info, zscore
from conftest import FakeClock
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.broker.codec import hand_off_from_message
from taskqueue.models import HandOff, Policy, TaskState
from taskqueue.redis import Subscription


async def wait_idle(broker: Broker, worker: str = "w1", types: tuple[str, ...] = (TYPE,)) -> None:
    """Claim with hand-offs on an empty queue: ``worker`` registers for the next task."""
    claimed = await broker.claim_batch(worker, list(types), 10, hand_offs="")
    assert claimed.tasks == []


@asynccontextmanager
async def channel_of(broker: Broker, worker: str = "w1") -> AsyncIterator[Subscription]:
    async with broker.redis.subscribe(broker.keys.worker_channel(worker)) as sub:
        yield sub


async def next_hand_off(sub: Subscription, broker: Broker) -> HandOff:
    with trio.fail_after(5):
        _, data = await sub.get_message()
    return hand_off_from_message(data, broker.clock())


async def test_an_idle_worker_is_handed_the_next_task_with_its_lease(
    broker: Broker, clock: FakeClock
) -> None:
    async with channel_of(broker) as sub:
        await wait_idle(broker)
        task_id = await submit(broker, payload={"to": "a@example.com"}, headers={"trace": "t1"})
        handed = (await next_hand_off(sub, broker)).task

    assert (handed.id, handed.type, handed.attempt) == (task_id, TYPE, 1)
    assert handed.payload == {"to": "a@example.com"}
    assert handed.headers == {"trace": "t1"}
    task = await broker.get(task_id)
    assert (task.state, task.worker_id, task.attempt) == (TaskState.ACTIVE, "w1", 1)
    # The lease is the worker's, from the moment of the hand-off: on its clock (this test's
    # clock, which Redis's real time has moved on by the milliseconds since the claim).
    lease_ms = int(broker.settings.lease_ttl * 1000)
    deadline = await zscore(broker, broker.keys.active, task_id)
    assert deadline is not None and 0 <= deadline - (clock.now_ms + lease_ms) < 5_000
    await assert_invariants(broker)
    # The lease is a claim's: the worker's report ends it.
    assert await broker.report([succeeded(handed, "sent")]) == [TaskState.SUCCEEDED]
    await assert_invariants(broker)


async def test_a_hand_off_wakes_no_one(broker: Broker) -> None:
    """Every other worker would claim for nothing: the task went to the idle one."""
    async with broker.redis.subscribe(broker.keys.wake_channel) as wake, channel_of(broker) as sub:
        await wait_idle(broker)
        await submit(broker)
        await next_hand_off(sub, broker)
        await broker.redis.execute("PUBLISH", broker.keys.wake_channel, "marker")
        with trio.fail_after(5):
            assert await wake.get_message() == (broker.keys.wake_channel, "marker")


async def test_a_claim_without_hand_offs_registers_nothing(broker: Broker) -> None:
    assert await broker.claim_batch("w1", [TYPE], 10) is not None
    task_id = await submit(broker)

    assert (await broker.get(task_id)).state is TaskState.PENDING
    assert await broker.redis.execute("HGETALL", broker.keys.idle_workers) == []


async def test_one_registration_takes_one_task_the_most_urgent(broker: Broker) -> None:
    async with channel_of(broker) as sub:
        await wait_idle(broker)
        batch = await broker.enqueue_many(
            [Submission(type=TYPE, priority=p) for p in ("low", "critical", "medium", "critical")]
        )
        hand_off = await next_hand_off(sub, broker)

    assert hand_off.task.id == batch[1].id
    states = [(await broker.get(s.id)).state for s in batch]
    assert states == [TaskState.PENDING, TaskState.ACTIVE, TaskState.PENDING, TaskState.PENDING]
    await assert_invariants(broker)
    # The worker's next claim takes the rest in order, and registers it again only when short.
    claimed = await broker.claim_batch("w1", [TYPE], 2, hand_offs=hand_off.token)
    assert [t.id for t in claimed.tasks] == [batch[3].id, batch[2].id]
    assert await broker.redis.execute("HGETALL", broker.keys.idle_workers) == []
    claimed = await broker.claim_batch("w1", [TYPE], 2, hand_offs=hand_off.token)
    assert [t.id for t in claimed.tasks] == [batch[0].id]
    assert await broker.redis.execute("HKEYS", broker.keys.idle_workers) == ["w1"]
    await assert_invariants(broker)


async def test_idle_workers_are_handed_one_task_each(broker: Broker) -> None:
    async with channel_of(broker, "w1") as one, channel_of(broker, "w2") as two:
        await wait_idle(broker, "w1")
        await wait_idle(broker, "w2", (TYPE, "pdf.render"))
        first, second = await submit(broker), await submit(broker)
        got = {
            (await next_hand_off(one, broker)).task.id,
            (await next_hand_off(two, broker)).task.id,
        }

    assert got == {first, second}
    # w2's registration ended for all its types with its hand-off.
    assert await broker.redis.execute("KEYS", broker.keys.idle("*")) == []
    await assert_invariants(broker)


async def test_only_the_types_a_worker_waits_for_are_handed_to_it(broker: Broker) -> None:
    await wait_idle(broker, "w1", ("pdf.render",))
    task_id = await submit(broker, TYPE)

    assert (await broker.get(task_id)).state is TaskState.PENDING
    await assert_invariants(broker)


async def test_limited_paused_and_grouped_types_are_left_to_claims(broker: Broker) -> None:
    """A claim applies limits and takes groups in turns; a hand-off would skip both."""
    await broker.set_policy(Policy(concurrency=5), "limited")
    await broker.set_policy(Policy(paused=True), "paused")
    types = ("limited", "paused", "grouped")
    await wait_idle(broker, "w1", types)
    ids = [await submit(broker, t) for t in ("limited", "paused")]
    ids.append(await submit(broker, "grouped", group="tenant-a"))

    assert [(await broker.get(i)).state for i in ids] == [TaskState.PENDING] * 3
    await assert_invariants(broker)
    claimed = await broker.claim_batch("w1", list(types), 10, hand_offs="")
    assert sorted(t.id for t in claimed.tasks) == sorted([ids[0], ids[2]])


async def test_a_task_due_later_is_handed_off_when_it_becomes_pending(
    broker: Broker, clock: FakeClock
) -> None:
    async with channel_of(broker) as sub:
        task_id = await submit(broker, delay=30)
        await wait_idle(broker)
        clock.advance(31)
        await broker.promote()
        handed = (await next_hand_off(sub, broker)).task

    assert handed.id == task_id
    await assert_invariants(broker)


async def test_a_lost_hand_off_comes_back_with_claims_until_one_names_it(
    broker: Broker,
) -> None:
    await wait_idle(broker)
    task_id = await submit(broker)  # nobody listens: the message is lost

    claimed = await broker.claim_batch("w1", [TYPE], 10, hand_offs="")

    assert claimed.tasks == []
    (handed,) = claimed.handed
    assert (handed.task.id, handed.task.attempt) == (task_id, 1)
    assert (await broker.get(task_id)).attempt == 1  # the same attempt, not a new one
    again = await broker.claim_batch("w1", [TYPE], 10, hand_offs="")
    assert again.handed == [handed]
    named = await broker.claim_batch("w1", [TYPE], 10, hand_offs=handed.token)
    assert named.handed == []
    await assert_invariants(broker)


async def test_a_received_hand_off_does_not_come_back(broker: Broker) -> None:
    async with channel_of(broker) as sub:
        await wait_idle(broker)
        task_id = await submit(broker)
        received = await next_hand_off(sub, broker)

    claimed = await broker.claim_batch("w1", [TYPE], 10, hand_offs=received.token)

    assert claimed.handed == []
    assert (await broker.get(task_id)).worker_id == "w1"


async def test_a_finished_hand_off_does_not_come_back(broker: Broker) -> None:
    await wait_idle(broker)
    await submit(broker)
    (first,) = (await broker.claim_batch("w1", [TYPE], 10, hand_offs="")).handed
    await broker.report([succeeded(first.task)])

    assert (await broker.claim_batch("w1", [TYPE], 10, hand_offs="")).handed == []


async def test_the_same_attempt_handed_off_again_has_a_new_token(broker: Broker) -> None:
    """A snoozed or released task gives its attempt back: a worker that took the first
    hand-off must still take the second."""
    async with channel_of(broker) as sub:
        await wait_idle(broker)
        await submit(broker)
        first = await next_hand_off(sub, broker)
        await wait_idle(broker)
        assert await broker.report([released(first.task)]) == [TaskState.PENDING]
        second = await next_hand_off(sub, broker)

    assert (second.task.id, second.task.attempt) == (first.task.id, first.task.attempt)
    assert second.token != first.token
    await assert_invariants(broker)


async def test_a_stopped_worker_is_handed_nothing(broker: Broker) -> None:
    await wait_idle(broker, "w1", (TYPE, "pdf.render"))
    await broker.heartbeat(worker_info("w1", broker.clock()), ())

    await broker.deregister("w1")
    task_id = await submit(broker)

    assert (await broker.get(task_id)).state is TaskState.PENDING
    assert await broker.redis.execute("HGETALL", broker.keys.idle_workers) == []
    await assert_invariants(broker)


async def test_a_hand_off_that_never_reached_its_worker_goes_back_when_it_deregisters(
    broker: Broker,
) -> None:
    """The worker drained, reported everything and stopped before the message came: the task
    goes back to the front of its queue at once, the attempt not spent, instead of waiting
    out the lease."""
    await broker.heartbeat(worker_info("w1", broker.clock()), ())
    await wait_idle(broker)
    earlier = await submit(broker)  # handed to w1, whose message nobody reads
    assert (await broker.get(earlier)).state is TaskState.ACTIVE
    later = await submit(broker)  # w1 is no longer idle: pending behind it once it is back

    assert await broker.deregister("w1")

    task = await broker.get(earlier)
    assert (task.state, task.attempt) == (TaskState.PENDING, 0)
    claimed = await broker.claim_batch("w2", [TYPE], 1)
    assert [t.id for t in claimed.tasks] == [earlier]  # the front: ahead of the later one
    assert (await broker.get(later)).state is TaskState.PENDING
    await assert_invariants(broker)


async def test_a_hand_off_the_worker_took_and_reported_is_left_alone_when_it_deregisters(
    broker: Broker,
) -> None:
    await broker.heartbeat(worker_info("w1", broker.clock()), ())
    async with channel_of(broker) as sub:
        await wait_idle(broker)
        await submit(broker)
        handed = await next_hand_off(sub, broker)
    assert await broker.report([succeeded(handed.task, "done")]) == [TaskState.SUCCEEDED]

    assert await broker.deregister("w1")

    assert (await broker.get(handed.task.id)).state is TaskState.SUCCEEDED
    await assert_invariants(broker)


async def test_a_dead_worker_is_forgotten_by_the_reaper(broker: Broker, clock: FakeClock) -> None:
    await broker.heartbeat(worker_info("w1", broker.clock()), ())
    await wait_idle(broker)
    clock.advance(broker.settings.lease_ttl + 1)

    result = await broker.reap()
    task_id = await submit(broker)

    assert result.workers_removed == ["w1"]
    assert (await broker.get(task_id)).state is TaskState.PENDING
    await assert_invariants(broker)


async def test_a_worker_known_dead_is_forgotten_at_once(broker: Broker) -> None:
    await broker.heartbeat(worker_info("w1", broker.clock()), ())
    await wait_idle(broker)

    await broker.expire_workers(["w1"])
    task_id = await submit(broker)

    assert (await broker.get(task_id)).state is TaskState.PENDING
    await assert_invariants(broker)


async def test_a_task_retried_at_once_goes_to_an_idle_worker(broker: Broker) -> None:
    """A release at shutdown requeues a task: the worker still waiting takes it."""
    await submit(broker)
    (task,) = await claim(broker, 1, worker="w2")
    async with channel_of(broker) as sub:
        await wait_idle(broker)
        states = await broker.report([released(task)])
        handed = (await next_hand_off(sub, broker)).task

    assert states == [TaskState.PENDING]
    assert (handed.id, handed.attempt) == (task.id, 1)  # a release spends no attempt
    await assert_invariants(broker)


async def test_a_hand_off_lease_runs_on_the_worker_clock_not_the_submitter_clock(
    broker: Broker, clock: FakeClock
) -> None:
    """A submitter an hour behind must not give the worker a lease that ended an hour ago
    (the reaper would take the task back at once), nor one ahead a lease that outlives it."""
    await wait_idle(broker)
    for hours in (-1, 1):
        skewed = FakeClock(clock.now_ms + hours * 3_600_000)
        behind = Broker(broker.redis, broker.settings, clock=skewed)
        task_id = (await behind.enqueue(Submission(type=TYPE))).id
        deadline = await zscore(broker, broker.keys.active, task_id)
        lease_ms = int(broker.settings.lease_ttl * 1000)
        assert deadline is not None and 0 <= deadline - (clock.now_ms + lease_ms) < 5_000
        started_ms = (await broker.get(task_id)).started_ms
        assert started_ms is not None and 0 <= started_ms - clock.now_ms < 5_000
        (handed,) = (await broker.claim_batch("w1", [TYPE], 10, hand_offs="")).handed
        assert handed.task.id == task_id
