"""The schedule runner: submits the tasks of periodic schedules when their ticks come.

Every daemon may run one; they need not agree on anything but the clock. Each round reads the
due schedules in one script, submits one task per firing in one batch, and records the firings
in a second script that compares and sets each schedule's next run, so only one runner's
record of a tick counts. The submitted task's idempotency key is ``schedule:<name>:<tick>``: a
runner that lost the race submitted nothing new, and a runner that died between the two steps
leaves a tick whose task the next runner finds already there.

At start, it writes the config file's ``[[schedules]]`` to Redis (an unchanged definition keeps
its next run, so restarts move no tick).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from taskqueue.broker import Broker, Submission, Submitted
from taskqueue.broker.schedule_operations import DueSchedule, Fired
from taskqueue.errors import TaskQueueError
from taskqueue.health import Health, RedisGuard
from taskqueue.schedules import ScheduleSpec, firing

log = logging.getLogger("taskqueue.schedules")

#: Schedules fired per round.
FIRE_BATCH = 100
#: The longest it sleeps: a schedule created or resumed elsewhere is seen within this.
IDLE_SLEEP = 1.0


def tick_key(name: str, tick_ms: int) -> str:
    """The idempotency key of the task a schedule submits for one tick."""
    return f"schedule:{name}:{tick_ms}"


class ScheduleRunner:
    name = "schedules"
    drains = False

    def __init__(
        self, broker: Broker, *, health: Health, configured: Sequence[ScheduleSpec] = ()
    ) -> None:
        self.broker = broker
        self.health = health
        self.configured = tuple(configured)
        #: Firings this runner recorded (a tick another runner recorded is not counted).
        self.fired = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        guard = RedisGuard(self.health)
        task_status.started()
        synced = not self.configured
        while True:
            async with guard:
                if not synced:
                    await self.write_configured()
                    synced = True
                delay = await self.fire_due()
                guard.succeeded()
                await trio.sleep(delay)

    async def write_configured(self) -> None:
        for spec in self.configured:
            outcome = await self.broker.put_schedule(spec)
            if outcome != "unchanged":
                log.info("schedule %s %s from the config file: %s", spec.name, outcome, spec.timing)

    async def fire_due(self) -> float:
        """Fire what is due; how long to wait before the next round (seconds)."""
        due = await self.broker.due_schedules(FIRE_BATCH)
        if due.due:
            await self._fire(due.due)
            if len(due.due) >= FIRE_BATCH:
                return 0.0
        if due.next_run_ms is None:
            return IDLE_SLEEP
        return min(IDLE_SLEEP, max(0.0, (due.next_run_ms - self.broker.clock()) / 1000))

    async def _fire(self, due: Sequence[DueSchedule]) -> None:
        now = self.broker.clock()
        plans = [(d, firing(d.spec, d.due_ms, now)) for d in due]
        to_submit = [(d, plan.tick) for d, plan in plans if plan.tick is not None]
        outcomes = await self._submit(
            [
                Submission(
                    type=d.spec.type,
                    payload=d.spec.payload,
                    priority=d.spec.priority,
                    max_retries=d.spec.max_retries,
                    timeout=d.spec.timeout,
                    idempotency_key=tick_key(d.spec.name, tick),
                )
                for d, tick in to_submit
            ]
        )
        by_name = {
            d.spec.name: outcome for (d, _), outcome in zip(to_submit, outcomes, strict=True)
        }
        fired = []
        for d, plan in plans:
            outcome = by_name.get(d.spec.name)
            submitted = outcome if isinstance(outcome, Submitted) else None
            fired.append(
                Fired(
                    name=d.spec.name,
                    due_ms=d.due_ms,
                    next_run_ms=plan.next_run,
                    tick_ms=plan.tick,
                    task_id=submitted.id if submitted else None,
                    passed=plan.passed,
                    error=outcome if isinstance(outcome, str) else None,
                )
            )
        won = await self.broker.fire_schedules(fired)
        for record, recorded in zip(fired, won, strict=True):
            if recorded:
                self.fired += record.task_id is not None
                _log_firing(record)

    async def _submit(self, submissions: list[Submission]) -> list[Submitted | str]:
        """Each submission's task, or why it was refused (a refusal fails only its own)."""
        if not submissions:
            return []
        try:
            return list(await self.broker.enqueue_many(submissions))
        except TaskQueueError as refusal:
            if len(submissions) == 1:
                return [str(refusal)]
        results: list[Submitted | str] = []
        for submission in submissions:
            try:
                results.append(await self.broker.enqueue(submission))
            except TaskQueueError as refusal:
                results.append(str(refusal))
        return results


def _log_firing(record: Fired) -> None:
    extra = {"schedule": record.name, "task_id": record.task_id or ""}
    if record.error:
        log.warning("schedule %s submitted nothing: %s", record.name, record.error, extra=extra)
    elif record.task_id is None:
        log.info("schedule %s skipped %d missed tick(s)", record.name, record.passed, extra=extra)
    else:
        log.info("schedule %s fired task %s", record.name, record.task_id, extra=extra)
