"""How one attempt of a task ended: the one vocabulary of the worker, its plugins and Redis.

The consumer decides an :class:`OutcomeKind` (also when it stops a task early: the kind it will
end with is the reason it was stopped), plugins see it in ``taskqueue_task_finished``, and the
broker hands the same word to ``finish.lua``, which records what it means for the task.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import attrs

#: Most characters of an attempt's error message the task keeps: an exception's text is its
#: raiser's to choose (one quoting a whole payload, say), and every list shows its start.
MAX_ERROR_CHARS: Final = 8 * 2**10
#: Most characters of an attempt's traceback the task keeps: its end, where the exception was
#: raised (a deep recursion's frames repeat above it).
MAX_TRACEBACK_CHARS: Final = 64 * 2**10


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
    #: The processor raised or returned :class:`Snooze`: the task waits ``delay`` and runs
    #: again, the attempt not spent; past its type's ``max_snoozes`` it is dead-lettered.
    SNOOZED = "snoozed"
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
    #: How long a snoozed task waits before it runs again, in seconds.
    snooze_s: float = 0.0


#: The longest a processor may snooze its task at once: a year.
MAX_SNOOZE_S: Final = 366 * 24 * 3600.0


class Snooze(Exception):
    """Raise (or return) from a processor: "not now, try again in ``delay`` seconds".

    The task goes back to ``scheduled`` for that long without spending an attempt, so a
    processor can wait for something outside (a resource still being built, a partner's
    quiet hours, a rate it learnt from a 429) without using up its retries. Each snooze is
    counted on the task (``snoozes``); one more than its type's ``max_snoozes`` policy setting
    dead-letters it instead, so a task cannot snooze for ever.
    """

    def __init__(self, delay: float) -> None:
        if not 0 <= delay <= MAX_SNOOZE_S:  # also refuses NaN
            raise ValueError(f"a snooze lasts 0 to {MAX_SNOOZE_S:g} seconds, not {delay!r}")
        super().__init__(f"snoozed for {delay:g}s")
        self.delay = float(delay)


#: Room for the note that says how much a clipped text left out.
_NOTE_CHARS: Final = 48


def clipped_error(text: str) -> str:
    """``text`` within :data:`MAX_ERROR_CHARS`: its start, and how much was left out."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    kept = MAX_ERROR_CHARS - _NOTE_CHARS
    return f"{text[:kept]} [... {len(text) - kept} more characters]"


def clipped_traceback(text: str) -> str:
    """``text`` within :data:`MAX_TRACEBACK_CHARS`: its end, and how much was left out."""
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    kept = MAX_TRACEBACK_CHARS - _NOTE_CHARS
    return f"[... {len(text) - kept} characters before this]\n{text[-kept:]}"
