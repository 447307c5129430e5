"""The surface for plugin authors: import everything a plugin needs from here.

See :mod:`taskqueue.hookspecs` for the hooks and when they are called.
"""

from __future__ import annotations

import pluggy

from taskqueue.errors import PermanentError
from taskqueue.models import ClaimedTask, Priority
from taskqueue.outcomes import Outcome, OutcomeKind
from taskqueue.processors import ProcessorRegistry, TaskContext

hookimpl = pluggy.HookimplMarker("taskqueue")

__all__ = [
    "ClaimedTask",
    "Outcome",
    "OutcomeKind",
    "PermanentError",
    "Priority",
    "ProcessorRegistry",
    "TaskContext",
    "hookimpl",
]
