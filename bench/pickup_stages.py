"""Where an idle pickup's time goes: the stages between a submit and the task's start.

    ./dev python bench/pickup_stages.py [--tasks 500] [--redis-url URL]

bench/e2e.py's latency line is one figure, submit to start. This runs the same shape (tasks
submitted one at a time at about 100/s to an idle worker, which takes them by hand-off) and
splits it by the wall clock (one machine, one clock):

- ``submit call``: the submitter's ``enqueue``, from its call to its return (Python, the
  round trip, enqueue.lua with its hand-off);
- ``to the worker``: from the submit's call to the hand-off message reaching the worker's
  consumer (:meth:`Consumer.receive_hand_off`);
- ``to a slot``: from there to a slot calling the task runner (parsing the message, the
  lease's bookkeeping, trio handing the task to a slot);
- ``to the start``: from there to the processor's first line.

The worker is a ``taskqueue worker`` process whose ``--processors`` module is this file: on
import it wraps the two methods above to note the time, and its ``stage_clock`` task returns
those times with its own start.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import trio
from e2e import start_worker, wait_for

from taskqueue.broker import Broker
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import Submission, TaskState
from taskqueue.plugin import hookimpl
from taskqueue.processors import ProcessorRegistry, TaskContext
from taskqueue.redis import Redis

TASK = "bench.stage_clock"

#: In the worker: task id -> when its hand-off reached the consumer / a slot's runner.
received_at: dict[str, float] = {}
slot_at: dict[str, float] = {}


def _note_stages() -> None:
    """Wrap the consumer's hand-off receipt and the runner's entry to note their times."""
    from taskqueue.broker.codec import hand_off_from_message
    from taskqueue.daemon.consumer.service import Consumer
    from taskqueue.daemon.consumer.slot import Running, TaskRunner
    from taskqueue.outcomes import Outcome

    receive: Callable[[Consumer, str], None] = Consumer.receive_hand_off
    run = TaskRunner.run

    def receive_hand_off(self: Consumer, message: str) -> None:
        received_at[hand_off_from_message(message, 0).task.id] = time.time()
        receive(self, message)

    async def run_noted(self: TaskRunner, running: Running) -> Outcome:
        slot_at[running.task.id] = time.time()
        return await run(self, running)

    Consumer.receive_hand_off = receive_hand_off  # type: ignore[method-assign]
    TaskRunner.run = run_noted  # type: ignore[method-assign]


async def stage_clock(ctx: TaskContext) -> dict[str, float]:
    return {
        "started": time.time(),
        "received": received_at.pop(ctx.id, 0.0),
        "slot": slot_at.pop(ctx.id, 0.0),
    }


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    _note_stages()
    registry.add(TASK, stage_clock)


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.3f} ms, p99 {p99:.3f} ms"


async def run(url: str, count: int) -> None:
    redis = Redis.from_url(url)
    broker = Broker(redis)
    worker = start_worker(url, "--processors", "pickup_stages")
    try:
        await broker.enqueue(Submission(type=TASK))
        await wait_for(broker, TaskState.SUCCEEDED, 1)
        await trio.sleep(0.5)  # idle: registered for a hand-off
        submitted: dict[str, tuple[float, float]] = {}
        for _ in range(count):
            at = time.time()
            task_id = (await broker.enqueue(Submission(type=TASK))).id
            submitted[task_id] = (at, time.time())
            await trio.sleep(0.01)
        stages: dict[str, list[float]] = {
            "submit call": [],
            "to the worker": [],
            "to a slot": [],
            "to the start": [],
            "submit to start": [],
        }
        await wait_for(broker, TaskState.SUCCEEDED, 1 + count)
        records = [t for t in await broker.get_many(list(submitted)) if t is not None]
        claimed = 0
        for record in records:
            at, returned = submitted[record.id]
            times: dict[str, Any] = record.result
            if not times["received"]:
                claimed += 1  # taken by a claim (the worker was not registered yet)
                continue
            stages["submit call"].append((returned - at) * 1000)
            stages["to the worker"].append((times["received"] - at) * 1000)
            stages["to a slot"].append((times["slot"] - times["received"]) * 1000)
            stages["to the start"].append((times["started"] - times["slot"]) * 1000)
            stages["submit to start"].append((times["started"] - at) * 1000)
        print(f"{count} tasks at ~100/s to an idle worker, {count - claimed} of them handed off")
        for name, values in stages.items():
            print(f"{name:<18}{percentiles(values)}")
    finally:
        worker.terminate()
        worker.wait(30)
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    if args.redis_url:
        trio.run(run, args.redis_url, args.tasks)
    else:
        with EmbeddedRedis(persistent=False) as embedded:
            trio.run(run, embedded.url, args.tasks)


if __name__ == "__main__":
    main()
