"""Claiming: which tasks a worker gets, in what order, and the lease it gets them under."""

from __future__ import annotations

import itertools

from broker_helpers import claim, claim_one, command_calls, failed, submit, submit_many, zscore
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.models import Priority, TaskState


async def test_claim_takes_the_most_urgent_priority_first(broker: Broker) -> None:
    for priority in ("low", "medium", "high", "critical"):
        await submit(broker, priority=priority)

    tasks = await claim(broker, 4)

    assert [t.priority for t in tasks] == [
        Priority.CRITICAL,
        Priority.HIGH,
        Priority.MEDIUM,
        Priority.LOW,
    ]


async def test_claim_one_at_a_time_is_strict_by_priority(broker: Broker) -> None:
    await submit_many(broker, 3, priority="low")
    await submit_many(broker, 2, priority="high")

    order = [(await claim_one(broker)).priority for _ in range(5)]

    assert order == ["high", "high", "low", "low", "low"]


async def test_claim_is_first_in_first_out_within_a_priority(broker: Broker) -> None:
    ids = [await submit(broker, payload=i) for i in range(6)]

    first = await claim(broker, 2)
    rest = await claim(broker, 10)

    assert [t.id for t in first + rest] == ids


async def test_claim_hands_out_only_the_task_types_asked_for(broker: Broker) -> None:
    await submit(broker, "image.resize", priority="critical")
    mail = await submit(broker, "mail.send", priority="low")

    tasks = await claim(broker, 10, ("mail.send", "pdf.render"))

    assert [t.id for t in tasks] == [mail]
    stats = await broker.stats()
    assert stats.pending_by_type == {"image.resize": 1}


async def test_claim_returns_at_most_count_tasks(broker: Broker) -> None:
    await submit_many(broker, 10)

    assert len(await claim(broker, 3)) == 3
    assert len(await claim(broker, 100)) == 7
    assert await claim(broker, 5) == []
    await assert_invariants(broker)


async def test_claim_of_nothing_or_for_no_types_touches_nothing(broker: Broker) -> None:
    await submit(broker)
    before = await command_calls(broker)

    assert await broker.claim("w1", ["mail.send"], 0) == []
    assert await broker.claim("w1", [], 5) == []

    assert (await command_calls(broker))["evalsha"] == before["evalsha"]


async def test_claim_gives_the_task_its_payload_and_settings(broker: Broker) -> None:
    task_id = await submit(broker, payload={"to": "x"}, max_retries=4, timeout=9, priority="high")

    task = await claim_one(broker)

    assert task.id == task_id
    assert task.type == "mail.send"
    assert task.payload == {"to": "x"}
    assert (task.max_retries, task.timeout_ms, task.priority) == (4, 9000, Priority.HIGH)


async def test_claim_leases_the_task_until_now_plus_lease_ttl(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(lease_ttl=45.0)
    task_id = await submit(broker)
    clock.advance(3)

    claimed = await broker.claim("worker-7", ["mail.send"], 1)

    assert claimed[0].started_ms == clock()
    assert await zscore(broker, broker.keys.active, task_id) == clock() + 45_000
    task = await broker.get(task_id)
    assert task.state is TaskState.ACTIVE
    assert task.worker_id == "worker-7"
    assert task.started_ms == clock()
    await assert_invariants(broker)


async def test_each_claim_counts_one_more_attempt(make_broker: MakeBroker) -> None:
    broker = make_broker(retry_base_delay=0.0)  # a failed task is pending again at once
    task_id = await submit(broker)

    attempts = []
    for _ in range(3):
        task = await claim_one(broker)
        attempts.append(task.attempt)
        await broker.report([failed(task)])

    assert attempts == [1, 2, 3]
    assert (await broker.get(task_id)).attempt == 3


async def test_claim_rotates_the_types_so_one_cannot_starve_another(broker: Broker) -> None:
    await submit_many(broker, 4, "a")
    await submit_many(broker, 4, "b")

    order = [(await claim(broker, 1, ("a", "b")))[0].type for _ in range(6)]

    assert sorted(order) == ["a"] * 3 + ["b"] * 3
    assert all(x != y for x, y in itertools.pairwise(order))


async def test_type_rotation_does_not_override_priority(broker: Broker) -> None:
    await submit_many(broker, 3, "a", priority="low")
    await submit_many(broker, 3, "b", priority="high")

    order = [(await claim(broker, 1, ("a", "b")))[0].type for _ in range(4)]

    assert order == ["b", "b", "b", "a"]


async def test_priority_guard_takes_one_lower_task_every_nth_claim(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(priority_guard=3)
    await submit_many(broker, 10, priority="critical")
    await submit_many(broker, 10, priority="low")

    order = [(await claim_one(broker)).priority for _ in range(9)]

    assert order == ["critical", "critical", "low"] * 3


async def test_priority_guard_takes_one_from_each_lower_priority_then_goes_strict(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(priority_guard=1)
    for priority in ("critical", "high", "medium", "low"):
        await submit_many(broker, 3, priority=priority)

    tasks = await claim(broker, 5)

    assert [t.priority for t in tasks] == ["high", "medium", "low", "critical", "critical"]


async def test_strict_priorities_never_take_a_lower_task_while_an_urgent_one_waits(
    broker: Broker,
) -> None:
    assert broker.settings.priority_guard == 0
    await submit_many(broker, 30, priority="critical")
    await submit_many(broker, 5, priority="low")

    order = [(await claim_one(broker)).priority for _ in range(30)]

    assert set(order) == {"critical"}
    assert len(await claim(broker, 10)) == 5


async def test_claimed_tasks_leave_pending_and_become_active_in_the_counts(
    broker: Broker,
) -> None:
    await broker.enqueue_many([Submission(type="a", priority="high")] * 3)

    await claim(broker, 2, ("a",))

    stats = await broker.stats()
    assert stats.by_state[TaskState.PENDING] == 1
    assert stats.by_state[TaskState.ACTIVE] == 2
    assert stats.pending_by_priority[Priority.HIGH] == 1
    await assert_invariants(broker)
