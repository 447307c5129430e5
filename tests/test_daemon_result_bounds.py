"""What a processor leaves on its task is bounded when the worker writes it: a result or a
progress report over ``task.max_result_bytes`` (ResultTooLargeError: the task is dead-lettered
at once, or the processor may catch it), an error message to its start, a traceback to its end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from daemon_helpers import daemon_config, running_daemon, submit, wait_for_state

from taskqueue.broker import Broker
from taskqueue.errors import ResultTooLargeError
from taskqueue.models import TaskState
from taskqueue.outcomes import (
    MAX_ERROR_CHARS,
    MAX_TRACEBACK_CHARS,
    clipped_error,
    clipped_traceback,
)
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.processors import LoadedPlugins, load_plugins
from taskqueue.redis import Redis

LIMIT = 1000


async def returns(ctx: TaskContext) -> str:
    """Returns a text of ``payload`` characters."""
    count: int = ctx.payload
    return "é" * count


async def reports(ctx: TaskContext) -> dict[str, str]:
    """Reports progress of ``payload`` characters, then what each report did."""
    outcomes = {}
    for label, value in (("big", "x" * ctx.payload), ("not json", {1, 2}), ("small", "ok")):
        try:
            await ctx.report_progress(value)
            outcomes[label] = "recorded"
        except (ResultTooLargeError, TypeError) as exc:
            outcomes[label] = f"{type(exc).__name__}: {exc}"
    return outcomes


def deep(n: int) -> None:
    if n:
        deep(n - 1)
    raise RuntimeError("e" * 100_000)


async def raises(ctx: TaskContext) -> None:
    """Raises an exception of a 100,000-character message from 500 frames deep."""
    deep(500)


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.returns", returns, max_retries=3)
    registry.add("test.reports", reports)
    registry.add("test.raises", raises, max_retries=0)


@pytest.fixture
def plugins() -> Iterator[LoadedPlugins]:
    yield load_plugins(extra=(sys.modules[__name__],))


@pytest.fixture
def broker(redis: Redis) -> Broker:
    return Broker(redis)


async def test_a_result_over_the_limit_dead_letters_the_task_at_once(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    config = daemon_config(redis_url, task__max_result_bytes=LIMIT)
    async with running_daemon(config, plugins):
        # 2 bytes a character: 499 fit (1000 bytes with the quotes), 500 do not.
        fits = await wait_for_state(broker, await submit(broker, "test.returns", 499))
        over = await wait_for_state(broker, await submit(broker, "test.returns", 500))

    assert (fits.state, fits.result) == (TaskState.SUCCEEDED, "é" * 499)
    assert (over.state, over.attempt, over.result) == (TaskState.DEAD, 1, None)
    assert over.error == (
        "ResultTooLargeError: the result is 1002 bytes of JSON, over task.max_result_bytes (1000)"
    )


async def test_a_progress_report_over_the_limit_or_not_json_fails_the_call_not_the_task(
    redis_url: str, broker: Broker, plugins: LoadedPlugins
) -> None:
    config = daemon_config(redis_url, task__max_result_bytes=LIMIT)
    async with running_daemon(config, plugins):
        task = await wait_for_state(broker, await submit(broker, "test.reports", LIMIT))

    assert task.state is TaskState.SUCCEEDED
    assert task.result == {
        "big": "ResultTooLargeError: the progress report is 1002 bytes of JSON, over "
        "task.max_result_bytes (1000)",
        "not json": "TypeError: the progress report is not JSON-serialisable: Type is not "
        "JSON serializable: set",
        "small": "recorded",
    }


async def test_an_error_keeps_its_start_and_a_traceback_its_end(
    redis_url: str, broker: Broker, plugins: LoadedPlugins, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_daemon(daemon_config(redis_url), plugins):
        task = await wait_for_state(broker, await submit(broker, "test.raises"))

    assert task.state is TaskState.DEAD
    assert task.error is not None and task.traceback is not None
    assert len(task.error) <= MAX_ERROR_CHARS
    assert task.error.startswith("RuntimeError: eeee")
    assert task.error.endswith(" more characters]")
    assert len(task.traceback) <= MAX_TRACEBACK_CHARS
    assert task.traceback.startswith("[... ")
    assert task.traceback.rstrip().endswith("e" * 100)  # the exception's line, at the end
    (logged,) = [r.getMessage() for r in caplog.records if task.id in r.getMessage()][:1]
    assert task.error in logged and len(logged) < MAX_ERROR_CHARS + 200  # clipped there too


def test_clipping_says_how_much_it_left_out() -> None:
    short = "a" * MAX_ERROR_CHARS
    assert clipped_error(short) == short and clipped_traceback(short) == short

    error = "a" * 10_000 + "b" * 10_000
    clipped = clipped_error(error)
    kept = clipped.split(" [... ")[0]
    assert len(clipped) <= MAX_ERROR_CHARS and error.startswith(kept)
    assert clipped.endswith(f" [... {len(error) - len(kept)} more characters]")

    traceback = "".join(f"line {n}\n" for n in range(20_000))
    clipped = clipped_traceback(traceback)
    note, tail = clipped.split("\n", 1)
    assert len(clipped) <= MAX_TRACEBACK_CHARS and traceback.endswith(tail)
    assert note == f"[... {len(traceback) - len(tail)} characters before this]"
