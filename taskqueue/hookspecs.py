"""Every hook a taskqueue plugin can implement, in one place.

Plugins are found through the ``taskqueue`` entry-point group; each entry point names a module
(or object) whose functions are marked with :data:`taskqueue.plugin.hookimpl`. The hooks are
called by the daemon in the order documented below; none of them is ``firstresult``.

A minimal plugin::

    from taskqueue.plugin import TaskContext, hookimpl

    async def resize(ctx: TaskContext) -> dict:
        ...

    @hookimpl
    def taskqueue_register_processors(registry):
        registry.add("image.resize", resize, timeout=60, max_retries=5)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from taskqueue.models import ClaimedTask
    from taskqueue.outcomes import Outcome
    from taskqueue.processors import ProcessorRegistry

hookspec = pluggy.HookspecMarker("taskqueue")


@hookspec
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    """Register the task types this plugin can run.

    Called once, at start-up, before the worker claims anything. Call
    ``registry.add(task_type, func, timeout=..., max_retries=..., priority=...)`` for each type;
    the keyword arguments are the type's defaults, used when a submission does not set them.
    ``registry.settings_as(MySettings)`` reads the plugin's ``[plugins.<name>]`` table through
    its declared settings class (see :func:`taskqueue.plugin.setting`), checked and masked like
    the core's; ``registry.settings`` is the raw table, for plugins that declare none.

    Registering a type that another plugin already registered is an error that stops start-up:
    two processors for one type would make a task's behaviour depend on load order.
    """


@hookspec
def taskqueue_task_started(task: ClaimedTask, worker_id: str) -> None:
    """A worker is about to run ``task`` (its processor has not been called yet).

    Called in the worker's event loop for every task, so an implementation must be quick and
    must not block: it is meant for observers such as metrics and tracing.
    """


@hookspec
def taskqueue_task_finished(task: ClaimedTask, outcome: Outcome, worker_id: str) -> None:
    """``task`` has finished one attempt on this worker; ``outcome`` says how and how long.

    Called after the processor returned, raised, timed out or was cancelled, before the outcome
    reaches Redis (outcomes are reported in batches); also for a task stopped because another
    worker holds it now (``OutcomeKind.LOST``: nothing is reported). Quick and non-blocking,
    like :func:`taskqueue_task_started`.
    """
