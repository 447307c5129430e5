"""A namespace over several partitions: where tasks are placed, and that every operation
finds them there (claims, reports, leases, reads, listings, cancels, policy, sweeps)."""

from __future__ import annotations

import pytest
from broker_helpers import TYPE, failed, succeeded, worker_info
from conftest import FakeClock, MakeBroker
from hypothesis import given
from hypothesis import strategies as st
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.broker.partitions import (
    key_partition,
    partition_keys,
    partition_of,
    tag_id,
    type_home,
)
from taskqueue.errors import IdempotencyKeyNotFoundError, InvalidTaskError, QueueFullError
from taskqueue.ids import new_task_ids
from taskqueue.models import MAX_PARTITIONS, Debounce, Policy, TaskState

PARTITIONS = 3


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    return make_broker(partitions=PARTITIONS)


def partition_brokers(broker: Broker) -> list[Broker]:
    """A one-partition broker on each partition's namespace: each partition is a whole
    queue of its own, readable (and checkable) as one."""
    return [broker.partition(p) for p in range(len(broker.partitions))]


async def pending_per_partition(broker: Broker) -> list[int]:
    return [(await part.stats()).by_state[TaskState.PENDING] for part in partition_brokers(broker)]


async def assert_every_partition_consistent(broker: Broker) -> None:
    for part in partition_brokers(broker):
        await assert_invariants(part)


# -- placement -------------------------------------------------------------------------------


def test_the_first_partition_keeps_the_namespace_s_own_keys() -> None:
    assert [k.prefix for k in partition_keys("tq", 1)] == ["{tq}:"]
    assert [k.prefix for k in partition_keys("tq", 3)] == ["{tq}:", "{tq:1}:", "{tq:2}:"]
    with pytest.raises(ValueError, match="partitions must be 1 to 256"):
        partition_keys("tq", MAX_PARTITIONS + 1)


@given(st.integers(1, MAX_PARTITIONS), st.data())
def test_a_tagged_id_names_its_partition_and_stays_an_id(count: int, data: st.DataObject) -> None:
    partition = data.draw(st.integers(0, count - 1))
    (task_id,) = new_task_ids(1, 1_700_000_000_000)
    tagged = tag_id(task_id, partition, count)
    assert partition_of(tagged, count) == partition
    assert len(tagged) == len(task_id)
    assert tagged[:-4] == task_id[:-4]  # the time and the rest of the random part kept
    assert partition_of(tagged, 1) == 0


async def test_single_submits_go_round_robin(broker: Broker) -> None:
    ids = [(await broker.enqueue(Submission(type=TYPE, payload=i))).id for i in range(30)]
    assert await pending_per_partition(broker) == [10, 10, 10]
    for task_id in ids:
        assert (await broker.get(task_id)).state is TaskState.PENDING
    assert (await broker.stats()).by_state[TaskState.PENDING] == 30
    await assert_every_partition_consistent(broker)


async def test_a_batch_of_unkeyed_tasks_goes_to_one_partition(broker: Broker) -> None:
    for _ in range(PARTITIONS):
        batch = [Submission(type=TYPE, payload=i) for i in range(50)]
        submitted = await broker.enqueue_many(batch)
        assert len({partition_of(s.id, PARTITIONS) for s in submitted}) == 1
    assert await pending_per_partition(broker) == [50, 50, 50]


async def test_keyed_submissions_find_their_earlier_task(broker: Broker) -> None:
    """Idempotency keys, unique tasks and debounce keys always go to the partition their key
    names, so the second submission meets the first in its script."""
    for fields in (
        {"idempotency_key": "order-17"},
        {"unique": True, "payload": {"user": 7}},
        {"debounce": Debounce(key="user-7", window=5.0)},
    ):
        first = await broker.enqueue(Submission(type=TYPE, **fields))
        again = await broker.enqueue(Submission(type=TYPE, **fields))
        assert first.created
        assert again.id == first.id, fields
    view = await broker.view_by_key("order-17", 100)
    assert view.task.state is TaskState.PENDING


