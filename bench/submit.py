"""One-at-a-time awaited submits: each ``submit`` waits for its reply before the next starts.

    ./dev python bench/submit.py [--tasks 20000] [--redis-url URL] [--profile FILE]

The trio :class:`taskqueue.Client` and the blocking :class:`taskqueue.SyncClient`, each on a
private redis-server (as bench/broker.py), printing the rate and this process's CPU time per
submit (``time.process_time``), which the machine's other load disturbs less than the rate.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import time

import trio

from taskqueue import Client, SyncClient
from taskqueue.embedded import EmbeddedRedis

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


if __name__ == "__main__":
    main()
