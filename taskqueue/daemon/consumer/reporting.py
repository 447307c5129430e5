"""Outcomes on their way to Redis: the report of each, and the metrics of what Redis made of it.

The counters are taken from the state ``finish.lua`` answered (retried, dead-lettered,
cancelled ...), not from the outcome alone, so they agree with Redis: a stale report (another
worker has the task now) counts nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from taskqueue.broker import Broker, Report
from taskqueue.metrics import Metrics, TaskCounts
from taskqueue.models import ClaimedTask, TaskState
from taskqueue.outcomes import Outcome, OutcomeKind, clipped_error, clipped_traceback

log = logging.getLogger(__name__)

#: A queued report and the counters of its task's type and priority.
Reported = tuple[Report, TaskCounts]


def report_of(task: ClaimedTask, outcome: Outcome) -> Report:
    """The report of ``outcome`` (not ``LOST``: a lost task is not reported)."""
    kind = outcome.kind
    if kind is OutcomeKind.SUCCEEDED:
        return Report(task_id=task.id, attempt=task.attempt, kind=kind, result_json=outcome.result)
    if kind is OutcomeKind.CANCELLED:
        return Report(
            task_id=task.id, attempt=task.attempt, kind=kind, error="cancelled at request"
        )
    if kind is OutcomeKind.INTERRUPTED:
        return Report(task_id=task.id, attempt=task.attempt, kind=kind)
    if kind is OutcomeKind.SNOOZED:
        snooze_ms = math.ceil(outcome.snooze_s * 1000)
        return Report(task_id=task.id, attempt=task.attempt, kind=kind, snooze_ms=snooze_ms)
    return Report(
        task_id=task.id,
        attempt=task.attempt,
        kind=kind,
        error=clipped_error(outcome.error or ""),
        traceback=clipped_traceback(outcome.traceback or ""),
    )


class Reporter:
    """Writes a batch of reports in one round trip, then counts what became of each task."""

    def __init__(self, broker: Broker, worker_id: str, metrics: Metrics) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.metrics = metrics

    async def write(self, batch: Sequence[Reported]) -> None:
        """Cancellation point: the round trip. A batch whose reply was lost (a broken
        connection) is written again; Redis then finds its reports stale and changes nothing."""
        states = await self.broker.report([report for report, _ in batch])
        for (report, counts), state in zip(batch, states, strict=True):
            if state is TaskState.SUCCEEDED:
                counts.processed += 1
            elif state is TaskState.CANCELLED:
                counts.cancelled += 1
            elif state is None:
                # Stale: the lease had passed to another worker, which decides the outcome.
                self.metrics.outcome_refused()
                log.warning(
                    "the outcome of task %s attempt %d was refused: its lease had passed to "
                    "another worker",
                    report.task_id,
                    report.attempt,
                    extra={"task_id": report.task_id, "attempt": report.attempt},
                )
            elif report.kind is OutcomeKind.INTERRUPTED:
                # Released unspent; expired when it could not start again before its deadline.
                if state is TaskState.EXPIRED:
                    counts.expired += 1
            elif report.kind is OutcomeKind.SNOOZED and state is not TaskState.DEAD:
                counts.snoozed += 1  # waits unspent; a snooze past max_snoozes is dead
                if state is TaskState.EXPIRED:
                    counts.expired += 1  # snoozed past its deadline
            else:  # a failed attempt: retried (scheduled or pending), dead, or expired
                counts.failed += 1
                if report.kind is OutcomeKind.TIMED_OUT:
                    counts.timed_out += 1
                if state is TaskState.DEAD:
                    counts.dead += 1
                    log.error(
                        "task %s dead-lettered after attempt %d: %s",
                        report.task_id,
                        report.attempt,
                        report.error,
                        extra={
                            "task_id": report.task_id,
                            "task_type": counts.type,
                            "attempt": report.attempt,
                            "worker_id": self.worker_id,
                        },
                    )
                elif state is TaskState.EXPIRED:
                    counts.expired += 1  # its retry would have started after its deadline
                else:
                    counts.retried += 1