async def test_a_mixed_batch_spreads_by_key_and_answers_in_order(broker: Broker) -> None:
    keys = [f"k{i}" for i in range(12)]
    batch = [Submission(type=TYPE, payload=k, idempotency_key=k) for k in keys]
    submitted = await broker.enqueue_many(batch)
    assert [(await broker.get(s.id)).payload for s in submitted] == keys
    assert [partition_of(s.id, PARTITIONS) for s in submitted] == [
        key_partition("idem:" + k, PARTITIONS) for k in keys
    ]
    assert len({partition_of(s.id, PARTITIONS) for s in submitted}) > 1
    again = await broker.enqueue_many(batch)
    assert [s.id for s in again] == [s.id for s in submitted]
    assert not any(s.created for s in again)


async def test_an_invalid_task_of_a_spread_batch_is_named_by_its_batch_index(
    broker: Broker,
) -> None:
    batch = [Submission(type=TYPE, idempotency_key=f"k{i}") for i in range(5)]
    batch.append(Submission(type=TYPE, idempotency_key="k9", max_retries=-1))
    with pytest.raises(InvalidTaskError) as raised:
        await broker.enqueue_many(batch)
    assert raised.value.field == "5.max_retries"
    assert (await broker.stats()).by_state[TaskState.PENDING] == 0


async def test_dependencies_live_beside_their_dependents(broker: Broker) -> None:
    chain = [
        Submission(type=TYPE, payload="a"),
        Submission(type=TYPE, payload="b", depends_on=[0]),
        Submission(type=TYPE, payload="c", depends_on=[1]),
    ]
    ids = [s.id for s in await broker.enqueue_many(chain)]
    assert len({partition_of(i, PARTITIONS) for i in ids}) == 1
    later = await broker.enqueue(Submission(type=TYPE, payload="d", depends_on=[ids[2]]))
    assert partition_of(later.id, PARTITIONS) == partition_of(ids[2], PARTITIONS)
    assert later.state is TaskState.BLOCKED
    for _ in range(3):
        (task,) = await broker.claim("w1", [TYPE], 10)
        await broker.report([succeeded(task)])
    (last,) = await broker.claim("w1", [TYPE], 10)
    assert last.id == later.id
    await assert_every_partition_consistent(broker)


async def test_a_task_that_would_have_to_be_in_two_partitions_is_refused(
    broker: Broker,
) -> None:
    first = await broker.enqueue(Submission(type=TYPE))
    second = await broker.enqueue(Submission(type=TYPE))
    assert partition_of(first.id, PARTITIONS) != partition_of(second.id, PARTITIONS)
    with pytest.raises(InvalidTaskError, match="fall in different partitions") as raised:
        await broker.enqueue(Submission(type=TYPE, depends_on=[first.id, second.id]))
    assert raised.value.field == "depends_on"
    keys = [f"k{i}" for i in range(10)]
    apart = [k for k in keys if key_partition("idem:" + k, PARTITIONS) != partition_of(first.id, 3)]
    batch = [
        Submission(type=TYPE),
        Submission(type=TYPE, depends_on=[first.id], idempotency_key=apart[0]),
    ]
    with pytest.raises(InvalidTaskError, match="task 1: its dependencies and key") as raised:
        await broker.enqueue_many(batch)
    assert raised.value.field == "1.depends_on"
    chained = [
        Submission(type=TYPE, idempotency_key=apart[0]),
        Submission(type=TYPE, depends_on=[0, first.id]),
    ]
    with pytest.raises(InvalidTaskError, match="the dependencies and keys of this batch"):
        await broker.enqueue_many(chained)
    assert (await broker.stats()).by_state[TaskState.PENDING] == 2


# -- working ---------------------------------------------------------------------------------


async def test_a_claim_takes_from_every_partition_and_reports_go_home(broker: Broker) -> None:
    ids = {(await broker.enqueue(Submission(type=TYPE, payload=i))).id for i in range(9)}
    claimed = await broker.claim("w1", [TYPE], 20)
    assert {t.id for t in claimed} == ids
    states = await broker.report([succeeded(t, result=t.payload) for t in claimed])
    assert states == [TaskState.SUCCEEDED] * 9
    stats = await broker.stats()
    assert stats.by_state[TaskState.SUCCEEDED] == 9
    assert stats.by_state[TaskState.PENDING] == 0
    assert stats.totals["succeeded"] == 9
    read = await broker.get_many([*sorted(ids), "01a22fc9-a1e2-768a-8718-5bc93aafe59b"])
    assert read[-1] is None
    assert all(t is not None and t.result == t.payload for t in read[:-1])
    await assert_every_partition_consistent(broker)


