"""Running one claimed task: its processor called inside a cancel scope of its own.

The scope's deadline is the task's timeout or the end of its lease as this worker knows it,
whichever comes first, and :meth:`Running.stop` cancels it early (a cancel request, a lease
the heartbeat reports lost, the end of the drain), so every way a task can end is the
processor's call being cancelled at its next checkpoint, or returning or raising first.

Why the lease is a deadline here: a worker whose process was stalled (SIGSTOP, a VM pause, an
event loop blocked) past its lease may find, when it resumes, that another worker already
runs its tasks. trio expires the deadlines that passed before it runs any task again, so a
body whose lease lapsed is cancelled at its next checkpoint instead of finishing a second
run, and a task whose lease lapsed while it waited for a slot is not started at all. Each
successful heartbeat moves the deadline on (:meth:`Running.extend`).
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from typing import Any

import pluggy
import trio

from taskqueue import _json, tracing
from taskqueue.errors import PermanentError, ResultTooLargeError
from taskqueue.logs import reset_log_context, set_log_context
from taskqueue.metrics import TaskCounts
from taskqueue.models import ClaimedTask
from taskqueue.outcomes import Outcome, OutcomeKind, Snooze, clipped_error
from taskqueue.processors import ProcessorRegistry, TaskContext
from taskqueue.redis import Redis

log = logging.getLogger(__name__)
task_log = logging.getLogger("taskqueue.task")

#: A progress update as the broker writes it: (task id, attempt, progress as JSON).
ProgressUpdate = tuple[str, int, str]
#: Queues a task's progress update under its id, replacing one not written yet.
PutProgress = Callable[[str, ProgressUpdate], None]


class Running:
    """A claimed task from its claim until its outcome is queued for reporting."""

    __slots__ = ("counts", "lease_until", "scope", "started", "stop_reason", "task", "timeout_at")

    def __init__(
        self, task: ClaimedTask, counts: TaskCounts, lease_until: float = math.inf
    ) -> None:
        self.task = task
        #: The counters of its type and priority.
        self.counts = counts
        #: When (trio time) its lease may run out, unless a heartbeat extends it first.
        self.lease_until = lease_until
        #: When (trio time) it times out, once started.
        self.timeout_at = math.inf
        self.scope: trio.CancelScope | None = None
        #: Handed to its processor (a task stopped before that is finished unrun).
        self.started = False
        #: Why it was stopped before its processor returned: the kind it ends with.
        self.stop_reason: OutcomeKind | None = None

    def extend(self, lease_until: float) -> None:
        """A heartbeat renewed the lease: it may run out at ``lease_until`` now."""
        self.lease_until = lease_until
        if self.scope is not None:
            self.scope.deadline = min(self.timeout_at, lease_until)

    def stop(self, reason: OutcomeKind) -> None:
        """Cancel the processor's call; the first reason given is the one that counts."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.scope is not None:
            self.scope.cancel()


