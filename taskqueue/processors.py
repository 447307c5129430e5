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
from typing import Any

import attrs
import pluggy

from taskqueue import hookspecs
from taskqueue.broker import TypeDefaults, task_type_problem, valid_max_retries, valid_timeout
from taskqueue.models import ClaimedTask, Priority

ENTRY_POINT_GROUP = "taskqueue"

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Any], Awaitable[None]]


class TaskContext:
    """What a processor knows about the task it runs, and how it talks back.

    ``logger`` is bound to the task: lines logged through it (or through any logger, while the
    task runs) carry the task id, type, attempt and worker id.
    """

    __slots__ = ("_progress", "_task", "logger", "worker_id")

    def __init__(
        self,
        task: ClaimedTask,
        *,
        worker_id: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        progress: ProgressCallback | None = None,
    ) -> None:
        self._task = task
        self._progress = progress
        self.worker_id = worker_id
        self.logger = logger

    @property
    def id(self) -> str:
        return self._task.id

    @property
    def type(self) -> str:
        return self._task.type

    @property
    def payload(self) -> Any:
        return self._task.payload

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


class ProcessorRegistry:
    """Collects processors from plugins; the worker reads it to know what it can run."""

    def __init__(self, settings: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._specs: dict[str, ProcessorSpec] = {}
        self._all_settings = settings or {}
        self._plugin = "taskqueue"
        self._version = ""

    @property
    def settings(self) -> Mapping[str, Any]:
        """The ``[plugins.<name>]`` table of the plugin that is registering now."""
        return self._all_settings.get(self._plugin, {})

    def _registering(self, plugin: str, version: str) -> None:
        self._plugin, self._version = plugin, version

    def add(
        self,
        task_type: str,
        func: Processor,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        priority: Priority | str | None = None,
        description: str = "",
    ) -> None:
        """Register ``func`` as the processor of ``task_type`` with the type's defaults."""
        problem = task_type_problem(task_type)
        if problem is not None:
            raise ValueError(problem)
        if timeout is not None and not valid_timeout(timeout):
            raise ValueError(f"{task_type}: timeout must be above 0 and at most a week")
        if max_retries is not None and not valid_max_retries(max_retries):
            raise ValueError(f"{task_type}: max_retries must be a whole number from 0 to 1000")
        if task_type in self._specs:
            other = self._specs[task_type]
            raise ValueError(
                f"task type {task_type!r} is registered twice: "
                f"by {other.plugin} and by {self._plugin}"
            )
        self._specs[task_type] = ProcessorSpec(
            task_type=task_type,
            func=func,
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

    def type_defaults(self, task_types: Iterable[str]) -> dict[str, TypeDefaults]:
        """The submission defaults of ``task_types``, as the broker records them."""
        return {
            t: TypeDefaults(
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
) -> LoadedPlugins:
    """Import every plugin of the ``taskqueue`` entry-point group and collect its processors.

    A plugin that fails to import or register stops start-up with :class:`PluginLoadError`
    (naming the plugin and the error) unless ``skip_broken``, when it is logged and left out.
    ``extra`` are plugin objects registered directly, for tests and embedding applications.
    """
    manager = pluggy.PluginManager("taskqueue")
    manager.add_hookspecs(hookspecs)
    registry = ProcessorRegistry(settings)
    broken: dict[str, str] = {}
    candidates: list[tuple[str, str, Callable[[], object]]] = []
    for ep in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
    ):
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
            registry._registering(name, version)
            _register_one(plugin, registry)
        except Exception as exc:
            if manager.get_plugin(name) is not None:
                manager.unregister(name=name)
            message = f"plugin {name!r} ({version or 'unversioned'}) failed to load: {exc!r}"
            if not skip_broken:
                raise PluginLoadError(message) from exc
            log.error("%s; skipping it (worker.skip_broken_plugins is on)", message)
            broken[name] = repr(exc)
    return LoadedPlugins(manager=manager, registry=registry, broken=broken)


def _same(obj: object) -> object:
    return obj


def _register_one(plugin: object, registry: ProcessorRegistry) -> None:
    """Call one plugin's ``taskqueue_register_processors``, so each processor is credited
    to the plugin (and version) that registered it."""
    impl = getattr(plugin, "taskqueue_register_processors", None)
    if impl is not None:
        impl(registry=registry)
