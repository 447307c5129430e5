"""The consumer service: the claim loop, the slots, the table of claimed tasks and the drain."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence

import pluggy
import trio

from taskqueue.broker import Broker
from taskqueue.broker.codec import hand_off_from_message
from taskqueue.daemon.consumer.reporting import Reported, Reporter, report_of
from taskqueue.daemon.consumer.slot import ProgressUpdate, Running, TaskRunner, call_observer
from taskqueue.daemon.consumer.writer import CoalescingWriter
from taskqueue.health import Health, RedisGuard
from taskqueue.metrics import Metrics
from taskqueue.models import Claim, ClaimedTask, HandOff
from taskqueue.outcomes import Outcome, OutcomeKind
from taskqueue.processors import ProcessorRegistry
from taskqueue.redis import Redis, RedisError

log = logging.getLogger(__name__)

#: How long an idle consumer waits for a wake-up before it claims anyway: a safety net for a
#: lost pub/sub message, not the way work is found.
IDLE_RECHECK = 1.0
#: How long a stopping consumer keeps trying to record its last outcomes when Redis is down.
FINAL_REPORT_TIMEOUT = 10.0
#: The share of the lease this worker trusts: the rest covers the clocks of other hosts, whose
#: reapers judge the lease by their own wall clock (at most :data:`MAX_LEASE_MARGIN` seconds).
LEASE_MARGIN = 0.1
MAX_LEASE_MARGIN = 1.0
#: How many recent hand-offs a consumer remembers, to take each once: one can reach it twice,
#: by its message and by a claim that ran before the message came. Told apart by token: the
#: same task at the same attempt comes again after a snooze or a release.
HAND_OFFS_REMEMBERED = 1024


class Consumer:
    """Claims tasks of ``task_types`` and runs up to ``concurrency`` of them at once, holding
    up to ``prefetch`` more claimed and waiting for a slot.

    As a daemon service it drains: it returns once stopped and every outcome is written. The
    daemon starts it last, once the heartbeat that keeps its leases alive runs.

    With ``hand_offs``, a claim that comes back short leaves the consumer registered for a
    hand-off: the next task of its types is leased to it where it is submitted and reaches it
    as a message (:meth:`receive_hand_off`, which the daemon's notifications call), one message
    instead of a wake-up and a claim. Without a subscriber the tasks would wait for the next
    claim, so only a consumer whose messages are delivered asks for them.
    """

    name = "consumer"
    drains = True

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
        hold_starts_after: float | None = None,
        redis: Redis | None = None,
        hand_offs: bool = False,
    ) -> None:
        """``redis`` is the client processors get as ``ctx.redis`` (default: the broker's)."""
        self.broker = broker
        self.registry = registry
        self.worker_id = worker_id
        self.health = health
        self.task_types = list(task_types if task_types is not None else registry.task_types)
        self._type_set = frozenset(self.task_types)
        self.concurrency = concurrency
        self.hand_offs = hand_offs
        #: The token of the last hand-off received, which the next claim says it has.
        self._last_hand_off = ""
        self._hand_offs_seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.capacity = concurrency + prefetch
        # With prefetch, wait until a useful batch of capacity is free before claiming:
        # the prefetched tasks keep the slots busy meanwhile.
        self.claim_threshold = max(1, prefetch // 2)
        self.drain_timeout = drain_timeout
        ttl = broker.settings.lease_ttl
        #: How long after a claim or heartbeat is sent its leases surely hold.
        self.lease_trust = ttl - min(MAX_LEASE_MARGIN, ttl * LEASE_MARGIN)
        #: How long without a word from Redis (a claim's or a heartbeat's reply, counted from
        #: when it was sent) before tasks waiting for a slot wait for the next word instead of
        #: starting (None: never). See :meth:`_in_touch`.
        self.hold_starts_after = hold_starts_after
        self._contact_at = -math.inf
        self._contact = trio.Event()
        self._hold_logged_for = -math.inf  # the last contact a hold was logged after
        hook_started: pluggy.HookCaller | None = None
        self._hook_finished: pluggy.HookCaller | None = None
        if hooks is not None:
            if hooks.taskqueue_task_started.get_hookimpls():
                hook_started = hooks.taskqueue_task_started
            if hooks.taskqueue_task_finished.get_hookimpls():
                self._hook_finished = hooks.taskqueue_task_finished

        self.metrics = metrics if metrics is not None else Metrics(process_metrics=False)
        #: Every task this consumer holds, by id: from its claim until its outcome is queued.
        self.running: dict[str, Running] = {}
        self.processed = 0
        self.failed = 0
        self._send, self._receive = trio.open_memory_channel[ClaimedTask](math.inf)
        self._reports = CoalescingWriter[Reported](
            Reporter(broker, worker_id, self.metrics).write, RedisGuard(health)
        )
        # Progress is advisory: retried after a failure only if nothing newer came, and
        # abandoned at the end (see run).
        self._progress = CoalescingWriter[ProgressUpdate](
            broker.set_progress_many, RedisGuard(health, maximum=0.5)
        )
        self._progress_scope = trio.CancelScope()
        self._runner = TaskRunner(
            registry,
            worker_id=worker_id,
            put_progress=self._progress.put,
            hook_started=hook_started,
            redis=redis if redis is not None else broker.redis,
            max_result_bytes=broker.settings.max_result_bytes,
        )
        self._wake = trio.Event()
        #: Set by a hand-off: the slot that next starts a task wakes the claim loop.
        self._claim_at_next_start = False
        self._capacity_freed = trio.Event()
        self._drained = trio.Event()
        self._stopping = False
        self._slots_closed = False

    # -- called by other services ----------------------------------------------------------

    def wake(self, task_types: frozenset[str] | None) -> None:
        """Tasks of ``task_types`` (None: of any type) may have become pending."""
        if task_types is None or not self._type_set.isdisjoint(task_types):
            self._wake.set()

    def receive_hand_off(self, message: str) -> None:
        """A task was handed off to this worker (a message on its channel): run it. Its lease
        began when the message was published, a moment ago."""
        hand_off = hand_off_from_message(message, self.broker.clock())
        task = hand_off.task
        if self._slots_closed:
            # Sent before this worker's registration ended, come after its drain: nothing can
            # run or report it now. Deregistering, the daemon gives it back (Broker.deregister).
            log.info("task %s was handed off to this worker after its drain", task.id)
            return
        if self._first_hand_off(hand_off):
            self._take(task, trio.current_time() + self.lease_trust)
            # Claim again (which registers this worker for the next hand-off) once a slot has
            # started it: sent now, the claim would go out ahead of the task's start.
            self._claim_at_next_start = True
        else:
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

    def leases_extended(
        self, leases: Sequence[tuple[str, int]], sent_at: float, lost: Sequence[str]
    ) -> None:
        """A heartbeat sent at ``sent_at`` (trio time) extended ``leases`` but ``lost``."""
        self._heard_from_redis(sent_at)
        until = sent_at + self.lease_trust
        gone = set(lost)
        for task_id, attempt in leases:
            running = self.running.get(task_id)
            if running is not None and running.task.attempt == attempt and task_id not in gone:
                running.extend(until)

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

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Claim and run tasks until :meth:`stop`, then drain and report every outcome."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reports.run)
            nursery.start_soon(self._write_progress)
            async with trio.open_nursery() as slots:
                for _ in range(self.concurrency):
                    slots.start_soon(self._slot)
                await self._claim_loop()
                await self._stop_hand_offs()
                await self._drain()
                self._send.close()
                self._slots_closed = True
            self._progress_scope.cancel()  # progress of tasks that have ended means nothing
            self._reports.close()
            with trio.move_on_after(FINAL_REPORT_TIMEOUT):
                await self._reports.wait_written()
            if unwritten := len(self._reports):
                log.error(
                    "Redis unreachable at shutdown: %d outcome(s) not recorded; their leases "
                    "will expire and the tasks run again",
                    unwritten,
                )
                nursery.cancel_scope.cancel()

    async def _claim_loop(self) -> None:
        """Claim whenever enough capacity is free, until :meth:`stop`. Cancellation points:
        waiting for capacity, the claim's round trip, and waiting for a wake-up once a claim
        came back short of what it asked for."""
        guard = RedisGuard(self.health)
        while not self._stopping:
            free = self.capacity - len(self.running)
            if free < self.claim_threshold and self.running:
                self._capacity_freed = trio.Event()
                await self._capacity_freed.wait()
                continue
            wake = self._wake = trio.Event()
            claim = Claim([])
            lease_until = trio.current_time() + self.lease_trust
            hand_offs = self._last_hand_off if self.hand_offs else None
            async with guard:
                claim = await self.broker.claim_batch(
                    self.worker_id, self.task_types, free, hand_offs=hand_offs
                )
            self._heard_from_redis(lease_until - self.lease_trust)
            claimed = claim.tasks
            for hand_off in claim.handed:  # its message may have been lost
                if self._first_hand_off(hand_off):
                    self._take(hand_off.task, lease_until)
            for task in claimed:
                self._take(task, lease_until)
            if claim.held_until_ms is not None:
                # A rate limit held tasks back: claim again when it lets one start (or sooner,
                # when other work arrives), not before; claiming at once would only spin.
                held_for = (claim.held_until_ms - self.broker.clock()) / 1000
                with trio.move_on_after(min(max(held_for, 0.0), IDLE_RECHECK)):
                    await wake.wait()
            elif len(claimed) < free:
                # The queues had no more: anything claimable from now on publishes a wake-up,
                # and ``wake`` was armed before the claim went out, so none is missed. Asking
                # again at once would only cost a round trip, ahead of starting these tasks.
                with trio.move_on_after(IDLE_RECHECK):
                    await wake.wait()

    async def _stop_hand_offs(self) -> None:
        """Stopping: end this worker's registration for hand-offs, so that no more tasks come
        to it only to go back (if Redis is away, the reaper ends it with the worker)."""
        if not self.hand_offs:
            return
        with trio.move_on_after(FINAL_REPORT_TIMEOUT):
            try:
                await self.broker.stop_hand_offs(self.worker_id)
            except RedisError as exc:
                log.info("could not end this worker's hand-offs (%s); the reaper will", exc)

    def _take(self, task: ClaimedTask, lease_until: float) -> None:
        """Hold a task leased to this worker until ``lease_until`` (trio time), and send it to
        the slots."""
        counts = self.metrics.task_counts(task.type, task.priority)
        self.running[task.id] = running = Running(task, counts, lease_until)
        if self.stopping:
            # Leased while the stop came: give it back untouched.
            self._stop(running, OutcomeKind.INTERRUPTED)
        else:
            self._send.send_nowait(task)

    def _first_hand_off(self, hand_off: HandOff) -> bool:
        """Whether this is the first time ``hand_off`` reaches us; the next claim says we
        have it."""
        self._last_hand_off = hand_off.token
        lease = (hand_off.task.id, hand_off.token)
        seen = self._hand_offs_seen
        if lease in seen:
            return False
        seen[lease] = None
        if len(seen) > HAND_OFFS_REMEMBERED:
            seen.popitem(last=False)
        return True

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

    # -- one task --------------------------------------------------------------------------

    async def _slot(self) -> None:
        """Run claimed tasks one at a time until the channel closes at the end of the drain."""
        run = self._runner.run
        async for task in self._receive:
            if self._claim_at_next_start:
                # The claim loop runs at this slot's first checkpoint: after the task started.
                self._claim_at_next_start = False
                self._wake.set()
            running = self.running.get(task.id)
            if running is None or running.task is not task:
                continue  # stopped while it waited for a slot: already finished
            hold = self.hold_starts_after
            if hold is not None and trio.current_time() - self._contact_at > hold:
                await self._in_touch(running)  # rare: only while Redis is silent
                if self.running.get(task.id) is not running:
                    continue  # stopped (cancelled, drained) while it was held
            self._finish(running, await run(running))

    def _heard_from_redis(self, sent_at: float) -> None:
        """A reply came to a command sent at ``sent_at``: Redis and this worker are in touch."""
        if sent_at > self._contact_at:
            self._contact_at = sent_at
            self._contact.set()
            self._contact = trio.Event()

    async def _in_touch(self, running: Running) -> None:
        """Hold ``running``'s start while this worker has heard nothing from Redis for longer
        than :attr:`hold_starts_after`, until it hears again or the lease runs out (then the
        runner does not start it).

        Why: a worker cut off from Redis still holds its leases for a while, but a body it
        starts then would most likely finish unreported, and run again on the worker that
        takes the task over. Healthy heartbeats keep the last word younger than two of their
        intervals, so nothing waits here unless replies stop coming.
        """
        assert self.hold_starts_after is not None
        while trio.current_time() - self._contact_at > self.hold_starts_after:
            if trio.current_time() >= running.lease_until:
                return
            if self._hold_logged_for != self._contact_at:  # once per silence
                self._hold_logged_for = self._contact_at
                log.warning(
                    "no reply from Redis for %.1fs: starting no task until it answers (a "
                    "task whose lease runs out meanwhile is left to the worker that takes it)",
                    trio.current_time() - self._contact_at,
                )
            with trio.move_on_at(running.lease_until):
                await self._contact.wait()

    def _stop(self, running: Running, reason: OutcomeKind) -> None:
        """Stop a claimed task. A running one is cancelled through its scope and its slot
        finishes it; one still waiting for a slot is finished here and now, so that a cancel
        (or a release at shutdown) does not wait behind the tasks ahead of it."""
        running.stop(reason)
        if not running.started and self.running.get(running.task.id) is running:
            self._finish(running, Outcome(kind=reason, duration_s=0.0))

    def _finish(self, running: Running, outcome: Outcome) -> None:
        """The attempt is over on this worker: forget the task and queue its outcome."""
        task = running.task
        if self.running.get(task.id) is running:  # not a newer claim of the same task
            del self.running[task.id]
        if running.started:
            running.counts.duration.observe(outcome.duration_s)
        if outcome.kind is OutcomeKind.LOST or running.stop_reason is OutcomeKind.LOST:
            self.metrics.lease_lost(started=running.started)  # another worker has it: no report
        else:
            kind = outcome.kind
            if kind is OutcomeKind.SUCCEEDED:
                self.processed += 1
            elif kind is not OutcomeKind.CANCELLED and kind is not OutcomeKind.INTERRUPTED:
                self.failed += 1
            self._reports.append((report_of(task, outcome), running.counts))
        if self._hook_finished is not None:
            call_observer(self._hook_finished, task=task, outcome=outcome, worker_id=self.worker_id)
        if self.capacity - len(self.running) >= self.claim_threshold:
            self._capacity_freed.set()
        if self._stopping:
            self._check_drained()

    # -- progress --------------------------------------------------------------------------

    async def _write_progress(self) -> None:
        with self._progress_scope:
            await self._progress.run()
