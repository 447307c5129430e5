"""The surface for plugin authors: import everything a plugin needs from here.

See :mod:`taskqueue.hookspecs` for the hooks and when they are called.
"""

from __future__ import annotations

import pluggy

from taskqueue.models import ClaimedTask, Priority
from taskqueue.processors import Outcome, OutcomeKind, ProcessorRegistry, TaskContext

hookimpl = pluggy.HookimplMarker("taskqueue")

__all__ = [
    "ClaimedTask",
    "Outcome",
    "OutcomeKind",
    "Priority",
    "ProcessorRegistry",
    "TaskContext",
    "hookimpl",
]
