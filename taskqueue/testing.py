"""A plugin author's kit: run a processor in a unit test, without a daemon (or Redis, unless
the processor uses ``ctx.redis``).

::

    from taskqueue.testing import plugin_registry, run_processor

    registry = plugin_registry(my_plugin, name="image", settings={"max_size": "1MiB"})
    run = await run_processor(registry, "image.resize", {"path": "a.png"})
    assert run.value == {"ok": True}
    assert run.progress == [{"done": 0.5}]
    assert "resizing a.png" in run.messages

The processor gets the :class:`~taskqueue.processors.TaskContext` a worker would give it (id,
attempt, worker id, the task-bound logger), its typed payload is checked as a worker checks it,
and its result must be JSON-serialisable as a worker needs. What the processor raises (or the
payload check: :class:`~taskqueue.errors.InvalidPayloadError`) is raised as it is, for
``pytest.raises``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from taskqueue import _json
from taskqueue.logs import current_log_context, reset_log_context, set_log_context
from taskqueue.models import ClaimedTask, Priority
from taskqueue.processors import Processor, ProcessorRegistry, TaskContext, typed_processor
from taskqueue.redis import Redis

__all__ = ["ProcessorRun", "plugin_registry", "run_processor"]

#: The logger a worker binds to each task (``ctx.logger``).
TASK_LOGGER = "taskqueue.task"


@attrs.frozen(kw_only=True)
class ProcessorRun:
    """What one processor run returned and reported."""

    #: The processor's result, as it returned it.
    value: Any
    #: Every value passed to ``ctx.report_progress``, in order.
    progress: list[Any]
    #: Every log record emitted while it ran (any logger, DEBUG and up), with the task's
    #: context fields (``task_id``, ``task_type``, ``attempt``, ``worker_id``) as attributes.
    logs: list[logging.LogRecord]
    #: The context the processor was given.
    context: TaskContext

    @property
    def messages(self) -> list[str]:
        """The log records' messages, formatted."""
        return [record.getMessage() for record in self.logs]


def plugin_registry(
    plugin: object, *, name: str | None = None, settings: Mapping[str, Any] | None = None
) -> ProcessorRegistry:
    """The processors ``plugin`` registers (a module or object with the
    ``taskqueue_register_processors`` hook), given ``settings`` as its ``[plugins.<name>]``
    table. Settings are checked as at daemon start: a bad one raises ConfigError."""
    plugin_name: str = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    registry = ProcessorRegistry({plugin_name: dict(settings or {})})
    registry.register(plugin, name=plugin_name)
    return registry


async def run_processor(
    target: ProcessorRegistry | Processor,
    task_type: str,
    payload: Any = None,
    *,
    attempt: int = 1,
    max_retries: int = 3,
    task_id: str = "test-task",
    worker_id: str = "test-worker",
    priority: Priority | str = Priority.MEDIUM,
    timeout: float | None = None,  # noqa: ASYNC109 - the task's timeout, as registry.add's
    payload_type: type[Any] | None = None,
    redis: Redis | None = None,
    headers: Mapping[str, str] | None = None,
    group: str | None = None,
) -> ProcessorRun:
    """Run the processor of ``task_type`` in ``target`` (a registry, or a processor function)
    on ``payload`` as attempt ``attempt`` of a task, and return what it did.

    ``timeout`` (default: the type's registered timeout, else none) cancels it as a worker
    would; then :class:`trio.TooSlowError` is raised. ``payload_type`` types a bare function's
    payload, as ``registry.add(..., payload=...)`` does. ``redis`` is the processor's
    ``ctx.redis`` (without it, ``ctx.redis`` raises RuntimeError); ``headers`` its
    ``ctx.headers``, ``group`` its ``ctx.group``.
    """
    func, is_async, registered_timeout = _resolve(target, task_type, payload_type)
    if timeout is None:
        timeout = registered_timeout
    task = ClaimedTask(
        id=task_id,
        type=task_type,
        priority=Priority.parse(priority),
        payload=payload,
        attempt=attempt,
        max_retries=max_retries,
        timeout_ms=round((timeout or 300.0) * 1000),
        ready_ms=0,
        started_ms=0,
        headers=dict(headers or {}),
        group=group,
    )
    progress: list[Any] = []

    async def report(value: Any) -> None:
        progress.append(value)

    ctx = TaskContext(
        task,
        worker_id=worker_id,
        logger=logging.getLogger(TASK_LOGGER),
        progress=report,
        redis=redis,
    )
    token = set_log_context(
        {"task_id": task_id, "task_type": task_type, "attempt": attempt, "worker_id": worker_id}
    )
    try:
        deadline = trio.fail_after(timeout) if timeout is not None else _no_deadline()
        with _capture_logs() as logs, deadline:
            if is_async:
                value = await func(ctx)
            else:
                value = await trio.to_thread.run_sync(func, ctx)
    finally:
        reset_log_context(token)
    try:
        _json.dumps(value)
    except TypeError as exc:
        raise TypeError(f"the processor's result is {exc}") from None
    return ProcessorRun(value=value, progress=progress, logs=logs, context=ctx)


def _resolve(
    target: ProcessorRegistry | Processor, task_type: str, payload_type: type[Any] | None
) -> tuple[Processor, bool, float | None]:
    if isinstance(target, ProcessorRegistry):
        if payload_type is not None:
            raise TypeError("payload_type is for a bare function; a registry has its own")
        if task_type not in target:
            known = ", ".join(target.task_types) or "none"
            raise LookupError(f"no processor registered for {task_type!r} (registered: {known})")
        spec = target[task_type]
        return spec.func, spec.is_async, spec.timeout
    func = typed_processor(target, payload_type) if payload_type is not None else target
    return func, inspect.iscoroutinefunction(target), None


@contextmanager
def _no_deadline() -> Iterator[None]:
    yield


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        for key, value in current_log_context().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        self.records.append(record)


@contextmanager
def _capture_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record logged inside the block, DEBUG and up (the root level lowered meanwhile)."""
    root = logging.getLogger()
    collector = _Collector()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector.records
    finally:
        root.setLevel(level)
        root.removeHandler(collector)
