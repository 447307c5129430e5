"""How one attempt of a task ended: the one vocabulary of the worker, its plugins and Redis.

The consumer decides an :class:`OutcomeKind` (also when it stops a task early: the kind it will
end with is the reason it was stopped), plugins see it in ``taskqueue_task_finished``, and the
broker hands the same word to ``finish.lua``, which records what it means for the task.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class OutcomeKind(enum.StrEnum):
    """How one attempt ended, as the worker saw it."""

    #: The processor returned; its result is recorded.
    SUCCEEDED = "succeeded"
    #: The processor raised: retried with backoff while retries are left, then dead-lettered.
    FAILED = "failed"
    #: The processor raised PermanentError: dead-lettered at once, whatever retries were left.
    REJECTED = "rejected"
    #: The task's deadline passed: a failed attempt like any other.
    TIMED_OUT = "timed_out"
    #: Somebody asked for the task to be cancelled: it ends cancelled.
    CANCELLED = "cancelled"
    #: The worker shut down first: the task goes back to the front of its queue, the attempt
    #: not spent.
    INTERRUPTED = "interrupted"
    #: Another worker holds the lease now (this one's expired): the task was stopped and
    #: nothing is reported; Redis would refuse the report as stale anyway.
    LOST = "lost"


@attrs.frozen(kw_only=True)
class Outcome:
    kind: OutcomeKind
    duration_s: float
    result: Any = None
    error: str | None = None
    traceback: str | None = None
