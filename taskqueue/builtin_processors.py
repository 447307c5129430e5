"""Built-in task types for tests, benchmarks and smoke checks: noop, sleep, echo, fail, clock.

They are registered through the same entry point mechanism as any other plugin (the
``builtin`` entry of the ``taskqueue`` group), so they also prove the plugin path works.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl


async def noop(ctx: TaskContext) -> None:
    """Does nothing; measures the queue's own overhead."""


async def sleep(ctx: TaskContext) -> dict[str, float]:
    """Sleeps ``payload.seconds`` (default 1); ignores nothing but cancellation."""
    seconds = float((ctx.payload or {}).get("seconds", 1.0))
    await trio.sleep(seconds)
    return {"slept": seconds}


async def echo(ctx: TaskContext) -> Any:
    """Returns its payload unchanged."""
    return ctx.payload


async def fail(ctx: TaskContext) -> None:
    """Raises with ``payload.message``; fails until attempt ``payload.succeed_on_attempt``."""
    payload = ctx.payload or {}
    succeed_on = payload.get("succeed_on_attempt")
    if succeed_on is not None and ctx.attempt >= int(succeed_on):
        return None
    raise RuntimeError(payload.get("message", "task failed on purpose"))


async def clock(ctx: TaskContext) -> dict[str, float]:
    """Returns the worker's wall-clock time when the task started (for latency benchmarks)."""
    return {"started": time.time()}


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("noop", noop)
    registry.add("sleep", sleep)
    registry.add("echo", echo)
    registry.add("fail", fail)
    registry.add("clock", clock)