class TaskRunner:
    """Calls the processors of claimed tasks: what a slot does with each task it takes."""

    def __init__(
        self,
        registry: ProcessorRegistry,
        *,
        worker_id: str,
        put_progress: PutProgress,
        hook_started: pluggy.HookCaller | None = None,
        redis: Redis | None = None,
        max_result_bytes: int = 2**20,
    ) -> None:
        self.registry = registry
        self.worker_id = worker_id
        self.redis = redis
        self.max_result_bytes = max_result_bytes
        self._put_progress = put_progress
        self._hook_started = hook_started

    async def run(self, running: Running) -> Outcome:
        """Run the task to its outcome. Never raises: a processor's exception is a failed
        outcome, and the cancellation of its scope is caught here (only a cancellation from
        outside, the consumer itself being cancelled, propagates). With OpenTelemetry
        installed, the attempt is a consumer span (:mod:`taskqueue.tracing`)."""
        if tracing.processing is None:
            return await self._run(running)
        with tracing.processing(running.task, self.worker_id) as ended:
            outcome = await self._run(running)
            ended(outcome)
            return outcome

    async def _run(self, running: Running) -> Outcome:
        task = running.task
        spec = self.registry[task.type]
        timeout = task.timeout_ms / 1000
        now = trio.current_time()
        if now >= running.lease_until:
            log.warning(
                "not starting task %s: its lease ran out %.3fs ago while it waited (this "
                "worker was stalled); another worker may have it",
                task.id,
                now - running.lease_until,
            )
            return Outcome(kind=OutcomeKind.LOST, duration_s=0.0)
        if task.expires_ms is not None and time.time() * 1000 >= task.expires_ms:
            # It waited for a slot (prefetched) past its deadline: released unrun, which
            # ends it expired in Redis (whose clock decides: a slower one has it run again).
            log.info("not starting task %s: its deadline passed while it waited", task.id)
            return Outcome(kind=OutcomeKind.INTERRUPTED, duration_s=0.0)
        running.started = True
        wait = time.time() - task.ready_ms * 0.001
        running.counts.wait.observe(wait if wait > 0.0 else 0.0)  # 0 if the clocks disagree
        running.timeout_at = now + timeout
        running.scope = scope = trio.CancelScope(
            deadline=min(running.timeout_at, running.lease_until)
        )
        if self._hook_started is not None:
            call_observer(self._hook_started, task=task, worker_id=self.worker_id)
        log_token = set_log_context(
            {
                "task_id": task.id,
                "task_type": task.type,
                "attempt": task.attempt,
                "worker_id": self.worker_id,
            }
        )
        put_progress = self._put_progress
        max_result_bytes = self.max_result_bytes

        async def progress(value: Any) -> None:
            # Encoded here, so that a value JSON cannot hold, or too large a one, fails the
            # processor's call rather than the writer's batch.
            try:
                encoded = _json.dumps(value)
            except TypeError as exc:
                raise TypeError(f"the progress report is {exc}") from None
            check_size("progress report", encoded, max_result_bytes)
            put_progress(task.id, (task.id, task.attempt, encoded))
            # A checkpoint, so that a processor reporting in a loop lets the writer run.
            await trio.lowlevel.checkpoint()

        try:
            ctx = TaskContext(
                task,
                worker_id=self.worker_id,
                logger=task_log,
                progress=progress,
                redis=self.redis,
            )
            start = time.perf_counter()
            returned = False
            try:
                with scope:
                    if spec.is_async:
                        result = await spec.func(ctx)
                    else:
                        result = await trio.to_thread.run_sync(
                            spec.func, ctx, abandon_on_cancel=True
                        )
                    returned = True
                # A processor that swallowed the cancellation and returned anyway still timed
                # out (or was stopped): its result does not count.
                if returned and not scope.cancel_called:
                    if isinstance(result, Snooze):
                        return _snoozed(task, result, time.perf_counter() - start)
                    try:
                        encoded = _json.dumps(result)
                    except TypeError as exc:
                        raise TypeError(f"the processor's result is {exc}") from None
                    check_size("result", encoded, max_result_bytes)
                    return Outcome(
                        kind=OutcomeKind.SUCCEEDED,
                        duration_s=time.perf_counter() - start,
                        result=encoded,
                    )
            except Snooze as snooze:
                # Also when it was being stopped: a cancelled task's report ends it cancelled
                # whatever its kind (finish.lua), and a snooze past the timeout is a snooze.
                return _snoozed(task, snooze, time.perf_counter() - start)
            except Exception as exc:
                duration = time.perf_counter() - start
                permanent = isinstance(exc, PermanentError)
                # Clipped once, for the log line too: an exception's text may be huge.
                error = clipped_error(f"{type(exc).__name__}: {exc}")
                task_log.warning(
                    "task %s (%s) attempt %d failed%s: %s",
                    task.id,
                    task.type,
                    task.attempt,
                    " for good (PermanentError: no retry)" if permanent else "",
                    error,
                )
                return Outcome(
                    kind=OutcomeKind.REJECTED if permanent else OutcomeKind.FAILED,
                    duration_s=duration,
                    error=error,
                    traceback=traceback.format_exc(),
                )
            duration = time.perf_counter() - start
            if running.stop_reason is None and trio.current_time() >= running.lease_until:
                task_log.warning(
                    "task %s (%s) attempt %d stopped: its lease ran out (this worker was "
                    "stalled or could not reach Redis); another worker may run it",
                    task.id,
                    task.type,
                    task.attempt,
                )
                return Outcome(kind=OutcomeKind.LOST, duration_s=duration)
            if running.stop_reason is None:
                task_log.warning(
                    "task %s (%s) attempt %d timed out after %gs",
                    task.id,
                    task.type,
                    task.attempt,
                    timeout,
                )
                return Outcome(
                    kind=OutcomeKind.TIMED_OUT,
                    duration_s=duration,
                    error=f"timed out after {timeout:g}s",
                )
            return Outcome(kind=running.stop_reason, duration_s=duration)
        finally:
            reset_log_context(log_token)


def _snoozed(task: ClaimedTask, snooze: Snooze, duration: float) -> Outcome:
    task_log.info(
        "task %s (%s) attempt %d snoozed for %gs", task.id, task.type, task.attempt, snooze.delay
    )
    return Outcome(kind=OutcomeKind.SNOOZED, duration_s=duration, snooze_s=snooze.delay)


def check_size(what: str, encoded: str, limit: int) -> None:
    """Raise :class:`ResultTooLargeError` if ``encoded`` takes more than ``limit`` bytes."""
    # A character takes at most 4 bytes: most results are decided without encoding them.
    if len(encoded) * 4 > limit and (size := len(encoded.encode())) > limit:
        raise ResultTooLargeError(
            f"the {what} is {size} bytes of JSON, over task.max_result_bytes ({limit})"
        )


def call_observer(hook: pluggy.HookCaller, **kwargs: Any) -> None:
    """Call an observer hook; its failure is logged, never allowed to fail a task or the daemon."""
    try:
        hook(**kwargs)
    except Exception:
        log.exception("a taskqueue_task_started/finished hook implementation raised")