async def test_a_claim_asks_the_next_partition_only_for_what_is_short(broker: Broker) -> None:
    for _ in range(PARTITIONS):
        await broker.enqueue_many([Submission(type=TYPE, payload=i) for i in range(4)])
    assert await pending_per_partition(broker) == [4, 4, 4]
    assert len(await broker.claim("w1", [TYPE], 6)) == 6
    # One partition gave all it had, the next the two missing; the third was not asked.
    assert sorted(await pending_per_partition(broker)) == [0, 2, 4]
    assert len(await broker.claim("w1", [TYPE], 10)) == 6
    assert await broker.claim("w1", [TYPE], 10) == []


async def test_partitions_take_turns_at_being_asked_first(broker: Broker) -> None:
    """A worker that claims a little at a time draws from every busy partition in turn, not
    from one until it is empty."""
    for _ in range(PARTITIONS):
        await broker.enqueue_many([Submission(type=TYPE, payload=i) for i in range(10)])
    drawn = [
        {partition_of(t.id, PARTITIONS) for t in await broker.claim("w1", [TYPE], 2)}
        for _ in range(2 * PARTITIONS)
    ]
    assert all(len(one) == 1 for one in drawn)
    assert [p for (p,) in drawn] == [p % PARTITIONS for p in range(1, 2 * PARTITIONS + 1)]


async def test_a_group_keeps_its_order_in_its_one_partition(broker: Broker) -> None:
    """The group is the ordering key: its tasks share a partition and start in FIFO order."""
    ids = [(await broker.enqueue(Submission(type=TYPE, group="acct-7"))).id for _ in range(9)]
    assert len({partition_of(i, PARTITIONS) for i in ids}) == 1
    started = []
    for _ in range(9):
        (task,) = await broker.claim("w1", [TYPE], 1)
        started.append(task.id)
        await broker.report([succeeded(task)])
    assert started == ids


async def test_heartbeats_keep_leases_in_every_partition(broker: Broker, clock: FakeClock) -> None:
    for i in range(6):
        await broker.enqueue(Submission(type=TYPE, payload=i))
    claimed = await broker.claim("w1", [TYPE], 6)
    assert len({partition_of(t.id, PARTITIONS) for t in claimed}) == PARTITIONS
    lease = broker.settings.lease_ttl
    clock.advance(lease * 0.75)
    reply = await broker.heartbeat(worker_info("w1", clock()), [(t.id, t.attempt) for t in claimed])
    assert reply.lost == []
    clock.advance(lease * 0.75)  # past the first lease, within the refreshed one
    assert (await broker.reap()).reaped == 0
    assert len(await broker.workers()) == 1
    clock.advance(lease * 1.5)
    reaped = await broker.reap()
    assert reaped.reaped == 6
    assert reaped.workers_removed == ["w1"]
    assert {o.id for o in reaped.outcomes} == {t.id for t in claimed}
    await assert_every_partition_consistent(broker)


async def test_policy_applies_to_every_partition(broker: Broker) -> None:
    await broker.enqueue_many([Submission(type=TYPE) for _ in range(3)])
    await broker.enqueue_many([Submission(type=TYPE) for _ in range(3)])
    await broker.set_policy(Policy(paused=True), TYPE)
    assert await broker.claim("w1", [TYPE], 10) == []
    await broker.set_policy(Policy(paused=False), TYPE)
    assert len(await broker.claim("w1", [TYPE], 10)) == 6


@pytest.mark.parametrize(
    "limit",
    [Policy(concurrency=1), Policy(rate_limit="2/s"), Policy(max_queue_depth=5)],
    ids=["concurrency", "rate", "depth"],
)
async def test_a_limited_type_lives_in_its_home_partition(broker: Broker, limit: Policy) -> None:
    """A limit counts the whole namespace: once a type has one, its submissions are refused
    away from its home partition (nothing written) and placed there again, so a
    concurrency of 1 is one task at a time across every partition."""
    await broker.set_policy(limit, TYPE)
    home = type_home(TYPE, PARTITIONS)
    ids = [(await broker.enqueue(Submission(type=TYPE, payload=i))).id for i in range(3)]
    batch = await broker.enqueue_many(
        [Submission(type=TYPE, payload=i) for i in range(2)]
        + [Submission(type="other", payload=i) for i in range(6)]
    )
    ids += [s.id for s in batch[:2]]
    assert {partition_of(i, PARTITIONS) for i in ids} == {home}
    assert [(await broker.get(i)).payload for i in ids] == [0, 1, 2, 0, 1]
    assert await pending_per_partition(broker) == [
        5 * (p == home) + sum(partition_of(s.id, 3) == p for s in batch[2:]) for p in range(3)
    ]
    claimed = await broker.claim("w1", [TYPE], 10)
    if limit.max_queue_depth:
        assert len(claimed) == 5
        with pytest.raises(QueueFullError):
            await broker.enqueue_many([Submission(type=TYPE) for _ in range(6)])
    else:
        assert len(claimed) == 1  # the limit held across the namespace
    await assert_every_partition_consistent(broker)


