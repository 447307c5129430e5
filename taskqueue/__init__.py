"""taskqueue: a distributed task queue on trio and Redis.

The public surface; plugin authors import from :mod:`taskqueue.plugin`.
"""

from typing import TYPE_CHECKING, Any

from taskqueue.broker import Broker, BrokerSettings, Report, Submission, Submitted
from taskqueue.client import Client
from taskqueue.errors import (
    ConfigError,
    ConflictingStateError,
    IdempotencyKeyNotFoundError,
    InvalidTaskError,
    PayloadTooLargeError,
    PermanentError,
    QueueFullError,
    ScheduleNotFoundError,
    TaskNotFoundError,
    TaskQueueError,
    TooManySchedulesError,
    TooManyTypesError,
    UnservedTypeError,
)
from taskqueue.models import (
    ClaimedTask,
    Debounce,
    Policy,
    Priority,
    QueueStats,
    Task,
    TaskEvent,
    TaskState,
    WorkerInfo,
)
from taskqueue.outcomes import Snooze
from taskqueue.redis import Redis
from taskqueue.schedules import MissedPolicy, Schedule, ScheduleSpec, schedule_spec

if TYPE_CHECKING:
    from taskqueue.rest_client import RestClient
    from taskqueue.sync_client import SyncClient

__version__ = "0.1.0"

__all__ = [
    "Broker",
    "BrokerSettings",
    "ClaimedTask",
    "Client",
    "ConfigError",
    "ConflictingStateError",
    "Debounce",
    "IdempotencyKeyNotFoundError",
    "InvalidTaskError",
    "MissedPolicy",
    "PayloadTooLargeError",
    "PermanentError",
    "Policy",
    "Priority",
    "QueueFullError",
    "QueueStats",
    "Redis",
    "Report",
    "RestClient",
    "Schedule",
    "ScheduleNotFoundError",
    "ScheduleSpec",
    "Snooze",
    "Submission",
    "Submitted",
    "SyncClient",
    "Task",
    "TaskEvent",
    "TaskNotFoundError",
    "TaskQueueError",
    "TaskState",
    "TooManySchedulesError",
    "TooManyTypesError",
    "UnservedTypeError",
    "WorkerInfo",
    "__version__",
    "schedule_spec",
]


def __getattr__(name: str) -> Any:
    """``SyncClient`` on first use: it stands on redis-py, which nothing else here imports,
    so the daemon and the command line start without it; ``RestClient`` (httpx) likewise, so
    a producer on Redis does not import an HTTP stack."""
    if name == "SyncClient":
        from taskqueue.sync_client import SyncClient

        return SyncClient
    if name == "RestClient":
        from taskqueue.rest_client import RestClient

        return RestClient
    raise AttributeError(f"module 'taskqueue' has no attribute {name!r}")
