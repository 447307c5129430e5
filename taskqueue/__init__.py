"""taskqueue: a distributed task queue on trio and Redis.

The public surface; plugin authors import from :mod:`taskqueue.plugin`.
"""

from taskqueue.broker import Broker, BrokerSettings, Report, Submission, Submitted
from taskqueue.client import Client, TaskEvent
from taskqueue.errors import (
    ConfigError,
    ConflictingStateError,
    InvalidTaskError,
    PayloadTooLargeError,
    QueueFullError,
    TaskNotFoundError,
    TaskQueueError,
)
from taskqueue.models import ClaimedTask, Priority, QueueStats, Task, TaskState, WorkerInfo
from taskqueue.redis import Redis

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
    "Priority",
    "QueueFullError",
    "QueueStats",
    "Redis",
    "Report",
    "Submission",
    "Submitted",
    "Task",
    "TaskEvent",
    "TaskNotFoundError",
    "TaskQueueError",
    "TaskState",
    "WorkerInfo",
    "__version__",
]
