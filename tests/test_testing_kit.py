"""taskqueue.testing runs a processor as a worker would, with no Redis and no daemon."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from taskqueue.errors import PermanentError
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.testing import plugin_registry, run_processor

log = logging.getLogger("my_plugin")


async def resize(ctx: TaskContext) -> dict[str, Any]:
    ctx.logger.info("resizing %s", ctx.payload["path"])
    log.debug("attempt %d of %d", ctx.attempt, ctx.max_retries + 1)
    await ctx.report_progress({"done": 0.5})
    await ctx.report_progress({"done": 1.0})
    return {"path": ctx.payload["path"], "worker": ctx.worker_id, "last": ctx.is_last_attempt}


async def test_it_returns_the_value_the_progress_and_the_log_records() -> None:
    run = await run_processor(resize, "image.resize", {"path": "a.png"}, attempt=4)

    assert run.value == {"path": "a.png", "worker": "test-worker", "last": True}
    assert run.progress == [{"done": 0.5}, {"done": 1.0}]
    assert run.messages == ["resizing a.png", "attempt 4 of 4"]
    assert {(r.task_type, r.attempt) for r in run.logs} == {("image.resize", 4)}  # type: ignore[attr-defined]
    assert run.context.id == "test-task"


def _register(registry: ProcessorRegistry) -> None:
    factor = registry.settings.get("factor", 1)
    registry.add("image.scale", lambda ctx: ctx.payload * factor, timeout=0.5)


IMAGES = SimpleNamespace(taskqueue_register_processors=hookimpl(_register))


async def test_a_plugin_registry_gets_its_settings_and_runs_sync_processors() -> None:
    registry = plugin_registry(IMAGES, name="images", settings={"factor": 3})
    run = await run_processor(registry, "image.scale", 7)
    assert run.value == 21


async def test_what_the_processor_raises_is_raised_as_it_is() -> None:
    async def refuse(ctx: TaskContext) -> None:
        raise PermanentError("no such image")

    with pytest.raises(PermanentError, match="no such image"):
        await run_processor(refuse, "image.resize", {})


async def test_a_result_a_worker_could_not_store_is_an_error() -> None:
    async def leaky(ctx: TaskContext) -> object:
        return object()

    with pytest.raises(TypeError, match="the processor's result is"):
        await run_processor(leaky, "image.resize")


async def test_the_registered_timeout_cancels_the_processor(autojump_clock: trio.abc.Clock) -> None:
    async def forever(ctx: TaskContext) -> None:
        await trio.sleep_forever()

    registry = ProcessorRegistry()
    registry.add("image.stuck", forever, timeout=5)
    with pytest.raises(trio.TooSlowError):
        await run_processor(registry, "image.stuck")


async def test_an_unknown_task_type_names_the_registered_ones() -> None:
    with pytest.raises(LookupError, match=r"'image\.crop' \(registered: image\.scale\)"):
        await run_processor(plugin_registry(IMAGES), "image.crop")
