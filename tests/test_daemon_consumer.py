"""How a running daemon takes work: at most ``concurrency`` tasks at once, woken by a submission
rather than by polling, delayed tasks on time, and a cancel that reaches a claimed task before
it starts.

The daemons run in this trio run; this module is also a plugin adding ``test.gauge``, which
measures how many of its tasks run at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import trio
import trio.testing
from daemon_helpers import (
    daemon_config,
    running_daemon,
    submit,
    submit_many,
    tasks_of,
    wait_for_count,
    wait_for_state,
)
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.daemon.consumer import service as consumer_module
from taskqueue.models import Claim, TaskState
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.processors import LoadedPlugins, load_plugins
from taskqueue.redis import Redis


class Gauge:
    """How many ``test.gauge`` tasks run now, and the most that ever ran at once."""

    now = 0
    peak = 0


async def gauge(ctx: TaskContext) -> None:
    Gauge.now += 1
    Gauge.peak = max(Gauge.peak, Gauge.now)
    try:
        await trio.sleep(0.05)
    finally:
        Gauge.now -= 1


#: How often ``test.chatty`` reports its progress.
CHATTY_REPORTS = 1000


async def chatty(ctx: TaskContext) -> None:
    """Reports its progress in a tight loop, then waits to be told to finish."""
    for n in range(1, CHATTY_REPORTS + 1):
        await ctx.report_progress({"done": n})
    await trio.sleep_forever()


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.gauge", gauge)
    registry.add("test.chatty", chatty)


@pytest.fixture
def plugins() -> Iterator[LoadedPlugins]:
    """The installed plugins plus this module's task type."""
    Gauge.now = Gauge.peak = 0
    yield load_plugins(extra=(sys.modules[__name__],))


@pytest.fixture
def broker(redis: Redis) -> Broker:
    """The test's broker: the daemon's defaults and the wall clock, as the daemon has."""
    return Broker(redis)


async def test_worker_runs_at_most_its_concurrency_at_once(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    ids = await submit_many(broker, "test.gauge", [None] * 30)
    config = daemon_config(redis_url, worker__concurrency=4, worker__prefetch=10)
    async with running_daemon(config, plugins):
        await wait_for_count(broker, TaskState.SUCCEEDED, 30)

    assert Gauge.peak == 4
    assert {t.state for t in await tasks_of(broker, ids)} == {TaskState.SUCCEEDED}
    await assert_invariants(broker)


async def test_idle_worker_is_woken_by_a_submission_not_by_its_recheck(
    redis_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The safety-net recheck an hour away: only the wake-up message can start these tasks
    # (the speed of the wake-up is measured by bench/e2e.py, not asserted here).
    monkeypatch.setattr(consumer_module, "IDLE_RECHECK", 3600.0)
    async with running_daemon(daemon_config(redis_url)):
        warm_up = await submit(broker, "noop")
        await wait_for_state(broker, warm_up)

        for _ in range(5):
            task = await wait_for_state(broker, await submit(broker, "noop"), within=30)
            assert task.state is TaskState.SUCCEEDED


async def test_an_idle_worker_claims_once_per_wake_up(
    redis_url: str, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim that comes back short means the queues had no more; a second one at once would
    # find nothing, and would go out before the claimed task starts. With hand-offs, the task
    # comes without a claim, and the one claim after it registers the worker again.
    monkeypatch.setattr(consumer_module, "IDLE_RECHECK", 3600.0)
    claims: list[int] = []
    claim_batch = Broker.claim_batch

    async def counted(
        self: Broker, worker_id: str, task_types: Sequence[str], count: int, **options: Any
    ) -> Claim:
        claims.append(count)
        return await claim_batch(self, worker_id, task_types, count, **options)

    monkeypatch.setattr(Broker, "claim_batch", counted)
    async with running_daemon(daemon_config(redis_url)):
        await wait_for_state(broker, await submit(broker, "noop"))
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the start-up's claims over
        claims.clear()
        for _ in range(5):
            task = await wait_for_state(broker, await submit(broker, "noop"), within=30)
            assert task.state is TaskState.SUCCEEDED

    assert len(claims) == 5


async def test_delayed_task_runs_when_its_delay_is_over(redis_url: str, broker: Broker) -> None:
    async with running_daemon(daemon_config(redis_url)):
        task_id = await submit(broker, "clock", delay=0.4)
        assert (await broker.get(task_id)).state is TaskState.SCHEDULED
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.SUCCEEDED
    started_ms = task.result["started"] * 1000
    # Never early; late only by scheduling noise (a loaded machine), not by a polling period.
    assert task.created_ms + 400 <= started_ms < task.created_ms + 400 + 3000
    await assert_invariants(broker)


async def test_cancelling_a_claimed_task_that_has_not_started_ends_it_unrun(
    redis_url: str, broker: Broker
) -> None:
    config = daemon_config(redis_url, worker__concurrency=1, worker__prefetch=2)
    async with running_daemon(config):
        blocker, queued = await submit_many(broker, "sleep", [{"seconds": 30}, {"seconds": 0}])
        await wait_for_count(broker, TaskState.ACTIVE, 2)  # one runs, one waits in this worker

        assert await broker.cancel(queued) == "requested"
        task = await wait_for_state(broker, queued, within=1.5)
        assert (task.state, task.result) == (TaskState.CANCELLED, None)
        assert (await broker.get(blocker)).state is TaskState.ACTIVE

        await broker.cancel(blocker)
        await wait_for_state(broker, blocker, within=1.5)
        await assert_invariants(broker)


async def test_progress_reported_in_a_tight_loop_is_coalesced_and_the_newest_value_kept(
    redis_url: str, broker: Broker, redis: Redis, plugins: LoadedPlugins
) -> None:
    progress_events = 0
    final = trio.Event()
    async with running_daemon(daemon_config(redis_url), plugins):
        async with redis.subscribe(broker.keys.events_channel) as subscription:
            task_id = await submit(broker, "test.chatty")
            with trio.fail_after(10):
                async for _channel, data in subscription:
                    events = json.loads(data)
                    progress_events += sum(1 for e in events if e[2] == "progress")
                    task = await broker.get(task_id)
                    if task.progress == {"done": CHATTY_REPORTS}:
                        final.set()
                        break
        await broker.cancel(task_id)

    assert final.is_set()
    # Each write carries the newest value: far fewer writes than reports.
    assert 1 <= progress_events < CHATTY_REPORTS
