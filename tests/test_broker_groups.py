"""Fair share: within a priority, claims take turns across the groups with ready tasks."""

from __future__ import annotations

from collections import Counter

import pytest
from broker_helpers import TYPE, claim, failed, released, submit, submit_many, succeeded
from conftest import FakeClock
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.errors import InvalidTaskError
from taskqueue.models import ClaimedTask, Policy, TaskState
from taskqueue.plugin import TaskContext
from taskqueue.testing import run_processor


async def test_one_groups_backlog_does_not_delay_another_groups_tasks(broker: Broker) -> None:
    await submit_many(broker, 2000, group="tenant-a")
    b_ids = set(await submit_many(broker, 10, group="tenant-b"))

    taken: list[str] = []
    while b_ids - set(taken):
        taken.extend(t.id for t in await claim(broker, 1))

    # Taking turns one task per claim: b's ten come within the first twenty claims.
    assert len(taken) <= 20
    await assert_invariants(broker)


async def test_a_batch_claim_shares_itself_across_the_groups(broker: Broker) -> None:
    for group in ("a", "b", "c"):
        await submit_many(broker, 100, group=group)

    tasks = await claim(broker, 30)

    groups = Counter([(await broker.get(t.id)).group for t in tasks])
    assert groups == {"a": 10, "b": 10, "c": 10}
    await assert_invariants(broker)


async def test_a_claimed_task_carries_its_group(broker: Broker) -> None:
    await submit(broker, group="acme")
    await submit(broker)
    assert sorted(t.group or "" for t in await claim(broker, 2)) == ["", "acme"]


async def test_each_group_stays_first_in_first_out(broker: Broker) -> None:
    a = await submit_many(broker, 5, group="a")
    b = await submit_many(broker, 5, group="b")

    tasks = await claim(broker, 10)

    ids = [t.id for t in tasks]
    assert [i for i in ids if i in a] == a
    assert [i for i in ids if i in b] == b


async def test_priorities_come_before_turns(broker: Broker) -> None:
    await submit_many(broker, 50, group="b", priority="low")
    urgent = await submit(broker, group="a", priority="high")

    (first,) = await claim(broker, 1)

    assert first.id == urgent


async def test_tasks_without_a_group_take_their_turn_as_one_group(broker: Broker) -> None:
    await submit_many(broker, 50)
    await submit_many(broker, 50, group="a")
    await submit(broker, group="b")

    tasks = await claim(broker, 3)

    assert {(await broker.get(t.id)).group for t in tasks} == {None, "a", "b"}
    await assert_invariants(broker)


async def test_a_group_that_ran_dry_rejoins_at_the_current_turn(broker: Broker) -> None:
    await submit_many(broker, 100, group="a")
    await submit(broker, group="b")
    await claim(broker, 40)  # b's one task goes in the first round; a's run on
    again = await submit(broker, group="b")

    tasks = await claim(broker, 2)

    assert again in [t.id for t in tasks]
    await assert_invariants(broker)


async def test_retries_and_releases_go_back_to_their_group(broker: Broker) -> None:
    await submit_many(broker, 3, group="a", max_retries=2)
    first, second, _ = await claim(broker, 3)

    await broker.report([failed(first), released(second)])

    task = await broker.get(second.id)
    assert task.state is TaskState.PENDING and task.group == "a"
    await assert_invariants(broker)
    again = await claim(broker, 10)
    await broker.report([succeeded(t) for t in again])
    await assert_invariants(broker)


async def test_cancel_and_listing_see_grouped_tasks(broker: Broker) -> None:
    plain = await submit_many(broker, 3)
    a = await submit_many(broker, 3, group="a")
    b = await submit_many(broker, 3, group="b")

    page = await broker.list_tasks(TaskState.PENDING, limit=4)
    rest = await broker.list_tasks(TaskState.PENDING, limit=100, cursor=page.next_cursor)
    assert [t.id for t in page.items + rest.items] == plain + a + b

    await broker.cancel(a[1])
    cancelled = await broker.cancel_all(TYPE)
    assert sum(cancelled.by_state.values()) == 8
    assert await claim(broker, 10) == []
    await assert_invariants(broker)


