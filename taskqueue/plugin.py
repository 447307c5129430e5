"""The surface for plugin authors: import everything a plugin needs from here.

See :mod:`taskqueue.hookspecs` for the hooks and when they are called. A plugin declares its
``[plugins.<name>]`` settings as a :func:`settings_class` of :func:`setting` fields and reads
them with ``registry.settings_as(MySettings)``.
"""

from __future__ import annotations

import pluggy

from taskqueue.config.fields import setting
from taskqueue.config.plugins import settings_class
from taskqueue.errors import PermanentError
from taskqueue.models import ClaimedTask, Priority
from taskqueue.outcomes import Outcome, OutcomeKind, Snooze
from taskqueue.processors import ProcessorRegistry, TaskContext
from taskqueue.redis import Redis, Script

hookimpl = pluggy.HookimplMarker("taskqueue")

__all__ = [
    "ClaimedTask",
    "Outcome",
    "OutcomeKind",
    "PermanentError",
    "Priority",
    "ProcessorRegistry",
    "Redis",
    "Script",
    "Snooze",
    "TaskContext",
    "hookimpl",
    "setting",
    "settings_class",
]
