"""Exceptions a user of taskqueue can catch. Each says what went wrong in words."""

from __future__ import annotations


class TaskQueueError(Exception):
    """Base class of every error taskqueue raises on purpose."""


class InvalidTaskError(TaskQueueError, ValueError):
    """A submission or request is malformed; ``field`` names the part that is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLargeError(InvalidTaskError):
    """A payload's JSON encoding is larger than the configured limit."""


class TaskNotFoundError(TaskQueueError, LookupError):
    """No task has the given id (it never existed, or its record has expired)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class IdempotencyKeyNotFoundError(TaskQueueError, LookupError):
    """No live task has the given idempotency key (never used, its window passed, or its task's
    record expired)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no task has idempotency key {key!r} (unknown, or its window passed)")
        self.key = key


class ConflictingStateError(TaskQueueError):
    """The operation does not apply to the task's current state (e.g. cancel a finished task)."""


class QueueFullError(TaskQueueError):
    """A queue is over its configured depth limit; try again later."""


class TooManyTypesError(QueueFullError):
    """A submission names a task type that has no tasks while as many types as the policy's
    ``max_task_types`` have some; ``task_type`` is the type. Frees up as types empty."""

    def __init__(self, message: str, *, task_type: str = "") -> None:
        super().__init__(message)
        self.task_type = task_type


class NotDurableError(TaskQueueError):
    """With ``redis.durable_submit``, Redis did not confirm within ``redis.durable_timeout``
    that a submission reached its append-only file on disk. The tasks were written and will
    most likely run; ``task_ids`` names them, so a caller can check on them or submit again
    with the same idempotency keys."""

    def __init__(self, message: str, *, task_ids: list[str]) -> None:
        super().__init__(message)
        self.task_ids = task_ids


class DurabilityUnsupportedError(TaskQueueError):
    """``redis.durable_submit`` is on, but the Redis server cannot confirm persistence
    (``WAITAOF`` needs Redis 7.2 or newer with ``appendonly yes``). Waiting will not change
    that: the daemon stops at start, saying so, and a submitter's submits are refused."""


class ListenError(TaskQueueError, OSError):
    """A server could not listen where it was told to (port in use, permission, address)."""


class UnservedTypeError(InvalidTaskError):
    """A submission names a task type no live worker serves, and the policy (``refuse_unserved``)
    or the caller (strict) refuses such submissions; ``task_type`` is the type."""

    def __init__(self, message: str, *, field: str | None = "type", task_type: str = "") -> None:
        super().__init__(message, field=field)
        self.task_type = task_type


class ConfigError(TaskQueueError):
    """The configuration is wrong; the message names the key, the value and what was expected."""


class PermanentError(TaskQueueError):
    """Raised by a processor when retrying cannot help (a malformed payload, a 4xx from a
    webhook's receiver): the task goes to the dead-letter queue at once, its remaining
    retries unspent. Any other exception fails the attempt, and the task is retried."""


class ResultTooLargeError(PermanentError):
    """A processor's result, or a progress report, is larger as JSON than
    ``task.max_result_bytes``. Permanent: the same work would return as much again, so the
    task is dead-lettered at once; a processor may catch it from ``report_progress``."""


class InvalidPayloadError(InvalidTaskError, PermanentError):
    """A task's payload does not fit its type's declared payload (``registry.add(...,
    payload=...)``); ``field`` names the part that is wrong. Permanent: a retry would not fit
    either, so the task is dead-lettered at once."""


class ScheduleNotFoundError(TaskQueueError, LookupError):
    """No schedule has the given name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name


class TooManySchedulesError(TaskQueueError):
    """Creating one more schedule would pass ``MAX_SCHEDULES``: every daemon's scheduler
    reads the due ones each tick, so their number is bounded."""