async def test_a_type_that_never_had_groups_keeps_no_ring(broker: Broker) -> None:
    await submit_many(broker, 5)
    await claim(broker, 2)

    assert await broker.redis.execute("EXISTS", broker.keys.grouped) == 0
    assert await broker.redis.execute("EXISTS", broker.keys.ring("medium", TYPE)) == 0


@pytest.mark.parametrize("group", ["", "has space", "a:b", "x" * 129])
async def test_a_bad_group_name_is_refused(broker: Broker, group: str) -> None:
    with pytest.raises(InvalidTaskError, match="group"):
        await broker.enqueue(Submission(type=TYPE, group=group))


async def test_stats_name_the_top_groups_by_backlog_with_their_active_tasks(
    broker: Broker,
) -> None:
    for n, group in enumerate(("small", "big", "middle")):
        await submit_many(broker, (2, 30, 10)[n], group=group)
    await submit(broker)  # no group: not a group of the stats
    await claim(broker, 4)  # one turn each: small, big, middle and the ungrouped task

    (groups,) = (await broker.stats()).groups

    assert groups.type == TYPE
    assert (groups.groups_pending, groups.groups_active) == (3, 3)
    assert [(g.group, g.pending, g.active) for g in groups.top] == [
        ("big", 29, 1),
        ("middle", 9, 1),
        ("small", 1, 1),
    ]


async def test_the_stats_name_at_most_the_top_ten_groups(broker: Broker) -> None:
    for n in range(25):
        await submit_many(broker, n + 1, group=f"g{n:02}")

    (groups,) = (await broker.stats()).groups

    assert groups.groups_pending == 25
    assert [g.group for g in groups.top] == [f"g{n:02}" for n in range(24, 14, -1)]


async def test_groups_with_only_active_tasks_fill_the_rest_of_the_top(broker: Broker) -> None:
    await submit(broker, group="running")
    await claim(broker, 1)
    await submit_many(broker, 3, group="waiting")

    (groups,) = (await broker.stats()).groups

    assert (groups.groups_pending, groups.groups_active) == (1, 1)
    assert [(g.group, g.pending, g.active) for g in groups.top] == [
        ("waiting", 3, 0),
        ("running", 0, 1),
    ]


async def test_a_queue_without_groups_has_no_group_stats(broker: Broker) -> None:
    await submit_many(broker, 3)

    assert (await broker.stats()).groups == []


# -- a group concurrency limit ----------------------------------------------------------------


async def groups_of(broker: Broker, tasks: list[ClaimedTask]) -> Counter[str | None]:
    return Counter([(await broker.get(t.id)).group for t in tasks])


async def test_a_group_concurrency_limit_parks_a_full_group_while_others_take_turns(
    broker: Broker,
) -> None:
    await broker.set_policy(Policy(group_concurrency=2), TYPE)
    await submit_many(broker, 10, group="a")
    await submit_many(broker, 10, group="b")

    first = await claim(broker, 10)

    assert await groups_of(broker, first) == {"a": 2, "b": 2}
    await assert_invariants(broker)
    assert await claim(broker, 10) == []
    late = await submit(broker, group="c")  # a group with room still gets its turn
    assert [t.id for t in await claim(broker, 10)] == [late]

    a_tasks = [t for t in first if (await broker.get(t.id)).group == "a"]
    a_task = a_tasks[0]
    await broker.report([succeeded(a_task)])  # one of a's ends: a has room for one more
    await assert_invariants(broker)
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 1}
    await assert_invariants(broker)


async def test_a_failed_or_released_task_of_a_full_group_gives_its_room_back(
    broker: Broker,
) -> None:
    await broker.set_policy(Policy(group_concurrency=1), TYPE)
    ids = await submit_many(broker, 3, group="a", max_retries=3)
    (running,) = await claim(broker, 3)
    assert await claim(broker, 3) == []

    await broker.report([failed(running)])  # its retry waits out a backoff: the next one runs
    await assert_invariants(broker)
    (second,) = await claim(broker, 3)
    assert second.id == ids[1]
    await broker.report([released(second)])  # interrupted: back at the front, run again first
    await assert_invariants(broker)
    assert [t.id for t in await claim(broker, 3)] == [ids[1]]
    await assert_invariants(broker)


