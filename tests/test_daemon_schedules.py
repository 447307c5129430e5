"""Schedules run by daemons: the config file's [[schedules]] reach Redis, and three real worker
processes firing a one-second schedule for ten seconds submit one task per tick."""

from __future__ import annotations

import itertools
from pathlib import Path

import trio
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    daemon_config,
    running_daemon,
    wait_for_worker,
    wait_until,
    worker_env,
    write_toml,
)

from taskqueue.broker import Broker
from taskqueue.daemon.schedule_runner import tick_key
from taskqueue.models import TaskState
from taskqueue.redis import Redis

SCHEDULE = """
[[schedules]]
name = "tick"
type = "echo"
every = "1s"
payload = {hello = "world"}
"""


async def all_tasks(broker: Broker) -> list[str]:
    """The idempotency keys of every task, whatever its state."""
    keys: list[str] = []
    for state in TaskState:
        page = await broker.list_tasks(state, limit=1000)
        keys += [t.idempotency_key or "" for t in page.items]
    return keys


async def test_a_configured_schedule_reaches_redis_and_fires(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    config = daemon_config(redis_url, write_toml(tmp_path / "taskqueue.toml", SCHEDULE))
    broker = Broker(redis)
    async with running_daemon(config) as daemon:
        assert daemon.schedule_runner is not None

        async def fired() -> bool:
            return (await broker.schedule("tick")).fired >= 1

        await wait_until(fired, "the schedule fires", 5)
        found = await broker.schedule("tick")
        task = await broker.get(found.last_task_id or "")
        assert task.payload == {"hello": "world"}
        assert task.idempotency_key == tick_key("tick", found.last_tick_ms or 0)


async def test_three_daemons_fire_a_one_second_schedule_once_per_tick(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    config = write_toml(tmp_path / "taskqueue.toml", SCHEDULE)
    broker = Broker(redis)
    async with (
        WorkerProcess(
            tmp_path,
            worker_env(redis_url, TASKQUEUE_CONFIG=str(config), TASKQUEUE_WORKER__ID="w1"),
            name="w1",
        ),
        WorkerProcess(
            tmp_path,
            worker_env(redis_url, TASKQUEUE_CONFIG=str(config), TASKQUEUE_WORKER__ID="w2"),
            name="w2",
        ),
        WorkerProcess(
            tmp_path,
            worker_env(redis_url, TASKQUEUE_CONFIG=str(config), TASKQUEUE_WORKER__ID="w3"),
            name="w3",
        ),
    ):
        for worker_id in ("w1", "w2", "w3"):
            await wait_for_worker(broker, worker_id, STARTUP)
        before = (await broker.schedule("tick")).fired
        await trio.sleep(10)  # what is measured: ten seconds of ticks
        fired = (await broker.schedule("tick")).fired - before

    assert 9 <= fired <= 11, fired
    keys = [k for k in await all_tasks(broker) if k.startswith("schedule:tick:")]
    assert len(keys) == len(set(keys)), "a tick fired twice"
    ticks = sorted(int(k.rsplit(":", 1)[1]) for k in keys)
    assert all(b - a == 1000 for a, b in itertools.pairwise(ticks)), ticks