async def test_a_limited_type_away_from_home_in_a_spread_batch_moves_alone(
    broker: Broker,
) -> None:
    await broker.set_policy(Policy(concurrency=2), TYPE)
    keys = [f"k{i}" for i in range(9)]
    batch = [Submission(type="other", idempotency_key=k) for k in keys]
    batch += [Submission(type=TYPE, payload=n) for n in range(3)]
    submitted = await broker.enqueue_many(batch)
    assert [partition_of(s.id, 3) for s in submitted[:9]] == [
        key_partition("idem:" + k, 3) for k in keys
    ]
    assert {partition_of(s.id, 3) for s in submitted[9:]} == {type_home(TYPE, 3)}
    assert (await broker.stats()).by_state[TaskState.PENDING] == 12  # each written once
    fresh = (f"far{i}" for i in range(100))
    far = next(k for k in fresh if key_partition("idem:" + k, 3) != type_home(TYPE, 3))
    homed = await broker.enqueue(Submission(type=TYPE, idempotency_key=far))
    assert partition_of(homed.id, 3) == type_home(TYPE, 3)  # its type's home, not its key's
    assert (await broker.view_by_key(far, 100)).task.id == homed.id
    with pytest.raises(IdempotencyKeyNotFoundError):
        await broker.view_by_key("never", 100)


# -- steering and reading --------------------------------------------------------------------


async def test_cancel_and_requeue_find_the_task_in_its_partition(broker: Broker) -> None:
    ids = [(await broker.enqueue(Submission(type=TYPE, max_retries=0))).id for _ in range(3)]
    assert len({partition_of(i, PARTITIONS) for i in ids}) == PARTITIONS
    assert await broker.cancel(ids[2]) == "cancelled"
    assert (await broker.get(ids[2])).state is TaskState.CANCELLED
    claimed = await broker.claim("w1", [TYPE], 10)
    await broker.report([failed(t) for t in claimed])
    assert (await broker.stats()).by_state[TaskState.DEAD] == 2
    await broker.requeue_dead(ids[0])
    assert (await broker.get(ids[0])).state is TaskState.PENDING
    assert await broker.requeue_all_dead(TYPE) == 1
    assert (await broker.stats()).by_state[TaskState.PENDING] == 2
    cancellation = await broker.cancel_all(TYPE)
    assert cancellation.cancelled == 2
    await assert_every_partition_consistent(broker)


@pytest.mark.parametrize("state", [TaskState.PENDING, TaskState.SUCCEEDED])
async def test_listings_page_through_every_partition_once(broker: Broker, state: TaskState) -> None:
    ids = {(await broker.enqueue(Submission(type=TYPE, payload=i))).id for i in range(20)}
    if state is TaskState.SUCCEEDED:
        await broker.report([succeeded(t) for t in await broker.claim("w1", [TYPE], 20)])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await broker.list_tasks(state, limit=3, cursor=cursor)
        assert len(page.items) <= 3
        seen += [t.id for t in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids)
    assert pages >= 7
    views = await broker.list_views(state, cut_at=100, limit=50)
    assert {v.task.id for v in views.items} == ids
    assert views.next_cursor is None


@pytest.mark.parametrize("cursor", ["3|", "x|0", "0", "|", "1|nonsense"])
async def test_a_listing_cursor_it_did_not_issue_is_refused(broker: Broker, cursor: str) -> None:
    with pytest.raises(InvalidTaskError) as raised:
        await broker.list_tasks(TaskState.PENDING, cursor=cursor)
    assert raised.value.field == "cursor"
