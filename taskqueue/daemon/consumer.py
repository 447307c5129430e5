"""The consumer: claims tasks in batches and runs each in its own cancel scope.

Shape (see DESIGN.md for the measurements behind it): one claim loop leases batches of tasks
into a memory channel; ``concurrency`` long-lived slot tasks take them one at a time, each run
inside a cancel scope whose deadline is the task's timeout; outcomes go to a list that one
report loop writes to Redis in batches, so a burst of short tasks costs one round trip per
batch, not per task.

Lifecycle of one claimed task inside this process, and who may end it early:

- ``request_cancel``: the user asked; the task ends ``cancelled``.
- ``lease_lost``: the heartbeat found another worker owns it now; it is stopped and nothing is
  reported (any report would be rejected as stale anyway).
- shutdown (:meth:`Consumer.stop` then the drain deadline): tasks not started yet, and those
  still running at the deadline, are ``released``: back to the front of their queue, the
  attempt not spent.

Metrics: each claimed task carries the :class:`~taskqueue.metrics.TaskCounts` of its type and
priority; the slot observes its wait and run time, and the report loop counts the outcome from
the state ``finish.lua`` answered (retried, dead-lettered, cancelled …), so the counters agree
with Redis. That is a few integer increments per task, nothing that locks or looks up labels.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Sequence
from typing import Any

import pluggy
import trio

from taskqueue import _json
from taskqueue.broker import Broker, Report
from taskqueue.daemon.health import Health, RedisGuard
from taskqueue.errors import PermanentError
from taskqueue.logs import reset_log_context, set_log_context
from taskqueue.metrics import Metrics, TaskCounts
from taskqueue.models import ClaimedTask, TaskState
from taskqueue.outcomes import Outcome, OutcomeKind
from taskqueue.processors import ProcessorRegistry, TaskContext

log = logging.getLogger(__name__)
task_log = logging.getLogger("taskqueue.task")

#: How long an idle consumer waits for a wake-up before it claims anyway: a safety net for a
#: lost pub/sub message, not the way work is found.
IDLE_RECHECK = 1.0
#: How long a stopping consumer keeps trying to record its last outcomes when Redis is down.
FINAL_REPORT_TIMEOUT = 10.0


class _Running:
    """A claimed task from its claim until its outcome is queued for reporting."""

    __slots__ = ("counts", "scope", "started", "stop_reason", "task")

    def __init__(self, task: ClaimedTask, counts: TaskCounts) -> None:
        self.task = task
        self.counts = counts
        self.scope: trio.CancelScope | None = None
        self.started = False
        #: Why it was stopped before its processor returned: the kind it ends with.
        self.stop_reason: OutcomeKind | None = None

    def stop(self, reason: OutcomeKind) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.scope is not None:
            self.scope.cancel()


class Consumer:
    def __init__(
        self,
        broker: Broker,
        registry: ProcessorRegistry,
        *,
        worker_id: str,
        health: Health,
        task_types: Sequence[str] | None = None,
        concurrency: int = 50,
        prefetch: int = 50,
        drain_timeout: float = 30.0,
        hooks: pluggy.HookRelay | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.worker_id = worker_id
        self.health = health
        self.task_types = list(task_types if task_types is not None else registry.task_types)
        self._type_set = frozenset(self.task_types)
        self.concurrency = concurrency
        self.capacity = concurrency + prefetch
        # With prefetch, wait until a useful batch of capacity is free before claiming:
        # the prefetched tasks keep the slots busy meanwhile.
        self.claim_threshold = max(1, prefetch // 2)
        self.drain_timeout = drain_timeout
        self._hook_started = None
        self._hook_finished = None
        if hooks is not None:
            if hooks.taskqueue_task_started.get_hookimpls():
                self._hook_started = hooks.taskqueue_task_started
            if hooks.taskqueue_task_finished.get_hookimpls():
                self._hook_finished = hooks.taskqueue_task_finished

        self.metrics = metrics if metrics is not None else Metrics(process_metrics=False)
        self.running: dict[str, _Running] = {}
        self.processed = 0
        self.failed = 0
        self._send, self._receive = trio.open_memory_channel[ClaimedTask](math.inf)
        self._reports: list[Report] = []
        # Beside each queued report: the counters of its task and how the attempt ended.
        self._report_counts: list[tuple[TaskCounts, OutcomeKind]] = []
        self._reports_ready = trio.Event()
        self._wake = trio.Event()
        self._capacity_freed = trio.Event()
        self._drained = trio.Event()
        self._reports_flushed = trio.Event()
        self._stopping = False
        self._done_reporting = False
        # The newest progress each running task reported, by id, not written yet: a processor
        # reporting in a tight loop costs one write per round trip, not one per call.
        self._progress_pending: dict[str, tuple[int, Any]] = {}
        self._progress_ready = trio.Event()

    # -- called by other services ----------------------------------------------------------

    def wake(self, task_types: frozenset[str] | None) -> None:
        """Tasks of ``task_types`` (None: of any type) may have become pending."""
        if task_types is None or not self._type_set.isdisjoint(task_types):
            self._wake.set()

    def request_cancel(self, worker_id: str, task_id: str) -> None:
        if worker_id == self.worker_id and (running := self.running.get(task_id)):
            log.info("cancelling task %s at request", task_id)
            self._stop(running, OutcomeKind.CANCELLED)

    def lease_lost(self, task_ids: Sequence[str]) -> None:
        for task_id in task_ids:
            if running := self.running.get(task_id):
                log.warning(
                    "lost the lease of task %s (another worker has it); stopping it", task_id
                )
                self._stop(running, OutcomeKind.LOST)

    def leases(self) -> list[tuple[str, int]]:
        """(id, attempt) of every task this consumer holds, for the heartbeat to extend."""
        return [(r.task.id, r.task.attempt) for r in self.running.values()]

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def in_flight(self) -> int:
        return len(self.running)

    def stop(self) -> None:
        """Stop claiming and start the drain; :meth:`run` returns once it is over."""
        if self._stopping:
            return
        self._stopping = True
        for running in list(self.running.values()):
            if not running.started:
                self._stop(running, OutcomeKind.INTERRUPTED)
        self._wake.set()
        self._capacity_freed.set()
        self._check_drained()

    def end_drain(self) -> None:
        """Cut the drain short: interrupt whatever still runs (the second SIGTERM)."""
        self.stop()
        self._drained.set()

    # -- the service -----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run tasks until :meth:`stop`, then drain and report every outcome."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._report_loop)
            progress = trio.CancelScope()
            nursery.start_soon(self._progress_loop, progress)
            async with trio.open_nursery() as slots:
                for _ in range(self.concurrency):
                    slots.start_soon(self._slot)
                await self._claim_loop()
                await self._drain()
                self._send.close()
            progress.cancel()  # progress of tasks that have ended means nothing any more
            self._done_reporting = True
            self._reports_ready.set()
            with trio.move_on_after(FINAL_REPORT_TIMEOUT):
                await self._reports_flushed.wait()
            if self._reports:
                log.error(
                    "Redis unreachable at shutdown: %d outcome(s) not recorded; their leases "
                    "will expire and the tasks run again",
                    len(self._reports),
                )
                nursery.cancel_scope.cancel()

    async def _claim_loop(self) -> None:
        guard = RedisGuard(self.health)
        while not self._stopping:
            free = self.capacity - len(self.running)
            if free < self.claim_threshold and self.running:
                self._capacity_freed = trio.Event()
                await self._capacity_freed.wait()
                continue
            wake = self._wake = trio.Event()
            claimed: list[ClaimedTask] = []
            async with guard:
                claimed = await self.broker.claim(self.worker_id, self.task_types, free)
            task_counts = self.metrics.task_counts
            for task in claimed:
                counts = task_counts(task.type, task.priority)
                self.running[task.id] = running = _Running(task, counts)
                if self.stopping:
                    # Claimed while the stop came: give it back untouched.
                    self._stop(running, OutcomeKind.INTERRUPTED)
                else:
                    self._send.send_nowait(task)
            if not claimed:
                with trio.move_on_after(IDLE_RECHECK):
                    await wake.wait()

    async def _drain(self) -> None:
        self._check_drained()
        with trio.move_on_after(self.drain_timeout):
            await self._drained.wait()
        if self.running:
            log.warning(
                "drain over: interrupting %d running task(s); they go back to the queue",
                len(self.running),
            )
        for running in list(self.running.values()):
            self._stop(running, OutcomeKind.INTERRUPTED)

    def _check_drained(self) -> None:
        if self._stopping and all(not r.started or r.stop_reason for r in self.running.values()):
            self._drained.set()

    # -- running one task ------------------------------------------------------------------

    def _stop(self, running: _Running, reason: OutcomeKind) -> None:
        """Stop a claimed task. A running one is cancelled through its scope and its slot
        finishes it; one still waiting for a slot is finished here and now, so that a cancel
        (or a release at shutdown) does not wait behind the tasks ahead of it."""
        running.stop(reason)
        if not running.started and self.running.get(running.task.id) is running:
            self._finish(running, Outcome(kind=reason, duration_s=0.0))

    def _finish(self, running: _Running, outcome: Outcome) -> None:
        """The attempt is over on this worker: forget the task and queue its outcome."""
        task = running.task
        if self.running.get(task.id) is running:  # not a newer claim of the same task
            del self.running[task.id]
        if running.started:
            running.counts.duration.observe(outcome.duration_s)
        if running.stop_reason is not OutcomeKind.LOST:
            self._queue_report(running, outcome)
        if self._hook_finished is not None:
            _call_observer(
                self._hook_finished, task=task, outcome=outcome, worker_id=self.worker_id
            )
        if self.capacity - len(self.running) >= self.claim_threshold:
            self._capacity_freed.set()
        if self._stopping:
            self._check_drained()

    async def _slot(self) -> None:
        async for task in self._receive:
            running = self.running.get(task.id)
            if running is None or running.task is not task:
                continue  # stopped while it waited for a slot: already finished
            self._finish(running, await self._execute(task, running))

    async def _execute(self, task: ClaimedTask, running: _Running) -> Outcome:
        spec = self.registry[task.type]
        timeout = task.timeout_ms / 1000
        running.started = True
        wait = time.time() - task.ready_ms * 0.001
        running.counts.wait.observe(wait if wait > 0.0 else 0.0)  # 0 if the clocks disagree
        running.scope = scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        if self._hook_started is not None:
            _call_observer(self._hook_started, task=task, worker_id=self.worker_id)
        log_token = set_log_context(
            {
                "task_id": task.id,
                "task_type": task.type,
                "attempt": task.attempt,
                "worker_id": self.worker_id,
            }
        )
        try:
            ctx = TaskContext(
                task,
                worker_id=self.worker_id,
                logger=task_log,
                progress=lambda value: self._progress(task, value),
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
                    try:
                        encoded = _json.dumps(result)
                    except TypeError as exc:
                        raise TypeError(f"the processor's result is {exc}") from None
                    return Outcome(
                        kind=OutcomeKind.SUCCEEDED,
                        duration_s=time.perf_counter() - start,
                        result=encoded,
                    )
            except Exception as exc:
                duration = time.perf_counter() - start
                permanent = isinstance(exc, PermanentError)
                task_log.warning(
                    "task %s (%s) attempt %d failed%s: %s: %s",
                    task.id,
                    task.type,
                    task.attempt,
                    " for good (PermanentError: no retry)" if permanent else "",
                    type(exc).__name__,
                    exc,
                )
                return Outcome(
                    kind=OutcomeKind.REJECTED if permanent else OutcomeKind.FAILED,
                    duration_s=duration,
                    error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(),
                )
            duration = time.perf_counter() - start
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

    async def _progress(self, task: ClaimedTask, value: Any) -> None:
        """Queue ``value`` as the task's progress (replacing one not written yet)."""
        self._progress_pending[task.id] = (task.attempt, value)
        self._progress_ready.set()
        await trio.lowlevel.checkpoint()

    async def _progress_loop(self, scope: trio.CancelScope) -> None:
        """Write the queued progress of every task in one round trip, as often as Redis takes
        it. Progress is advisory: a write that fails is retried only if nothing newer came."""
        guard = RedisGuard(self.health, maximum=0.5)
        with scope:
            while True:
                await self._progress_ready.wait()
                self._progress_ready = trio.Event()
                batch, self._progress_pending = self._progress_pending, {}
                written = False
                async with guard:
                    await self.broker.set_progress_many(
                        [(task_id, attempt, value) for task_id, (attempt, value) in batch.items()]
                    )
                    written = True
                if not written:
                    self._progress_pending = batch | self._progress_pending
                    self._progress_ready.set()

    # -- reporting -------------------------------------------------------------------------

    def _queue_report(self, running: _Running, outcome: Outcome) -> None:
        task = running.task
        kind = outcome.kind
        if kind is OutcomeKind.SUCCEEDED:
            self.processed += 1
            report = Report(
                task_id=task.id, attempt=task.attempt, kind=kind, result_json=outcome.result
            )
        elif kind is OutcomeKind.CANCELLED:
            report = Report(
                task_id=task.id, attempt=task.attempt, kind=kind, error="cancelled at request"
            )
        elif kind is OutcomeKind.INTERRUPTED:
            report = Report(task_id=task.id, attempt=task.attempt, kind=kind)
        else:
            self.failed += 1
            report = Report(
                task_id=task.id,
                attempt=task.attempt,
                kind=kind,
                error=outcome.error or "",
                traceback=outcome.traceback or "",
            )
        self._reports.append(report)
        self._report_counts.append((running.counts, kind))
        self._reports_ready.set()

    async def _report_loop(self) -> None:
        """Write queued outcomes to Redis, everything queued so far in one round trip.

        While one batch is on its way, the next one gathers. When Redis is down the batch is
        kept and retried, so no outcome is dropped; only at shutdown does :meth:`run` give up
        after :data:`FINAL_REPORT_TIMEOUT` (then the leases expire and the tasks run again).
        """
        guard = RedisGuard(self.health)
        while True:
            await self._reports_ready.wait()
            self._reports_ready = trio.Event()
            while self._reports:
                batch, self._reports = self._reports, []
                counted, self._report_counts = self._report_counts, []
                states: list[TaskState | None] = []
                async with guard:
                    states = await self.broker.report(batch)
                if not states:
                    self._reports[:0] = batch
                    self._report_counts[:0] = counted
                    continue
                for report, state, (counts, kind) in zip(batch, states, counted, strict=True):
                    if state is TaskState.SUCCEEDED:
                        counts.processed += 1
                    elif state is TaskState.CANCELLED:
                        counts.cancelled += 1
                    elif state is None or kind is OutcomeKind.INTERRUPTED:
                        pass  # stale (another worker has it now), or released unspent
                    else:  # a failed attempt: retried (scheduled or pending) or dead
                        counts.failed += 1
                        if kind is OutcomeKind.TIMED_OUT:
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
                        else:
                            counts.retried += 1
            if self._done_reporting:
                self._reports_flushed.set()
                return


def _call_observer(hook: Any, **kwargs: Any) -> None:
    """Call an observer hook; its failure is logged, never allowed to fail a task or the daemon."""
    try:
        hook(**kwargs)
    except Exception:
        log.exception("a taskqueue_task_started/finished hook implementation raised")
