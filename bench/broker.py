"""Broker throughput: enqueue N tasks in batches, then claim-and-complete them in batches.

    ./dev python bench/broker.py [--tasks 20000] [--batch 100] [--lanes 1 2] [--groups N]
                                 [--redis-url URL]

``--groups N`` spreads the tasks over N fair-share groups (task i in group i mod N), so the
claims take turns across them; without it no task has a group and claims run as if groups
did not exist.

Without ``--redis-url`` it starts a private redis-server (the same helper as ``taskqueue run``)
so the figures do not depend on what else uses the machine's Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import trio

from taskqueue.broker import Broker, Report, Submission
from taskqueue.embedded import EmbeddedRedis
from taskqueue.outcomes import OutcomeKind
from taskqueue.redis import Redis


async def run(url: str, tasks: int, batch: int, lanes: int, groups: int) -> None:
    """Each phase runs ``lanes`` batches at once on their own connections, so Python builds
    one batch while Redis runs another (lanes=1: strictly one round trip after the other)."""
    redis = Redis.from_url(url)
    await redis.execute("FLUSHDB")
    broker = Broker(redis)
    submissions = [
        Submission(type="noop", payload={"n": i}, group=f"g{i % groups}" if groups else None)
        for i in range(tasks)
    ]
    batches = [submissions[i : i + batch] for i in range(0, tasks, batch)]

    async def enqueue_lane(lane: int) -> None:
        for chunk in batches[lane::lanes]:
            await broker.enqueue_many(chunk)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for lane in range(lanes):
            nursery.start_soon(enqueue_lane, lane)
    enqueue_s = time.perf_counter() - start

    async def process_lane() -> None:
        while True:
            claimed = await broker.claim("bench-worker", ["noop"], batch)
            if not claimed:
                return
            await broker.report(
                [
                    Report(task_id=t.id, attempt=t.attempt, kind=OutcomeKind.SUCCEEDED)
                    for t in claimed
                ]
            )

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(lanes):
            nursery.start_soon(process_lane)
    process_s = time.perf_counter() - start

    stats = await broker.stats()
    assert stats.totals.get("succeeded") == tasks, stats.totals
    where = f"{tasks} tasks, batches of {batch}, {lanes} lane{'s' if lanes > 1 else ''}"
    if groups:
        where += f", {groups:,} groups"
    print(f"enqueue            {tasks / enqueue_s:>9,.0f} tasks/s  ({where})")
    print(f"claim + complete   {tasks / process_s:>9,.0f} tasks/s  ({where})")
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lanes", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--groups", type=int, default=0, help="fair-share groups (0: none)")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        for lanes in args.lanes:
            trio.run(run, url, args.tasks, args.batch, lanes, args.groups)


if __name__ == "__main__":
    main()
