"""Periodic tasks: schedules that submit a task on a cron expression or a fixed interval.

A schedule is stored in Redis (its definition and its state), so any number of daemons may
run the scheduling service: each tick fires once, because a firing is a compare-and-set of the
schedule's next-run time in a Lua script, and the task it submits carries an idempotency key
derived from the schedule and the tick. :mod:`~taskqueue.schedules.model` holds what a
schedule is, :mod:`~taskqueue.schedules.timing` when it fires.
"""

from __future__ import annotations

from taskqueue.schedules.model import (
    MAX_SCHEDULES,
    MissedPolicy,
    Schedule,
    ScheduleSpec,
    schedule_name,
    schedule_spec,
)
from taskqueue.schedules.timing import Firing, firing, next_tick, upcoming

__all__ = [
    "MAX_SCHEDULES",
    "Firing",
    "MissedPolicy",
    "Schedule",
    "ScheduleSpec",
    "firing",
    "next_tick",
    "schedule_name",
    "schedule_spec",
    "upcoming",
]