async def test_changing_the_group_limit_refolds_the_waiting_groups(broker: Broker) -> None:
    await broker.set_policy(Policy(group_concurrency=1), TYPE)
    for group in ("a", "b"):
        await submit_many(broker, 5, group=group)
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 1, "b": 1}

    await broker.set_policy(Policy(group_concurrency=3), TYPE)
    await assert_invariants(broker)
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 2, "b": 2}

    await broker.set_policy(Policy(group_concurrency=1), TYPE)  # lower than what runs
    await assert_invariants(broker)
    assert await claim(broker, 10) == []

    await broker.unset_policy(["group_concurrency"], TYPE)  # no limit: every group runs
    await assert_invariants(broker)
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 2, "b": 2}


async def test_tasks_without_a_group_are_not_held_by_the_group_limit(broker: Broker) -> None:
    await broker.set_policy(Policy(group_concurrency=1), TYPE)
    await submit_many(broker, 3, group="a")
    await submit_many(broker, 3)

    assert await groups_of(broker, await claim(broker, 10)) == {"a": 1, None: 3}
    await assert_invariants(broker)


async def test_a_group_rate_limit_spaces_each_groups_starts(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.set_policy(Policy(group_rate_limit="2/s"), TYPE)  # one every 500 ms
    await submit_many(broker, 3, group="a")
    await submit_many(broker, 3, group="b")

    first = await broker.claim_batch("w", [TYPE], 10)
    assert await groups_of(broker, first.tasks) == {"a": 1, "b": 1}
    assert first.held_until_ms == clock() + 500  # fewer than asked: when to come back
    await assert_invariants(broker)

    clock.advance(ms=499)
    held = await broker.claim_batch("w", [TYPE], 10)
    assert held.tasks == []
    assert held.held_until_ms == clock() + 1
    clock.advance(ms=1)
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 1, "b": 1}
    await assert_invariants(broker)


async def test_a_resting_group_does_not_hold_back_the_others(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.set_policy(Policy(group_rate_limit="1/min"), TYPE)
    await submit_many(broker, 5, group="a")
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 1}

    await submit_many(broker, 2, group="b")  # b joins while a rests
    await submit_many(broker, 2)  # tasks without a group are not rate limited per group
    assert await groups_of(broker, await claim(broker, 10)) == {"b": 1, None: 2}
    await assert_invariants(broker)
    await submit(broker, group="a")  # a submission does not end a rest
    assert await claim(broker, 10) == []
    clock.advance(60)
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 1, "b": 1}
    await assert_invariants(broker)


async def test_lifting_the_group_rate_limit_lets_the_resting_groups_back(
    broker: Broker,
) -> None:
    await broker.set_policy(Policy(group_rate_limit="1/h", group_concurrency=5), TYPE)
    await submit_many(broker, 4, group="a")
    assert len(await claim(broker, 10)) == 1

    await broker.set_policy(Policy(group_rate_limit="1/min"), TYPE)  # still resting
    await assert_invariants(broker)
    assert await claim(broker, 10) == []
    await broker.unset_policy(["group_rate_limit"], TYPE)
    await assert_invariants(broker)
    assert await groups_of(broker, await claim(broker, 10)) == {"a": 3}


async def test_a_resting_group_at_its_concurrency_limit_waits_for_both(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.set_policy(Policy(group_rate_limit="1/s", group_concurrency=1), TYPE)
    await submit_many(broker, 3, group="a")
    (running,) = await claim(broker, 10)
    clock.advance(1)
    assert await claim(broker, 10) == []  # rested enough, but its one slot is taken
    await assert_invariants(broker)
    await broker.report([succeeded(running)])
    await assert_invariants(broker)
    assert len(await claim(broker, 10)) == 1
    await broker.report([succeeded(running)])  # stale: changes nothing
    assert await claim(broker, 10) == []  # a slot free, but resting again
    await assert_invariants(broker)


@pytest.mark.parametrize("rate", ["", "10", "0/s", "1/0s", "1/2d"])
async def test_a_bad_group_rate_limit_is_refused(broker: Broker, rate: str) -> None:
    with pytest.raises(InvalidTaskError) as refused:
        await broker.set_policy(Policy(group_rate_limit=rate), TYPE)
    assert refused.value.field == "group_rate_limit"


async def test_run_processor_gives_the_processor_its_group() -> None:
    async def tenant(ctx: TaskContext) -> str | None:
        return ctx.group

    assert (await run_processor(tenant, TYPE, group="acme")).value == "acme"
    assert (await run_processor(tenant, TYPE)).value is None
