"""A task type registered with ``payload=SomeStruct`` has its payload checked before the processor
runs: a bad one fails the task for good, naming the field; a good one arrives as the Struct."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any

import msgspec
import pytest
from daemon_helpers import daemon_config, running_daemon, submit, wait_for_state

from taskqueue.broker import Broker
from taskqueue.errors import InvalidPayloadError
from taskqueue.models import TaskState
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.processors import load_plugins
from taskqueue.redis import Redis
from taskqueue.testing import run_processor


class Webhook(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0

    def __post_init__(self) -> None:
        if not self.url.startswith("https://"):
            raise ValueError("url: must start with https://")


ran: list[Any] = []


async def send(ctx: TaskContext) -> dict[str, Any]:
    ran.append(ctx.payload)
    return {"url": ctx.payload.url, "retries": ctx.payload.retries}


def _register(registry: ProcessorRegistry) -> None:
    registry.add("hook.send", send, payload=Webhook)


HOOKS = SimpleNamespace(__name__="hooks", taskqueue_register_processors=hookimpl(_register))


def registry() -> ProcessorRegistry:
    return load_plugins(extra=(HOOKS,), entry_points=False).registry


@pytest.mark.parametrize(
    ("payload", "message", "field"),
    [
        ({"url": 5}, "payload.url: Expected str, got int (5)", "url"),
        ({}, "payload.url: this field is required", "url"),
        ({"url": "https://a", "retries": 11}, "payload.retries: Expected int <= 10", "retries"),
        (
            {"url": "https://a", "retry": 1},
            "payload.retry: unknown field; expected one of url, retries",
            "retry",
        ),
        ({"url": "http://a"}, "payload.url: must start with https://", "url"),
        (["https://a"], "payload: Expected object, got array", None),
    ],
)
async def test_a_bad_payload_is_refused_naming_the_field(
    payload: Any, message: str, field: str | None
) -> None:
    ran.clear()
    with pytest.raises(InvalidPayloadError) as caught:
        await run_processor(registry(), "hook.send", payload)
    assert str(caught.value).startswith(message)
    assert caught.value.field == field
    assert ran == []


async def test_a_good_payload_reaches_the_processor_as_the_struct() -> None:
    run = await run_processor(registry(), "hook.send", {"url": "https://a", "retries": 2})
    assert run.value == {"url": "https://a", "retries": 2}
    assert ran[-1] == Webhook(url="https://a", retries=2)


def test_a_payload_type_must_be_a_struct() -> None:
    with pytest.raises(TypeError, match=r"msgspec\.Struct"):
        ProcessorRegistry().add("hook.send", send, payload=dict)  # type: ignore[arg-type]


async def test_through_a_worker_a_bad_payload_is_dead_lettered_without_running_or_retrying(
    redis: Redis, redis_url: str
) -> None:
    broker = Broker(redis)
    ran.clear()
    plugins = load_plugins(extra=(HOOKS,))
    async with running_daemon(daemon_config(redis_url), plugins):
        bad = await submit(broker, "hook.send", {"url": 5}, max_retries=3)
        good = await submit(broker, "hook.send", {"url": "https://ok"})
        bad_task = await wait_for_state(broker, bad)
        good_task = await wait_for_state(broker, good)

    assert bad_task.state is TaskState.DEAD
    assert bad_task.attempt == 1  # no retries spent
    assert bad_task.error is not None
    assert "payload.url: Expected str, got int (5)" in bad_task.error
    assert good_task.state is TaskState.SUCCEEDED
    assert good_task.result == {"url": "https://ok", "retries": 0}
    assert ran == [Webhook(url="https://ok")]
