"""What a daemon does when a task does not simply succeed: it raises, overruns its timeout, is
cancelled while it runs, or runs longer than a worker may stay silent.

The daemons run in this trio run against the session's Redis; this module is also a plugin
(see :func:`taskqueue_register_processors`) that adds two misbehaving task types.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
import trio
from daemon_helpers import (
    daemon_config,
    running_daemon,
    submit,
    wait_for_state,
)
from invariants import assert_invariants

from taskqueue.broker import Broker, wall_clock_ms
from taskqueue.config import Config
from taskqueue.models import TaskState
from taskqueue.plugin import PermanentError, ProcessorRegistry, TaskContext, hookimpl
from taskqueue.processors import LoadedPlugins, load_plugins
from taskqueue.redis import Redis

#: The attempts ``test.explode`` saw, in order.
explosions: list[int] = []
#: Lets ``test.stubborn`` return (it ignores its deadline until then).
stubborn_release = threading.Event()


def _detonate(attempt: int) -> None:
    raise ValueError(f"explosion on attempt {attempt}")


async def explode(ctx: TaskContext) -> None:
    """Raises on every attempt."""
    explosions.append(ctx.attempt)
    _detonate(ctx.attempt)


async def refuse(ctx: TaskContext) -> None:
    """Fails for good: retrying cannot fix its input."""
    explosions.append(ctx.attempt)
    raise PermanentError(f"payload {ctx.payload!r} can never work")


def stubborn(ctx: TaskContext) -> str:
    """A synchronous processor that blocks its thread and cannot see its deadline."""
    stubborn_release.wait(10)
    return "finished late"


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.explode", explode)
    registry.add("test.refuse", refuse)
    registry.add("test.stubborn", stubborn)


@pytest.fixture
def plugins() -> Iterator[LoadedPlugins]:
    """The installed plugins plus this module's task types."""
    explosions.clear()
    stubborn_release.clear()
    yield load_plugins(extra=(sys.modules[__name__],))
    stubborn_release.set()


@pytest.fixture
def broker(redis: Redis) -> Broker:
    """The test's broker: the daemon's defaults and the wall clock, as the daemon has."""
    return Broker(redis)


# -- exceptions ---------------------------------------------------------------------------------


