"""The data model: tasks, their states and priorities, worker records, queue statistics.

These are plain attrs classes with no I/O. How they are stored in Redis is the broker's
business (:mod:`taskqueue.broker.codec`); how they look on the wire is the API's.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class TaskState(enum.StrEnum):
    """Where a task is in its life. At every moment a task is in exactly one state."""

    PENDING = "pending"  # ready to run, waiting in its priority queue
    SCHEDULED = "scheduled"  # waiting for a delayed start or a retry backoff
    ACTIVE = "active"  # leased by one worker
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # failed its last attempt; in the dead-letter queue
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED})


class Priority(enum.StrEnum):
    """Task priorities, most urgent first. Claims are strict in this order by default."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @classmethod
    def parse(cls, value: str | Priority) -> Priority:
        """The priority named by ``value``, or a ValueError that lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown priority {value!r}: expected one of {names}") from None


#: Priorities in the order claims visit them.
PRIORITY_ORDER: tuple[Priority, ...] = tuple(Priority)

#: The priority of a task whose submission and task type name none.
DEFAULT_PRIORITY = Priority.MEDIUM


@attrs.define(slots=True, kw_only=True)
class Task:
    """One unit of work and everything known about it.

    Times are Unix epoch milliseconds (``int``) so they survive Redis and JSON unchanged.
    ``attempt`` counts the times the task has been claimed: 0 before its first run, and it
    doubles as the fencing token of the current lease.
    """

    id: str
    type: str
    priority: Priority = Priority.MEDIUM
    payload: Any = None
    state: TaskState = TaskState.PENDING
    attempt: int = 0
    max_retries: int = 3
    timeout_ms: int = 300_000
    created_ms: int = 0
    ready_ms: int = 0  # when it became (or becomes) ready to run
    started_ms: int | None = None
    finished_ms: int | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    idempotency_key: str | None = None
    worker_id: str | None = None
    cancel_requested: bool = False
    progress: Any = None

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_retries + 1 - self.attempt)


@attrs.define(slots=True, kw_only=True, frozen=True)
class ClaimedTask:
    """What a worker receives from a claim: just enough to run the task and report on it."""

    id: str
    type: str
    priority: Priority
    payload: Any
    attempt: int
    max_retries: int
    timeout_ms: int
    ready_ms: int
    started_ms: int


@attrs.define(slots=True, kw_only=True)
class WorkerInfo:
    """A worker's registration, refreshed by its heartbeat."""

    id: str
    host: str
    pid: int
    task_types: dict[str, str]  # task type -> "plugin-name version"
    concurrency: int
    in_flight: int
    started_ms: int
    last_heartbeat_ms: int
    processed: int = 0
    failed: int = 0


@attrs.define(slots=True, kw_only=True)
class QueueStats:
    """Counts kept incrementally by the broker, so reading them costs O(1) on Redis."""

    by_state: dict[TaskState, int]
    pending_by_priority: dict[Priority, int]
    pending_by_type: dict[str, int]
    #: (state, type) -> count, for the live states (pending, scheduled, active, dead).
    by_state_and_type: dict[tuple[TaskState, str], int]
    #: Lifetime totals of outcomes: submitted, succeeded, failed, retried, dead, cancelled, reaped.
    totals: dict[str, int]
    #: Registered workers (a dead worker counts until the reaper removes its record).
    workers: int = 0
    #: (state, priority) -> count, for the live states (pending, scheduled, active, dead).
    by_state_and_priority: dict[tuple[TaskState, Priority], int] = attrs.Factory(dict)
