"""Processors: the functions that run tasks, how plugins register them, and what they see.

A processor is ``async def process(ctx: TaskContext) -> result`` (a plain ``def`` is run in a
worker thread so it cannot block the event loop). Its result must be JSON-serialisable; an
exception fails the attempt, and the task is retried with backoff until its retries run out.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
import msgspec
import pluggy

from taskqueue import hookspecs
from taskqueue.broker import task_type_problem, valid_max_retries, valid_timeout
from taskqueue.config.plugins import check_plugin_tables, parse_plugin_settings
from taskqueue.errors import ConfigError
from taskqueue.models import MAX_RETRIES_LIMIT, ClaimedTask, Policy, Priority
from taskqueue.payloads import decode_payload, is_payload_type
from taskqueue.redis import Redis

ENTRY_POINT_GROUP = "taskqueue"

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Any], Awaitable[None]]
S = TypeVar("S")


_RAW: Any = object()  # TaskContext._payload before a typed payload is decoded


class TaskContext:
    """What a processor knows about the task it runs, and how it talks back.

    ``logger`` is bound to the task: lines logged through it (or through any logger, while the
    task runs) carry the task id, type, attempt and worker id.
    """

    __slots__ = ("_payload", "_progress", "_redis", "_task", "logger", "worker_id")

    def __init__(
        self,
        task: ClaimedTask,
        *,
        worker_id: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        progress: ProgressCallback | None = None,
        redis: Redis | None = None,
    ) -> None:
        self._task = task
        self._payload: Any = _RAW
        self._progress = progress
        self._redis = redis
        self.worker_id = worker_id
        self.logger = logger

    @property
    def redis(self) -> Redis:
        """The worker's client of the Redis it takes its tasks from, for processors whose work
        is on Redis (counters, caches, rate limits, Lua scripts).

        One client serves all the worker's tasks: the commands they issue at about the same time
        leave in one write on one shared connection (automatic pipelining), so a task's command
        costs little more than the round trip it shares. Blocking commands (``BLPOP``...) get a
        connection of their own. Don't close it: the worker does, after the last task.

        The keys are the plugin's own business: keep them under a prefix of the plugin's (not
        taskqueue's ``{taskqueue}:`` namespace, whose keys only the broker may touch).
        Raises :class:`RuntimeError` where there is no Redis (a context made without one).
        """
        if self._redis is None:
            raise RuntimeError(
                "this task context has no Redis client (run_processor(..., redis=...) gives it one)"
            )
        return self._redis

    @property
    def id(self) -> str:
        return self._task.id

    @property
    def type(self) -> str:
        return self._task.type

    @property
    def payload(self) -> Any:
        """The payload: an instance of the type's declared payload Struct when it has one
        (checked before the processor runs), else the JSON value as submitted."""
        return self._task.payload if self._payload is _RAW else self._payload

    @property
    def inputs(self) -> list[Any]:
        """The results of the tasks this one depended on (``depends_on``), in that order;
        empty for a task without dependencies. A dependency that failed, for a task that runs
        anyway, gave None."""
        inputs = self._task.inputs
        return inputs if isinstance(inputs, list) else []

    @property
    def headers(self) -> dict[str, str]:
        """The headers the task was submitted with (empty for none): metadata apart from the
        payload, such as a trace context or a tenant."""
        return self._task.headers

    @property
    def group(self) -> str | None:
        """The fair share group the task was submitted to (a tenant, a customer), or None."""
        return self._task.group

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, and so on."""
        return self._task.attempt

    @property
    def max_retries(self) -> int:
        return self._task.max_retries

    @property
    def is_last_attempt(self) -> bool:
        return self._task.attempt > self._task.max_retries

    @property
    def priority(self) -> Priority:
        return self._task.priority

    @property
    def task(self) -> ClaimedTask:
        return self._task

    async def report_progress(self, progress: Any) -> None:
        """Record ``progress`` (any JSON value) on the task, visible to ``get`` and watchers.

        Cheap to call often: it returns at once, and the worker writes only the newest value
        not yet written, for all its tasks in one round trip. Progress is advisory: reported
        just before the task ends, it may never be written.
        """
        if self._progress is not None:
            await self._progress(progress)


Processor = Callable[[TaskContext], Any]


def typed_processor(func: Processor, payload_type: type[msgspec.Struct]) -> Processor:
    """``func`` behind a check of the payload against ``payload_type``: a payload that does not
    fit raises :class:`~taskqueue.errors.InvalidPayloadError` (permanent) before ``func`` runs,
    and one that fits reaches it as the Struct instance (``ctx.payload``). Sync stays sync."""
    if not is_payload_type(payload_type):
        raise TypeError(f"payload must be a msgspec.Struct subclass, got {payload_type!r}")
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(ctx: TaskContext) -> Any:
            ctx._payload = decode_payload(payload_type, ctx.task.payload)
            return await func(ctx)

        return run_async

    @functools.wraps(func)
    def run_sync(ctx: TaskContext) -> Any:
        ctx._payload = decode_payload(payload_type, ctx.task.payload)
        return func(ctx)

    return run_sync


@attrs.frozen(kw_only=True)
class ProcessorSpec:
    """A registered processor and the defaults of its task type."""

    task_type: str
    func: Processor
    is_async: bool
    plugin: str
    version: str
    timeout: float | None = None
    max_retries: int | None = None
    priority: Priority | None = None
    description: str = ""
    #: The declared payload Struct; ``func`` checks the payload against it before running.
    payload_type: type[msgspec.Struct] | None = None


class ProcessorRegistry:
    """Collects processors from plugins; the worker reads it to know what it can run."""

    def __init__(self, settings: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._specs: dict[str, ProcessorSpec] = {}
        self._all_settings = settings or {}
        self._parsed: dict[str, object] = {}
        self._plugin = "taskqueue"
        self._version = ""

    @property
    def settings(self) -> Mapping[str, Any]:
        """The ``[plugins.<name>]`` table of the plugin that is registering now, as written.

        Prefer :meth:`settings_as`: a raw table is neither checked nor masked.
        """
        return self._all_settings.get(self._plugin, {})

    def settings_as(self, cls: type[S]) -> S:
        """The registering plugin's ``[plugins.<name>]`` table read through ``cls``, a class
        made with :func:`taskqueue.plugin.settings_class` whose fields are declared with
        :func:`taskqueue.plugin.setting`.

        Raises ConfigError naming ``plugins.<name>.<key>`` and the value for an unknown key or
        a wrong value; secrets declared in ``cls`` are masked by ``taskqueue config check``.
        """
        parsed = parse_plugin_settings(cls, self._plugin, self.settings)
        self._parsed[self._plugin] = parsed
        return parsed

    @property
    def plugin_settings(self) -> Mapping[str, object]:
        """The settings each plugin read through :meth:`settings_as`, by plugin name."""
        return dict(self._parsed)

    def register(self, plugin: object, *, name: str, version: str = "") -> None:
        """Call ``plugin``'s ``taskqueue_register_processors`` hook, crediting each processor
        it adds to ``name`` (and ``version``), with ``[plugins.<name>]`` as its settings."""
        self._plugin, self._version = name, version
        try:
            impl = getattr(plugin, "taskqueue_register_processors", None)
            if impl is not None:
                impl(registry=self)
        finally:
            self._plugin, self._version = "taskqueue", ""

    def add(
        self,
        task_type: str,
        func: Processor,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        priority: Priority | str | None = None,
        description: str = "",
        payload: type[msgspec.Struct] | None = None,
    ) -> None:
        """Register ``func`` as the processor of ``task_type`` with the type's defaults.

        ``payload`` (a :class:`msgspec.Struct` subclass) types the payload: it is checked before
        ``func`` runs, a payload that does not fit fails the task for good with an error naming
        the field (``payload.url: Expected str, got int``), and ``ctx.payload`` is the Struct.
        """
        problem = task_type_problem(task_type)
        if problem is not None:
            raise ValueError(problem)
        if timeout is not None and not valid_timeout(timeout):
            raise ValueError(f"{task_type}: timeout must be above 0 and at most a week")
        if max_retries is not None and not valid_max_retries(max_retries):
            raise ValueError(
                f"{task_type}: max_retries must be a whole number from 0 to {MAX_RETRIES_LIMIT}"
            )
        if task_type in self._specs:
            other = self._specs[task_type]
            raise ValueError(
                f"task type {task_type!r} is registered twice: "
                f"by {other.plugin} and by {self._plugin}"
            )
        self._specs[task_type] = ProcessorSpec(
            task_type=task_type,
            func=typed_processor(func, payload) if payload is not None else func,
            payload_type=payload,
            is_async=inspect.iscoroutinefunction(func),
            plugin=self._plugin,
            version=self._version,
            timeout=timeout,
            max_retries=max_retries,
            priority=Priority.parse(priority) if priority is not None else None,
            description=description or (inspect.getdoc(func) or "").split("\n")[0],
        )

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._specs

    def __getitem__(self, task_type: str) -> ProcessorSpec:
        return self._specs[task_type]

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def task_types(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[ProcessorSpec]:
        return [self._specs[t] for t in self.task_types]

    def type_policies(self, task_types: Iterable[str]) -> dict[str, Policy]:
        """The submission defaults of ``task_types``, as the policy's config layer holds them."""
        return {
            t: Policy(
                priority=self._specs[t].priority,
                max_retries=self._specs[t].max_retries,
                timeout=self._specs[t].timeout,
            )
            for t in task_types
        }


class PluginLoadError(Exception):
    """A plugin could not be imported or failed while registering its processors."""


@attrs.frozen
class LoadedPlugins:
    manager: pluggy.PluginManager
    registry: ProcessorRegistry
    #: entry-point name -> error text, for plugins skipped because of ``skip_broken_plugins``.
    broken: dict[str, str]


def load_plugins(
    *,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    skip_broken: bool = False,
    extra: tuple[object, ...] = (),
    entry_points: bool = True,
) -> LoadedPlugins:
    """Import every plugin of the ``taskqueue`` entry-point group and collect its processors.

    A plugin that fails to import or register stops start-up with :class:`PluginLoadError`
    (naming the plugin and the error) unless ``skip_broken``, when it is logged and left out.
    ``extra`` are plugin objects registered directly (for tests, embedding applications and
    ``--processors``); ``entry_points=False`` loads only those. A wrong ``[plugins.<name>]``
    setting raises ConfigError (naming the key) unless ``skip_broken``; a table that no
    plugin answers to (``[plugins.htp]``) raises ConfigError always.
    """
    manager = pluggy.PluginManager("taskqueue")
    manager.add_hookspecs(hookspecs)
    registry = ProcessorRegistry(settings)
    broken: dict[str, str] = {}
    candidates: list[tuple[str, str, Callable[[], object]]] = []
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points else ()
    for ep in sorted(found, key=lambda e: e.name):
        dist = ep.dist
        version = f"{dist.name} {dist.version}" if dist is not None else ep.value
        candidates.append((ep.name, version, ep.load))
    for i, obj in enumerate(extra):
        candidates.append(
            (getattr(obj, "__name__", f"extra-{i}"), "", functools.partial(_same, obj))
        )
    for name, version, load in candidates:
        try:
            plugin = load()
            manager.register(plugin, name=name)
            registry.register(plugin, name=name, version=version)
        except Exception as exc:
            if manager.get_plugin(name) is not None:
                manager.unregister(name=name)
            if isinstance(exc, ConfigError) and not skip_broken:
                raise  # as it is: its message names the key to fix
            message = f"plugin {name!r} ({version or 'unversioned'}) failed to load: {exc!r}"
            if not skip_broken:
                raise PluginLoadError(message) from exc
            log.error("%s; skipping it (worker.skip_broken_plugins is on)", message)
            broken[name] = repr(exc)
    check_plugin_tables(settings or {}, [name for name, _, _ in candidates])
    return LoadedPlugins(manager=manager, registry=registry, broken=broken)


def _same(obj: object) -> object:
    return obj