async def test_raising_processor_is_retried_then_dead_lettered_with_error_and_traceback(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    async with running_daemon(daemon_config(redis_url), plugins):
        task_id = await submit(broker, "test.explode", max_retries=2)
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.DEAD
    assert explosions == [1, 2, 3]
    assert task.attempt == 3
    assert task.error == "ValueError: explosion on attempt 3"
    assert task.traceback is not None
    assert task.traceback.startswith("Traceback (most recent call last)")
    assert "in _detonate" in task.traceback
    assert task.traceback.rstrip().endswith("ValueError: explosion on attempt 3")
    totals = (await broker.stats()).totals
    assert (totals["failed"], totals["retried"], totals["dead"]) == (3, 2, 1)
    assert list((await broker.list_tasks(TaskState.DEAD)).items) == [task]
    await assert_invariants(broker)


async def test_permanent_error_dead_letters_at_once_leaving_its_retries_unspent(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    async with running_daemon(daemon_config(redis_url), plugins):
        task_id = await submit(broker, "test.refuse", payload=7, max_retries=3)
        task = await wait_for_state(broker, task_id)

    assert task.state is TaskState.DEAD
    assert explosions == [1]
    assert (task.attempt, task.attempts_left) == (1, 3)
    assert task.error == "PermanentError: payload 7 can never work"
    assert task.traceback is not None and "in refuse" in task.traceback
    totals = (await broker.stats()).totals
    assert (totals["failed"], totals["dead"], totals.get("retried", 0)) == (1, 1, 0)
    await assert_invariants(broker)


async def test_failed_attempt_waits_out_its_backoff_before_the_retry(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    config = daemon_config(redis_url, task__retry_base_delay="60s", task__retry_max_delay="60s")
    async with running_daemon(config, plugins):
        before = wall_clock_ms()
        task_id = await submit(broker, "test.explode", max_retries=3)
        task = await wait_for_state(broker, task_id, TaskState.SCHEDULED)
        after = wall_clock_ms()

        # Full jitter: the first retry waits a random part of base_delay * 2**0 = 60 s.
        assert before < task.ready_ms <= after + 60_000
        assert task.error == "ValueError: explosion on attempt 1"
        assert task.attempt == 1
        assert explosions == [1]
        await assert_invariants(broker)


# -- timeouts -----------------------------------------------------------------------------------


async def test_timeout_cancels_a_task_at_its_deadline_and_counts_as_a_failed_attempt(
    redis_url: str, broker: Broker
) -> None:
    start = trio.current_time()
    async with running_daemon(daemon_config(redis_url)):
        task_id = await submit(broker, "sleep", {"seconds": 30}, timeout=0.3, max_retries=1)
        task = await wait_for_state(broker, task_id)
    elapsed = trio.current_time() - start

    assert task.state is TaskState.DEAD
    assert task.attempt == 2
    assert task.error == "timed out after 0.3s"
    assert task.started_ms is not None and task.finished_ms is not None
    assert 300 <= task.finished_ms - task.started_ms < 3000
    assert elapsed < 10, "two attempts of 0.3 s should take well under 30 s"
    assert (await broker.stats()).totals["failed"] == 2
    await assert_invariants(broker)


async def test_synchronous_processor_ignoring_its_deadline_is_abandoned_at_the_deadline(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    async with running_daemon(daemon_config(redis_url), plugins):
        task_id = await submit(broker, "test.stubborn", timeout=0.3, max_retries=0)
        task = await wait_for_state(broker, task_id, within=3)
        assert not stubborn_release.is_set(), "the processor is still blocked in its thread"

    assert task.state is TaskState.DEAD
    assert task.error == "timed out after 0.3s"
    assert task.started_ms is not None and task.finished_ms is not None
    assert task.finished_ms - task.started_ms < 3000


# -- cancellation -------------------------------------------------------------------------------


async def test_cancelling_a_running_task_stops_it_within_a_second_without_a_retry(
    redis_url: str, broker: Broker
) -> None:
    async with running_daemon(daemon_config(redis_url, worker__id="w-cancel")):
        task_id = await submit(broker, "sleep", {"seconds": 30}, max_retries=3)
        running = await wait_for_state(broker, task_id, TaskState.ACTIVE)
        assert running.worker_id == "w-cancel"

        assert await broker.cancel(task_id) == "requested"
        task = await wait_for_state(broker, task_id, within=1.5)

        assert task.state is TaskState.CANCELLED
        assert task.attempt == 1
        assert task.error == "cancelled at request"
        totals = (await broker.stats()).totals
        assert totals.get("retried", 0) == 0
        assert totals.get("failed", 0) == 0
        await assert_invariants(broker)


# -- leases -------------------------------------------------------------------------------------


async def test_task_running_longer_than_worker_timeout_is_not_handed_to_another_worker(
    redis_url: str, broker: Broker
) -> None:
    def config(worker_id: str) -> Config:
        return daemon_config(
            redis_url,
            worker__id=worker_id,
            worker__heartbeat_interval="0.1s",
            # Ten beats: a loaded machine (the whole suite on two cores) can delay a few.
            worker__worker_timeout="1s",
        )

    async with running_daemon(config("first")):
        task_id = await submit(broker, "sleep", {"seconds": 2.5}, max_retries=3)
        running = await wait_for_state(broker, task_id, TaskState.ACTIVE)
        assert running.worker_id == "first"

        async with running_daemon(config("second")):
            task = await wait_for_state(broker, task_id, within=10)

    assert task.state is TaskState.SUCCEEDED
    assert task.worker_id == "first"
    assert task.attempt == 1
    assert (await broker.stats()).totals.get("reaped", 0) == 0
    await assert_invariants(broker)
