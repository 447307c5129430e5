"""A worker cut off from Redis starts nothing more once two heartbeats went unanswered: a body
started then would most likely finish unreported and run again on the worker that takes the
task over. Once Redis answers again, the held tasks start.

The daemon runs in this trio run behind the fault tests' proxy; this module is also a plugin
adding ``test.stamped``, which records when (trio time) each of its bodies started.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import trio
from daemon_helpers import daemon_config, running_daemon, submit_many, wait_for_count, wait_until
from fault_proxy import FaultProxy

from taskqueue.broker import Broker
from taskqueue.models import TaskState
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.processors import load_plugins
from taskqueue.redis import Redis

#: trio time at which each test.stamped body started.
STARTS: list[float] = []
HEARTBEAT = 0.1
TASKS = 40


async def stamped(ctx: TaskContext) -> None:
    STARTS.append(trio.current_time())
    await trio.sleep(0.03)


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.stamped", stamped)


async def test_a_worker_cut_off_from_redis_holds_its_prefetched_tasks_until_it_answers(
    redis: Redis, redis_url: str
) -> None:
    STARTS.clear()
    broker = Broker(redis)
    port = urlsplit(redis_url).port
    assert port is not None
    async with trio.open_nursery() as nursery:
        proxy: FaultProxy = await nursery.start(FaultProxy(port).serve)
        config = daemon_config(
            proxy.url,
            worker__concurrency=1,
            worker__prefetch=TASKS,
            worker__heartbeat_interval=f"{HEARTBEAT}s",
            worker__worker_timeout="3s",  # a long lease: the hold, not its end, stops starts
        )
        plugins = load_plugins(extra=(sys.modules[__name__],))
        await submit_many(broker, "test.stamped", [None] * TASKS)
        async with running_daemon(config, plugins):

            async def started() -> bool:
                return len(STARTS) >= 2

            await wait_until(started, "the worker runs its tasks")
            cut_at = trio.current_time()
            proxy.partition()
            await trio.sleep(1.0)  # well past two heartbeats, well inside the lease
            during = [t for t in STARTS if t > cut_at]
            proxy.heal()
            await wait_for_count(broker, TaskState.SUCCEEDED, TASKS, within=10)
        nursery.cancel_scope.cancel()

    # No reply was delivered after the cut, so the last word was sent before it: nothing
    # started later than two heartbeats after it, though the leases held for 3 s.
    assert all(t <= cut_at + 2 * HEARTBEAT for t in during), (cut_at, during)
    assert len(STARTS) == TASKS, "the held tasks did not start after the heal"
