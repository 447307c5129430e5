"""The broker: the only code that knows Redis keys and Lua scripts."""

from taskqueue.broker.broker import (
    Broker,
    BrokerSettings,
    Cancellation,
    CancelOutcome,
    HeartbeatReply,
    Page,
    PromoteResult,
    ReapedTask,
    ReapResult,
    Report,
    Retention,
    Submission,
    Submitted,
    TrimResult,
    TypeDefaults,
    task_type_problem,
    valid_max_retries,
    valid_timeout,
    wall_clock_ms,
)
from taskqueue.broker.codec import events_from_message
from taskqueue.broker.keys import Keys

__all__ = [
    "Broker",
    "BrokerSettings",
    "CancelOutcome",
    "Cancellation",
    "HeartbeatReply",
    "Keys",
    "Page",
    "PromoteResult",
    "ReapResult",
    "ReapedTask",
    "Report",
    "Retention",
    "Submission",
    "Submitted",
    "TrimResult",
    "TypeDefaults",
    "events_from_message",
    "task_type_problem",
    "valid_max_retries",
    "valid_timeout",
    "wall_clock_ms",
]
