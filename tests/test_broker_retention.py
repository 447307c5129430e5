"""Finished records are kept as ``[retention]`` says: per state, an age and a count; the
trimmer service deletes the rest in batches, so Redis memory stays bounded."""

from __future__ import annotations

import trio
from broker_helpers import claim, make_dead, submit, submit_many, succeeded, zscore
from conftest import FakeClock, MakeBroker
from invariants import assert_invariants

from taskqueue.broker import Retention, TrimResult
from taskqueue.daemon.trimmer import BATCH, Trimmer
from taskqueue.health import Health
from taskqueue.models import TaskState

NO_LIMITS = Retention(
    succeeded=0, succeeded_max=0, cancelled=0, cancelled_max=0, dead=0, dead_max=0
)


async def test_records_older_than_their_states_age_are_deleted(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(
        retention=Retention(succeeded=60.0, cancelled=60.0, dead=3600.0, dead_max=0)
    )
    done, kept = await submit_many(broker, 2)
    a, c = await claim(broker, 2)
    stopped = await submit(broker)
    await broker.report([succeeded(a)])
    await broker.cancel(stopped)  # pending: cancelled at once
    (dead,) = await make_dead(broker, 1)
    clock.advance(30)
    await broker.report([succeeded(c)])
    clock.advance(30)

    assert await broker.trim() == TrimResult(succeeded=1, cancelled=1, dead=0)

    assert await broker.get_many([done, stopped]) == [None, None]
    assert (await broker.get(kept)).state is TaskState.SUCCEEDED
    assert await zscore(broker, broker.keys.succeeded, done) is None
    assert (await broker.get(dead)).state is TaskState.DEAD  # its age is an hour
    clock.advance(3600)
    assert await broker.trim() == TrimResult(succeeded=1, cancelled=0, dead=1)
    await assert_invariants(broker)


async def test_the_oldest_beyond_a_states_count_are_deleted(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retention=Retention(succeeded=0, succeeded_max=3, dead=0, dead_max=2))
    ids = await submit_many(broker, 5)
    for task in await claim(broker, 5):
        await broker.report([succeeded(task)])
        clock.advance(1)
    dead = await make_dead(broker, 3)

    assert await broker.trim() == TrimResult(succeeded=2, cancelled=0, dead=1)

    assert [t and t.id for t in await broker.get_many(ids)] == [None, None, *ids[2:]]
    stats = await broker.stats()
    assert stats.by_state[TaskState.SUCCEEDED] == 3
    assert stats.by_state[TaskState.DEAD] == 2  # the dead-letter counts follow
    assert stats.totals["dead_dropped"] == 1
    assert len((await broker.list_tasks(TaskState.DEAD)).items) == 2
    # They died at the same moment: the sorted set orders them by id.
    assert [t is None for t in await broker.get_many(sorted(dead))] == [True, False, False]
    await assert_invariants(broker)


async def test_no_limits_keep_everything(make_broker: MakeBroker, clock: FakeClock) -> None:
    broker = make_broker(retention=NO_LIMITS)
    task_id = await submit(broker)
    (task,) = await claim(broker, 1)
    await broker.report([succeeded(task)])
    clock.advance(10 * 365 * 86400)
    assert await broker.trim() == TrimResult(succeeded=0, cancelled=0, dead=0)
    assert (await broker.get(task_id)).state is TaskState.SUCCEEDED


async def test_one_call_deletes_at_most_its_limit(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retention=Retention(succeeded=1.0))
    await submit_many(broker, 25)
    await broker.report([succeeded(t) for t in await claim(broker, 25)])
    clock.advance(2)

    assert (await broker.trim(limit=10)).succeeded == 10
    assert (await broker.trim(limit=10)).succeeded == 10
    assert (await broker.trim(limit=10)).succeeded == 5
    assert (await broker.stats()).by_state[TaskState.SUCCEEDED] == 0


async def test_the_trimmer_goes_on_at_once_after_a_full_batch(
    make_broker: MakeBroker, clock: FakeClock
) -> None:
    broker = make_broker(retention=Retention(succeeded=1.0))
    count = BATCH * 2 + 7
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        await submit_many(broker, n)
        await broker.report([succeeded(t) for t in await claim(broker, n)])
    clock.advance(2)
    trimmer = Trimmer(broker, health=Health(), interval=3600.0)

    async with trio.open_nursery() as nursery:
        await nursery.start(trimmer.run)
        # Three calls; a rest of an hour after either full one would time this out.
        with trio.fail_after(30):
            while trimmer.trimmed < count:  # noqa: ASYNC110 - the trimmer has no event for it
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert (await broker.stats()).by_state[TaskState.SUCCEEDED] == 0
