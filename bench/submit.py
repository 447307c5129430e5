"""One-at-a-time awaited submits: each ``submit`` waits for its reply before the next starts.

    ./dev python bench/submit.py [--tasks 20000] [--redis-url URL] [--profile FILE]

The trio :class:`taskqueue.Client` and the blocking :class:`taskqueue.SyncClient`, each on a
private redis-server (as bench/broker.py), printing the rate and this process's CPU time per
submit (``time.process_time``), which the machine's other load disturbs less than the rate.

The ceilings beside them: the very EVALSHA of enqueue.lua that a submit sends (fresh task ids,
packed in advance, so no client work is left) sent one at a time over a bare socket, from trio
(``wait_readable`` and hiredis, the plainest trio client) and from a blocking socket (no event
loop at all); and PING the same two ways, the round trip alone. A submit cannot beat the
EVALSHA ceiling: what lies between the two is the client's own work per call.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import time

import trio
from bare_redis import blocking_replay, trio_replay

from taskqueue import Client, SyncClient
from taskqueue.broker import operations
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import Submission
from taskqueue.redis.connection import pack_commands

WARM_UP = 500


def report(name: str, tasks: int, seconds: float, cpu: float) -> None:
    print(
        f"{name:<12} {tasks / seconds:>9,.0f} submits/s  {cpu / tasks * 1e6:5.1f} us CPU/submit  "
        f"({tasks} submits one at a time, each awaited)"
    )


async def trio_submits(url: str, tasks: int, profile: str | None) -> None:
    async with Client(url) as client:
        await client.broker.redis.execute("FLUSHDB")
        for i in range(WARM_UP):
            await client.submit("noop", {"n": i})
        profiler = cProfile.Profile()
        if profile is not None:
            profiler.enable()
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(tasks):
            await client.submit("noop", {"n": i})
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)
    report("Client", tasks, seconds, cpu)


async def enqueue_commands(url: str, tasks: int) -> list[bytes]:
    """``tasks`` packed EVALSHAs of enqueue.lua, as ``Client.submit("noop", {"n": i})`` sends
    them (the script is loaded on the server by the submits before)."""
    async with Client(url) as client:
        broker = client.broker
        await client.submit("noop", {"n": -1})  # loads the script
        commands = []
        for i in range(tasks):
            submission = Submission(type="noop", payload={"n": i})
            step = next(
                operations.enqueue_many(broker.settings, broker.keys, [submission], broker.clock())
            )
            assert isinstance(step, operations.RunScript)
            commands.append(pack_commands([operations.evalsha(step)]))
    return commands


def rate(done: tuple[int, float]) -> str:
    return f"{done[0] / done[1]:,.0f}/s"


def ceilings(url: str, tasks: int) -> None:
    enqueues = trio.run(enqueue_commands, url, 2 * tasks)
    pings = [pack_commands([("PING",)])] * tasks
    print(
        f"  ceilings   EVALSHA enqueue.lua {rate(trio.run(trio_replay, url, enqueues[:tasks]))} "
        f"(trio + hiredis), {rate(blocking_replay(url, enqueues[tasks:]))} (blocking socket);  "
        f"PING {rate(trio.run(trio_replay, url, pings))} (trio + hiredis), "
        f"{rate(blocking_replay(url, pings))} (blocking socket); one at a time, nothing else"
    )


def sync_submits(url: str, tasks: int) -> None:
    with SyncClient(url) as client:
        for i in range(WARM_UP):
            client.submit("noop", {"n": i})
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(tasks):
            client.submit("noop", {"n": i})
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    report("SyncClient", tasks, seconds, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--redis-url")
    parser.add_argument("--profile", help="save a cProfile of the trio client's submits here")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(trio_submits, url, args.tasks, args.profile)
        sync_submits(url, args.tasks)
        ceilings(url, args.tasks)


if __name__ == "__main__":
    main()
