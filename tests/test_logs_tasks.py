"""Log lines written while a task runs, from a real daemon, as JSON lines.

Whatever a processor logs — through ``ctx.logger``, through any library's logger, from a child
task of its own, or from a plain ``def`` processor in its worker thread — carries the task's id,
type, attempt and the worker's id; lines logged outside a task carry none of them. A task's
payload and result never appear in the log.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from daemon_helpers import daemon_config, running_daemon, submit, wait_for_state
from log_helpers import captured_json_logs, json_records

from taskqueue.broker import Broker
from taskqueue.models import TaskState
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.processors import load_plugins
from taskqueue.redis import Redis

TASK_FIELDS = ("task_id", "task_type", "attempt", "worker_id")


async def chatty(ctx: TaskContext) -> dict[str, str]:
    ctx.logger.info("step one of %s", ctx.type)
    logging.getLogger("some.library").warning("a library speaks")

    async def helper() -> None:
        logging.getLogger("some.library").info("a child task speaks")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(helper)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"secret": "result-s3cr3t"}


def blocking(ctx: TaskContext) -> None:
    ctx.logger.info("inside a worker thread")


def _register(registry: ProcessorRegistry) -> None:
    registry.add("chatty", chatty)
    registry.add("blocking", blocking)


CHATTY = SimpleNamespace(__name__="chatty", taskqueue_register_processors=hookimpl(_register))


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The process's logging as JSON lines on a stream (DEBUG and up), for the test."""
    with captured_json_logs("debug") as stream:
        yield stream


async def test_lines_logged_while_a_task_runs_carry_its_fields(
    redis_url: str, redis: Redis, log_lines: io.StringIO
) -> None:
    broker = Broker(redis)
    config = daemon_config(redis_url, worker__id="logging-worker")
    async with running_daemon(config, load_plugins(extra=(CHATTY,))):
        chatty_id = await submit(
            broker, "chatty", {"card": "payload-s3cr3t"}, max_retries=1, priority="high"
        )
        blocking_id = await submit(broker, "blocking")
        assert (await wait_for_state(broker, chatty_id)).state is TaskState.SUCCEEDED
        assert (await wait_for_state(broker, blocking_id)).state is TaskState.SUCCEEDED

    lines = json_records(log_lines)
    by_message: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_message.setdefault(line["message"], []).append(line)

    def fields(line: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(line.get(name) for name in TASK_FIELDS)

    # Two attempts of the chatty task, each line with its own attempt number.
    for message in ("step one of chatty", "a library speaks", "a child task speaks"):
        assert [fields(line) for line in by_message[message]] == [
            (chatty_id, "chatty", 1, "logging-worker"),
            (chatty_id, "chatty", 2, "logging-worker"),
        ], message
    (failure,) = [line for line in lines if "failed: RuntimeError" in line["message"]]
    assert fields(failure) == (chatty_id, "chatty", 1, "logging-worker")
    assert failure["level"] == "warning"
    assert by_message["step one of chatty"][0]["logger"] == "taskqueue.task"
    assert by_message["a library speaks"][0]["logger"] == "some.library"
    (threaded,) = by_message["inside a worker thread"]
    assert fields(threaded) == (blocking_id, "blocking", 1, "logging-worker")

    # Outside a task: no task fields, and never the payload or the result.
    started = [line for line in lines if line["message"].startswith("taskqueue worker started")]
    assert started and all(name not in started[0] for name in TASK_FIELDS)
    assert "payload-s3cr3t" not in log_lines.getvalue()
    assert "result-s3cr3t" not in log_lines.getvalue()
