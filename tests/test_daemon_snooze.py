"""A processor that snoozes its task, in a real daemon: raised or returned, from async and
from sync processors, the task runs again later on the same attempt and the snoozes count.

The daemons run in this trio run against the session's Redis; this module is also a plugin
(see :func:`taskqueue_register_processors`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from daemon_helpers import daemon_config, running_daemon, submit, wait_for_state
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.models import Policy, TaskState
from taskqueue.plugin import ProcessorRegistry, Snooze, TaskContext, hookimpl
from taskqueue.processors import LoadedPlugins, load_plugins
from taskqueue.redis import Redis

#: (which processor, attempt) of each run, in order.
runs: list[tuple[str, int]] = []


async def snooze_three_times(ctx: TaskContext) -> str:
    """Raises Snooze twice, returns one once, then succeeds."""
    runs.append(("async", ctx.attempt))
    snoozed = sum(1 for kind, _ in runs if kind == "async") - 1
    if snoozed < 2:
        raise Snooze(0.05)
    if snoozed == 2:
        return Snooze(0.05)  # type: ignore[return-value]  # returning one works too
    return "awake"


def sync_snoozer(ctx: TaskContext) -> str:
    runs.append(("sync", ctx.attempt))
    if sum(1 for kind, _ in runs if kind == "sync") == 1:
        raise Snooze(0)
    return "awake too"


async def snooze_forever(ctx: TaskContext) -> None:
    runs.append(("forever", ctx.attempt))
    raise Snooze(0)


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.snooze", snooze_three_times)
    registry.add("test.sync_snooze", sync_snoozer)
    registry.add("test.snooze_forever", snooze_forever)


@pytest.fixture
def plugins() -> Iterator[LoadedPlugins]:
    runs.clear()
    yield load_plugins(extra=(sys.modules[__name__],))


@pytest.fixture
def broker(redis: Redis) -> Broker:
    return Broker(redis)


async def test_three_snoozes_then_a_success_end_with_one_attempt_and_three_snoozes(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    async with running_daemon(daemon_config(redis_url), plugins):
        task_id = await submit(broker, "test.snooze", max_retries=0)
        sync_id = await submit(broker, "test.sync_snooze", max_retries=0)
        task = await wait_for_state(broker, task_id)
        sync_task = await wait_for_state(broker, sync_id)

    assert (task.state, task.result, task.attempt, task.snoozes) == (
        TaskState.SUCCEEDED, "awake", 1, 3,
    )  # fmt: skip
    assert [attempt for kind, attempt in runs if kind == "async"] == [1, 1, 1, 1]
    assert (sync_task.state, sync_task.attempt, sync_task.snoozes) == (TaskState.SUCCEEDED, 1, 1)
    totals = (await broker.stats()).totals
    assert totals.get("failed", 0) == 0
    await assert_invariants(broker)


async def test_a_task_that_snoozes_past_its_max_snoozes_is_dead_lettered(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    await broker.set_policy(Policy(max_snoozes=4), "test.snooze_forever")
    async with running_daemon(daemon_config(redis_url), plugins):
        task_id = await submit(broker, "test.snooze_forever", max_retries=3)
        task = await wait_for_state(broker, task_id)

    assert (task.state, task.snoozes, task.attempt) == (TaskState.DEAD, 4, 1)
    assert task.error == "snoozed more often than its max_snoozes (4) allows"
    assert len(runs) == 5  # four snoozes, and the one refused
    await assert_invariants(broker)
