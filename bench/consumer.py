"""The consumer's own cost per task: claim loop, slots and report batching, without Redis.

    ./dev python bench/consumer.py [--tasks 200000] [--concurrency 50] [--prefetch 50]

A :class:`~taskqueue.daemon.consumer.Consumer` runs ``noop`` tasks from a stand-in broker that
answers every claim and report at once (a checkpoint, no I/O), so the figure is the Python
work per task around the processor's call: what the consumer adds to the end-to-end cost.
CPU time is the steadier figure on a shared machine; tasks/s is wall-clock.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any, cast

import trio

from taskqueue.broker import Broker, Report
from taskqueue.daemon.consumer import Consumer
from taskqueue.health import Health
from taskqueue.models import ClaimedTask, Priority, TaskState
from taskqueue.processors import load_plugins


class InstantBroker:
    """Hands out ``tasks`` pre-built claims and accepts every report at once."""

    def __init__(self, tasks: int) -> None:
        now = int(time.time() * 1000)
        self.tasks = [
            ClaimedTask(
                id=f"t{i}",
                type="noop",
                priority=Priority.MEDIUM,
                payload=None,
                attempt=1,
                max_retries=3,
                timeout_ms=300_000,
                ready_ms=now,
                started_ms=now,
            )
            for i in range(tasks)
        ]
        self.claimed = 0
        self.reported = 0
        self.all_reported = trio.Event()

    async def claim(
        self, worker_id: str, task_types: Sequence[str], count: int
    ) -> list[ClaimedTask]:
        await trio.lowlevel.checkpoint()
        batch = self.tasks[self.claimed : self.claimed + count]
        self.claimed += len(batch)
        return batch

    async def report(self, reports: Sequence[Report]) -> list[TaskState | None]:
        await trio.lowlevel.checkpoint()
        self.reported += len(reports)
        if self.reported >= len(self.tasks):
            self.all_reported.set()
        return [TaskState.SUCCEEDED] * len(reports)

    async def set_progress_many(self, updates: Sequence[tuple[str, int, Any]]) -> list[bool]:
        return [True] * len(updates)


async def run(tasks: int, concurrency: int, prefetch: int) -> None:
    broker = InstantBroker(tasks)
    consumer = Consumer(
        cast(Broker, broker),
        load_plugins().registry,
        worker_id="bench",
        health=Health(),
        task_types=["noop"],
        concurrency=concurrency,
        prefetch=prefetch,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer.run)
        cpu, wall = time.process_time(), time.perf_counter()
        await broker.all_reported.wait()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        consumer.stop()
    print(
        f"consumer   {cpu / tasks * 1e6:6.2f} us CPU per task  ({tasks / wall:,.0f} tasks/s; "
        f"{tasks} noop tasks, concurrency {concurrency}, prefetch {prefetch}, no Redis)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=50)
    args = parser.parse_args()
    trio.run(run, args.tasks, args.concurrency, args.prefetch)


if __name__ == "__main__":
    main()
