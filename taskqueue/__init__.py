"""taskqueue: a distributed task queue on trio and Redis.

The public surface; plugin authors import from :mod:`taskqueue.plugin`.
"""

from taskqueue.broker import Broker, BrokerSettings, Report, Submission, Submitted
from taskqueue.client import Client
from taskqueue.errors import (
    ConfigError,
    ConflictingStateError,
    InvalidTaskError,
    PayloadTooLargeError,
    PermanentError,
    QueueFullError,
    TaskNotFoundError,
    TaskQueueError,
    TooManyTypesError,
    UnservedTypeError,
)
from taskqueue.models import (
    ClaimedTask,
    Policy,
    Priority,
    QueueStats,
    Task,
    TaskEvent,
    TaskState,
    WorkerInfo,
)
from taskqueue.redis import Redis
from taskqueue.sync_client import SyncClient

__version__ = "0.1.0"

__all__ = [
    "Broker",
    "BrokerSettings",
    "ClaimedTask",
    "Client",
    "ConfigError",
    "ConflictingStateError",
    "InvalidTaskError",
    "PayloadTooLargeError",
    "PermanentError",
    "Policy",
    "Priority",
    "QueueFullError",
    "QueueStats",
    "Redis",
    "Report",
    "Submission",
    "Submitted",
    "SyncClient",
    "Task",
    "TaskEvent",
    "TaskNotFoundError",
    "TaskQueueError",
    "TaskState",
    "TooManyTypesError",
    "UnservedTypeError",
    "WorkerInfo",
    "__version__",
]
