"""Redis memory under a steady stream of tasks: it levels off at rate x retention.

    ./dev python bench/memory.py [--tasks 1000000] [--rate 5000] [--retention 60] [--redis-url URL]

One ``taskqueue worker`` (its own process, ``retention.succeeded`` set to ``--retention``
seconds, and the trimmer of that daemon) runs ``--tasks`` no-op tasks submitted at ``--rate``
per second. Every 10 s this prints Redis's ``used_memory`` and how many succeeded records it
holds; at the end, the memory per kept record and the steady state. Memory stops growing
once the oldest records reach their retention: what the trimmer deletes then matches what
the worker finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import trio

from taskqueue.broker import Broker, Submission
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import TaskState
from taskqueue.redis import Redis

BATCH = 500


def start_worker(url: str, retention: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TASKQUEUE_REDIS__URL": url,
        "TASKQUEUE_LOGGING__LEVEL": "warning",
        "TASKQUEUE_RETENTION__SUCCEEDED": f"{retention}s",
    }
    return subprocess.Popen([sys.executable, "-m", "taskqueue", "worker"], env=env)


async def used_memory(redis: Redis) -> int:
    info: str = await redis.execute("INFO", "memory")
    for line in info.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("INFO memory has no used_memory")


async def submit_at_rate(broker: Broker, tasks: int, rate: float) -> None:
    began = trio.current_time()
    for sent in range(0, tasks, BATCH):
        await trio.sleep_until(began + sent / rate)
        await broker.enqueue_many(
            [Submission(type="noop") for _ in range(min(BATCH, tasks - sent))]
        )


async def measure(url: str, tasks: int, rate: float, retention: float) -> None:
    redis = Redis.from_url(url)
    broker = Broker(redis)
    baseline = await used_memory(redis)
    worker = start_worker(url, retention)
    samples: list[tuple[float, int, int]] = []
    began = time.monotonic()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_at_rate, broker, tasks, rate)
            while True:
                await trio.sleep(10)
                stats = await broker.stats()
                kept = stats.by_state[TaskState.SUCCEEDED]
                memory = await used_memory(redis)
                samples.append((time.monotonic() - began, kept, memory))
                print(
                    f"  {samples[-1][0]:5.0f} s  {stats.totals.get('succeeded', 0):>9,} done  "
                    f"{kept:>9,} kept  {memory / 2**20:7.1f} MiB",
                    flush=True,
                )
                if stats.totals.get("succeeded", 0) >= tasks:
                    break
    finally:
        worker.terminate()
        worker.wait()
        await redis.aclose()
    steady = [s for s in samples if s[0] > retention + 10]
    per_record = max((m - baseline) / k for _, k, m in steady) if steady else float("nan")
    low = min((m for _, _, m in steady), default=0) / 2**20
    high = max((m for _, _, m in steady), default=0) / 2**20
    print(
        f"memory      {per_record:,.0f} bytes per kept record; steady state {low:.0f}-{high:.0f} "
        f"MiB while {tasks:,} no-op tasks ran at {rate:,.0f}/s with a {retention:.0f} s "
        f"retention (~{rate * retention:,.0f} records kept)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--retention", type=float, default=60.0)
    parser.add_argument("--redis-url", help="default: an embedded redis-server")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(measure, url, args.tasks, args.rate, args.retention)


if __name__ == "__main__":
    main()
