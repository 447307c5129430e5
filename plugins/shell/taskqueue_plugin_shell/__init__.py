"""taskqueue plugin: the ``shell.run`` task type.

Runs one executable from the operator's allowlist with an argument vector (never through a
shell), a minimal environment, capped output and a timeout that kills the whole process group.
Off by default: until ``[plugins.shell] allowed_executables`` lists something, every task is
refused with an error that says so. See README.md for the payload and the settings.
"""

from __future__ import annotations

import logging

from taskqueue.plugin import ProcessorRegistry, hookimpl
from taskqueue_plugin_shell.environment import BASE_ENV
from taskqueue_plugin_shell.errors import (
    CommandFailedError,
    CommandStartError,
    EnvNotAllowedError,
    ExecutableNotAllowedError,
    ShellPayloadError,
    ShellTaskError,
)
from taskqueue_plugin_shell.payload import ShellCommandSpec
from taskqueue_plugin_shell.processor import ShellRunProcessor
from taskqueue_plugin_shell.settings import Allowed, Allowlist, ShellSettings, resolve_allowlist

TASK_TYPE = "shell.run"

log = logging.getLogger(__name__)


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    """Register ``shell.run`` with the operator's ``[plugins.shell]`` settings."""
    settings = registry.settings_as(ShellSettings)
    allowed = resolve_allowlist(settings.allowed_executables)
    if not allowed:
        log.info("shell.run refuses every task: [plugins.shell] allowed_executables is empty")
    processor = ShellRunProcessor(settings, allowed)
    registry.add(
        TASK_TYPE,
        processor.run,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        payload=ShellCommandSpec,
        description="Run an allowlisted executable (no shell) with capped output.",
    )


__all__ = [
    "BASE_ENV",
    "TASK_TYPE",
    "Allowed",
    "Allowlist",
    "CommandFailedError",
    "CommandStartError",
    "EnvNotAllowedError",
    "ExecutableNotAllowedError",
    "ShellCommandSpec",
    "ShellPayloadError",
    "ShellRunProcessor",
    "ShellSettings",
    "ShellTaskError",
    "resolve_allowlist",
    "taskqueue_register_processors",
]
