"""A random walk through every broker operation, checked against a model after every step.

Hypothesis drives submits (of several types, priorities, delays, deadlines, idempotency keys
and fair share groups, debounced ones, and batches whose tasks depend on each other and on
earlier tasks in any state), claims, reports of every kind (some stale, snoozes among them),
heartbeats, the clock, the reaper, the scheduler, cancels, requeues and purges, under rate and
concurrency limits of types and of groups. After each step the storage invariants must hold
(:mod:`invariants`), and Redis must agree with a plain-Python model of the queue: every task's
state, attempt and snoozes (and what a blocked one waits for), a debounced task's payload, the
exact order of every ready list, the registered workers, the deadline index, and which records
exist at all.

Tasks with a deadline are never dependencies here: a task ended by its deadline at a claim
would release a run-anyway dependent that the same claim may lease, in an order of queues
that is the claim's to choose (tests/test_broker_deadlines.py covers expired dependencies).

Hypothesis' stateful rules are synchronous, so each step hands its coroutine to a trio loop
that runs on a thread of its own for the whole test (:class:`TrioThread`).
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import attrs
import pytest
import trio
import trio.lowlevel
from conftest import FakeClock
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from invariants import assert_invariants

from taskqueue.broker import Broker, BrokerSettings, Report, Retention, Submission
from taskqueue.errors import ConflictingStateError, TaskNotFoundError
from taskqueue.models import (
    PRIORITY_ORDER,
    Debounce,
    HandOff,
    Policy,
    Priority,
    TaskState,
    WorkerInfo,
)
from taskqueue.outcomes import OutcomeKind
from taskqueue.rates import parse_rate
from taskqueue.redis import Redis

T = TypeVar("T")

TYPES = ("a", "b", "c")
WORKERS = ("w1", "w2")
IDEMPOTENCY_KEYS = ("k1", "k2")
MAX_TASKS = 40
#: Ages and counts small enough that both limits come into play within a run.
RETENTION = Retention(
    succeeded=120.0,
    succeeded_max=6,
    cancelled=120.0,
    cancelled_max=4,
    expired=120.0,
    expired_max=3,
    dead=300.0,
    dead_max=3,
)
#: Few enough snoozes that a run meets the cap.
MAX_SNOOZES = 1
SETTINGS = BrokerSettings(
    lease_ttl=30.0,
    retry_base_delay=2.0,
    retry_max_delay=20.0,
    retention=RETENTION,
    max_snoozes=MAX_SNOOZES,
)
LEASE_MS = int(SETTINGS.lease_ttl * 1000)
KEPT: dict[TaskState, tuple[float, int]] = {
    TaskState.SUCCEEDED: (RETENTION.succeeded, RETENTION.succeeded_max),
    TaskState.CANCELLED: (RETENTION.cancelled, RETENTION.cancelled_max),
    TaskState.EXPIRED: (RETENTION.expired, RETENTION.expired_max),
    TaskState.DEAD: (RETENTION.dead, RETENTION.dead_max),
}

Queue = tuple[str, str, str]  # (priority, type, group): a ready list (group "": none)
#: (type, priority, delay, max_retries, idempotency key, seconds from its start to its
#: deadline).
SubmissionFields = tuple[str, Priority, int | None, int, str | None, int | None, str | None]
#: A timed-out attempt is a failed one: the two together weigh failures double; snoozes too.
KINDS = [
    OutcomeKind.SUCCEEDED,
    OutcomeKind.FAILED,
    OutcomeKind.TIMED_OUT,
    OutcomeKind.CANCELLED,
    OutcomeKind.INTERRUPTED,
    OutcomeKind.SNOOZED,
    OutcomeKind.SNOOZED,
]
#: How long a snooze waits, by the report's pick.
SNOOZES_MS = (0, 5_000, 60_000)


def submissions(min_size: int, max_size: int) -> st.SearchStrategy[list[SubmissionFields]]:
    """Batches of :data:`SubmissionFields`."""
    return st.lists(
        st.tuples(
            st.sampled_from(TYPES),
            st.sampled_from(list(Priority)),
            st.one_of(st.none(), st.none(), st.integers(0, 60)),
            st.sampled_from([0, 0, 1, 2]),
            st.one_of(st.none(), st.none(), st.sampled_from(IDEMPOTENCY_KEYS)),
            st.one_of(st.none(), st.none(), st.integers(1, 90)),
            st.sampled_from([None, None, "g1", "g2"]),
        ),
        min_size=min_size,
        max_size=max_size,
    )


@attrs.define
class ModelTask:
    id: str
    type: str
    priority: Priority
    max_retries: int
    state: TaskState
    attempt: int = 0
    worker: str | None = None
    lease_ms: int = 0
    ready_ms: int = 0
    finished_ms: int = 0
    cancel_requested: bool = False
    depends_on: list[str] = attrs.Factory(list)
    runs_anyway: bool = False
    #: While blocked: the dependencies it still waits for.
    waiting_for: list[str] = attrs.Factory(list)
    #: What the task was submitted with (its inputs, in the broker, once released).
    error: str | None = None
    #: Its deadline (ms), and whether the deadline index holds it: until it ends, or a sweep
    #: meets it running past its deadline.
    expires_ms: int | None = None
    indexed: bool = False
    snoozes: int = 0
    group: str = ""  # fair share: the group's list of its priority and type ("": none)
    #: A debounced task's payload (as its submissions left it) and when the first came.
    payload: Any = None
    debounce_first_ms: int = 0

    def past_deadline(self, start_ms: float) -> bool:
        """Whether it could not start at ``start_ms``: would_expire in _lib.lua."""
        return self.expires_ms is not None and start_ms >= self.expires_ms

    @property
    def queue(self) -> Queue:
        return (self.priority.value, self.type, self.group)


def _worker(worker_id: str, now_ms: int) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="h",
        pid=1,
        task_types=dict.fromkeys(TYPES, "test"),
        concurrency=4,
        in_flight=0,
        started_ms=now_ms,
        last_heartbeat_ms=now_ms,
    )


class TrioThread:
    """A trio loop on a thread of its own, for synchronous code to run coroutines in.

    Why not ``trio.run`` per step: a trio socket belongs to the run that opened it, so each
    step would need a new Redis connection, which costs more than the step itself.
    """

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._started.set()
        await self._stop.wait()

    def __enter__(self) -> TrioThread:
        self._thread.start()
        if not self._started.wait(timeout=10):
            raise RuntimeError("the trio thread did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=10)

    def run(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step()`` on the trio thread; its result, or its exception raised here."""
        return trio.from_thread.run(step, trio_token=self._token)


class BrokerMachine(RuleBasedStateMachine):
    #: Set by the test on a subclass: the trio thread, and a client of the test's server.
    trio_thread: TrioThread
    redis: Redis

    def __init__(self) -> None:
        super().__init__()
        self.run(lambda: self.redis.execute("FLUSHALL"))
        self.clock = FakeClock()
        self.broker = Broker(self.redis, SETTINGS, clock=self.clock, rng=random.Random(0))
        self.tasks: dict[str, ModelTask] = {}
        self.gone: list[str] = []  # ids purged or trimmed: unknown to the broker now
        self.queues: dict[Queue, list[str]] = {}
        self.idempotency: dict[str, str] = {}
        self.workers: dict[str, int] = {}
        #: Each limited type's (spacing ms or None, burst, concurrency or None), and when its
        #: rate lets the next task start (the model of claim.lua's GCRA).
        self.limits: dict[str, tuple[float | None, int, int | None]] = {}
        #: Each type's group concurrency limit (most active tasks per group), if it has one.
        self.group_limits: dict[str, int] = {}
        #: Each type's group rate limit (ms between a group's starts), if it has one, and
        #: until when each group that started a task under it rests.
        self.group_spacing: dict[str, float] = {}
        self.resting: dict[tuple[str, str], float] = {}
        self.next_start: dict[str, float] = {}
        #: (type, debounce key) -> the task its last creating submission made.
        self.debounced: dict[tuple[str, str], str] = {}
        #: Each task's dependents, in the order they were submitted.
        self.dependents: dict[str, list[str]] = {}
        #: Hand-offs: the types each worker waits for (its last claim with hand-offs came
        #: back short), and the last hand-off each worker was given: its token, the task and
        #: the attempt (the task may since have been handed to another worker).
        self.idle: dict[str, set[str]] = {}
        self.hand_offs_given: dict[str, tuple[str, str, int]] = {}

    # -- plumbing -----------------------------------------------------------------------

    def run(self, step: Callable[[], Awaitable[T]]) -> T:
        return self.trio_thread.run(step)

    def now(self) -> int:
        return self.clock()

    def pick(self, index: int, states: tuple[TaskState, ...] | None = None) -> str | None:
        ids = [i for i, t in self.tasks.items() if states is None or t.state in states]
        return ids[index % len(ids)] if ids else None

    def push(self, task: ModelTask, *, front: bool = False) -> None:
        queue = self.queues.setdefault(task.queue, [])
        if front:
            queue.insert(0, task.id)
        else:
            queue.append(task.id)

    def unqueue(self, task: ModelTask) -> None:
        self.queues[task.queue].remove(task.id)

    def finish(self, task: ModelTask, state: TaskState) -> None:
        """End ``task`` and settle its dependents, breadth first, as the scripts do: each one
        waiting for it is released by its last dependency, or cancelled by a failed one."""
        event(f"ended {state} from {task.state}")
        task.state, task.finished_ms, task.indexed = state, self.now(), False
        ended = [task]
        for parent in ended:
            for child_id in self.dependents.get(parent.id, []):
                child = self.tasks.get(child_id)
                if child is None or child.state is not TaskState.BLOCKED:
                    continue
                if parent.id not in child.waiting_for:
                    continue
                if parent.state is TaskState.SUCCEEDED or child.runs_anyway:
                    child.waiting_for.remove(parent.id)
                    if not child.waiting_for:
                        self.release(child)
                else:
                    child.state, child.finished_ms = TaskState.CANCELLED, self.now()
                    child.error = f"dependency {parent.id} ended {parent.state}"
                    child.indexed = False
                    ended.append(child)

    def release(self, task: ModelTask) -> None:
        """A task whose dependencies all ended: queued now, or at its delay's end."""
        if task.ready_ms > self.now():
            task.state = TaskState.SCHEDULED
        else:
            task.state = TaskState.PENDING
            self.push(task)

    def retry_or_pending(self, task: ModelTask, stored_state: TaskState, ready_ms: int) -> None:
        """A failed attempt with retries left: backoff in [0, cap), as the broker reported;
        expired instead if that start would come after its deadline."""
        base, most = SETTINGS.retry_base_delay * 1000, SETTINGS.retry_max_delay * 1000
        cap = min(most, base * 2 ** (task.attempt - 1))
        if stored_state is TaskState.EXPIRED:
            assert task.past_deadline(self.now() + cap), f"{task} expired before its deadline"
            self.finish(task, TaskState.EXPIRED)
            return
        assert not task.past_deadline(self.now()), f"{task} retried past its deadline"
        if stored_state is TaskState.PENDING:
            task.state = TaskState.PENDING
            self.push(task)
        else:
            assert stored_state is TaskState.SCHEDULED
            assert self.now() < ready_ms < self.now() + cap
            assert not task.past_deadline(ready_ms), f"{task} retried past its deadline"
            task.state, task.ready_ms = TaskState.SCHEDULED, ready_ms

    def trim(self) -> dict[TaskState, int]:
        """Finished records past their state's age, then the oldest beyond its count, go
        (ties in age broken by id, as a sorted set orders them); how many of each state."""
        removed = {}
        for state, (age, keep) in KEPT.items():
            members = sorted((t.finished_ms, i) for i, t in self.tasks.items() if t.state is state)
            old = [i for finished, i in members if finished <= self.now() - age * 1000]
            rest = [i for _, i in members[len(old) :]]
            doomed = old + rest[: max(0, len(rest) - keep)]
            for task_id in doomed:
                self.forget(task_id)
            removed[state] = len(doomed)
        return removed

    def forget(self, task_id: str) -> None:
        del self.tasks[task_id]
        self.gone.append(task_id)

    async def ready_states(self, ids: list[str]) -> dict[str, tuple[TaskState, int]]:
        """Where each task went: a task already handed off again (active) counts as pending,
        which it was until the hand-off (:meth:`settle_hand_offs` checks that one came)."""
        found = await self.broker.get_many(ids)
        return {
            t.id: (TaskState.PENDING if t.state is TaskState.ACTIVE else t.state, t.ready_ms)
            for t in found
            if t is not None
        }

    # -- rules ----------------------------------------------------------------------------

    def has(self, *states: TaskState) -> bool:
        return any(t.state in states for t in self.tasks.values())

    def has_deadlines(self) -> bool:
        return any(t.indexed for t in self.tasks.values())

    @initialize(batch=submissions(3, 12))
    def start_with_a_batch(self, batch: list[SubmissionFields]) -> None:
        self.enqueue(batch)

    @initialize(
        per_group=st.one_of(st.none(), st.integers(1, 2)),
        group_rate=st.one_of(st.none(), st.sampled_from(["1/s", "1/10s"])),
    )
    def start_with_a_group_limit(self, per_group: int | None, group_rate: str | None) -> None:
        """Often group limits on one type from the start, so claims meet them."""
        if per_group is not None or group_rate is not None:
            self.set_limits(TYPES[0], None, None, None, per_group, group_rate)

    @rule(batch=submissions(1, 4))
    def enqueue(self, batch: list[SubmissionFields]) -> None:
        if len(self.tasks) + len(batch) > MAX_TASKS:
            return
        wanted = [
            Submission(
                type=t,
                priority=p,
                delay=d,
                max_retries=r,
                idempotency_key=k,
                expires_in=None if e is None else (d or 0) + e,
                group=g,
            )
            for t, p, d, r, k, e, g in batch
        ]
        submitted = self.run(lambda: self.broker.enqueue_many(wanted))
        for (task_type, priority, delay, retries, key, expires, group), result in zip(
            batch, submitted, strict=True
        ):
            known = self.idempotency.get(key) if key else None
            if known in self.tasks:
                assert (result.id, result.created) == (known, False)
                assert result.state is self.tasks[known].state
                continue
            assert result.created
            task = ModelTask(
                result.id, task_type, priority, retries, TaskState.PENDING, group=group or ""
            )
            if expires is not None:
                task.expires_ms, task.indexed = self.now() + ((delay or 0) + expires) * 1000, True
            if delay:
                task.state, task.ready_ms = TaskState.SCHEDULED, self.now() + delay * 1000
            else:
                self.push(task)
            assert result.state is task.state
            self.tasks[task.id] = task
            if key:
                self.idempotency[key] = task.id

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.sampled_from(list(Priority)),
                st.one_of(st.none(), st.integers(0, 60)),
                st.sampled_from([0, 1]),
                st.lists(st.integers(0, 1000), max_size=3),
                st.booleans(),
                st.one_of(st.none(), st.none(), st.integers(1, 90)),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def enqueue_workflow(
        self, batch: list[tuple[str, Priority, int | None, int, list[int], bool, int | None]]
    ) -> None:
        """A batch whose tasks depend on earlier ones of it (an even pick) or on known tasks
        in any state (an odd one); none on a task with a deadline (see the module's text)."""
        if len(self.tasks) + len(batch) > MAX_TASKS:
            return
        known = [i for i, t in self.tasks.items() if t.expires_ms is None]
        wanted = []
        for n, (task_type, priority, delay, retries, picks, anyway, expires) in enumerate(batch):
            deps: list[str | int] = []
            for pick in picks:
                member = pick // 2 % n if n > 0 else None
                if pick % 2 == 0 and member is not None and batch[member][6] is None:
                    deps.append(member)
                elif pick % 2 == 1 and known:
                    deps.append(known[pick % len(known)])
            wanted.append(
                Submission(
                    type=task_type,
                    priority=priority,
                    delay=delay,
                    max_retries=retries,
                    depends_on=deps or None,
                    on_dependency_failure="run" if anyway and deps else None,
                    expires_in=None if expires is None else (delay or 0) + expires,
                )
            )
        submitted = self.run(lambda: self.broker.enqueue_many(wanted))
        ids = [s.id for s in submitted]
        for s, result in zip(wanted, submitted, strict=True):
            deps_ids = [ids[d] if isinstance(d, int) else d for d in s.depends_on or ()]
            task = ModelTask(
                result.id,
                s.type,
                Priority(s.priority or Priority.MEDIUM),
                s.max_retries or 0,
                TaskState.BLOCKED,
                ready_ms=self.now() + int((s.delay or 0) * 1000),
                depends_on=deps_ids,
                runs_anyway=s.on_dependency_failure == "run",
            )
            if s.expires_in is not None:
                task.expires_ms, task.indexed = self.now() + int(s.expires_in * 1000), True
            self.tasks[task.id] = task
            for dep in deps_ids:
                self.dependents.setdefault(dep, []).append(task.id)
            ended = [self.tasks[d] for d in deps_ids if self.tasks[d].state.is_terminal]
            failed = [d for d in ended if d.state is not TaskState.SUCCEEDED]
            if failed and not task.runs_anyway:
                task.state, task.finished_ms = TaskState.CANCELLED, self.now()
                task.error = f"dependency {failed[0].id} ended {failed[0].state}"
                task.indexed = False
            else:
                task.waiting_for = list(
                    dict.fromkeys(d for d in deps_ids if d not in {e.id for e in ended})
                )
                if not task.waiting_for:
                    self.release(task)
            assert result.state is task.state, (result, task)

    @precondition(lambda self: self.has(TaskState.PENDING))
    @rule(
        worker=st.sampled_from(WORKERS),
        types=st.sets(st.sampled_from(TYPES), min_size=1),
        count=st.integers(1, 5),
    )
    def claim(self, worker: str, types: set[str], count: int) -> None:
        """A claim leases the first tasks it may, and ends expired each one past its deadline
        that it takes off a queue on the way (not counted against the claim or its limits)."""
        self.claim_tasks(worker, types, count, None)

    @rule(
        worker=st.sampled_from(WORKERS),
        types=st.sets(st.sampled_from(TYPES), min_size=1),
        count=st.integers(1, 5),
        received=st.booleans(),
    )
    def claim_with_hand_offs(
        self, worker: str, types: set[str], count: int, received: bool
    ) -> None:
        """The same claim; it ends the worker's registration for hand-offs and, short, makes
        a new one. Without ``received`` the worker says it has no hand-off: its last one comes
        back, if it still holds it."""
        last, task_id, attempt = self.hand_offs_given.get(worker, ("", "", 0))
        # Whether it still holds its last hand-off, as claim.lua asks it: before the claim
        # (which may lease the same task again, at that attempt, if it went back meanwhile).
        task = self.tasks.get(task_id)  # None: it ended and was purged
        holds = (
            task is not None
            and task.state is TaskState.ACTIVE
            and task.worker == worker
            and task.attempt == attempt
        )
        held = self.claim_tasks(worker, types, count, last if received else "")
        if not received and last:
            assert [h.task.id for h in held] == ([task_id] if holds else [])
            if holds:
                assert task is not None
                assert held[0].task.attempt == task.attempt and held[0].token == last
                task.lease_ms = self.now() + LEASE_MS
        else:
            assert held == []

    def claim_tasks(
        self, worker: str, types: set[str], count: int, hand_offs: str | None
    ) -> list[HandOff]:
        """The claim rule's work; the claim's hand-offs (see claim_with_hand_offs)."""
        ordered = sorted(types)
        result = self.run(
            lambda: self.broker.claim_batch(worker, ordered, count, hand_offs=hand_offs)
        )
        claimed = result.tasks
        now = self.now()
        if hand_offs is not None:
            self.idle.pop(worker, None)
            if len(claimed) < count:
                self.idle[worker] = set(types)

        def live(ids: list[str]) -> list[str]:
            return [i for i in ids if not self.tasks[i].past_deadline(now)]

        waiting = {q: live(ids) for q, ids in self.queues.items() if q[1] in types and live(ids)}
        budget = {t: self.budget(t) for t in types}
        # A group concurrency limit caps each group's share (over all its priorities).
        room = {(t, g): self.group_room(t, g) for _, t, g in waiting if g}
        by_group: Counter[tuple[str, str]] = Counter()
        for (_, t, g), ids in waiting.items():
            by_group[(t, g)] += len(ids)
        claimable = {
            t: sum(min(n, room.get(tg, n)) for tg, n in by_group.items() if tg[0] == t)
            for t in types
        }
        assert len(claimed) == min(count, sum(min(budget[t], claimable[t]) for t in types))
        for t in types:
            took = sum(1 for c in claimed if c.type == t)
            assert took <= budget[t], f"type {t} started {took}, over its limits' {budget[t]}"
            spacing = self.limits.get(t, (None, 1, None))[0]
            if spacing is not None and took:
                self.next_start[t] = max(self.next_start.get(t, 0), self.now()) + took * spacing
            if took == budget[t]:  # held back: its queues may rightly be passed over
                waiting = {q: ids for q, ids in waiting.items() if q[1] != t}
        for (t, g), left in room.items():
            took = sum(1 for c in claimed if c.type == t and self.tasks[c.id].group == g)
            assert took <= left, f"group {g} of {t} started {took}, over its room of {left}"
            if took == left:  # parked at its limit: its queues may rightly be passed over
                waiting = {q: ids for q, ids in waiting.items() if q[1:] != (t, g)}
            if took and t in self.group_spacing:  # resting until its next start is due
                self.resting[(t, g)] = now + self.group_spacing[t]
        ranks = [PRIORITY_ORDER.index(c.priority) for c in claimed]
        assert ranks == sorted(ranks), "a claim hands out the most urgent tasks first"
        taken: dict[Queue, list[str]] = {}
        for c in claimed:
            taken.setdefault(self.tasks[c.id].queue, []).append(c.id)
        for queue, ids in taken.items():
            assert ids == live(self.queues[queue])[: len(ids)], f"{queue}: not first in, first out"
        for queue, ids in waiting.items():
            if ranks and PRIORITY_ORDER.index(Priority(queue[0])) < max(ranks):
                assert len(taken.get(queue, [])) == len(ids), f"{queue} was passed over"
        # What the claim took off each queue is a prefix of it: the tasks it leased, and the
        # ones past their deadline among them, which it ended.
        # Groups of one priority and type share a claim in turns: which of their lists an expired
        # task came off, the broker says.
        ended: Counter[tuple[str, str]] = Counter(
            (priority.value, task_type) for task_type, priority in result.expired
        )
        for (priority, task_type), n in ended.items():
            lists = [q for q in self.queues if q[:2] == (priority, task_type)]
            if len(lists) == 1:
                (queue,) = lists
                popped = self.queues[queue][: len(taken.get(queue, [])) + n]
                past = [i for i in popped if self.tasks[i].past_deadline(now)]
            else:
                candidates = [
                    i for q in lists for i in self.queues[q] if self.tasks[i].past_deadline(now)
                ]
                states = self.run(lambda c=candidates: self.broker.get_many(c))  # type: ignore[misc]
                past = [
                    i
                    for i, t in zip(candidates, states, strict=True)
                    if t is not None and t.state is TaskState.EXPIRED
                ]
            assert len(past) == n, f"{priority} {task_type}: the claim ended {n}, the model {past}"
            for task_id in past:
                self.unqueue(self.tasks[task_id])
                self.finish(self.tasks[task_id], TaskState.EXPIRED)
        for c in claimed:
            task = self.tasks[c.id]
            self.unqueue(task)
            task.state, task.worker = TaskState.ACTIVE, worker
            task.attempt += 1
            task.lease_ms = self.now() + LEASE_MS
            assert c.attempt == task.attempt
        return result.handed

    def group_room(self, task_type: str, group: str) -> int:
        """How many more tasks of ``group`` of ``task_type`` its group limits let start."""
        if task_type in self.group_spacing and self.resting.get((task_type, group), 0) > self.now():
            return 0
        rated = 1 if task_type in self.group_spacing else MAX_TASKS
        limit = self.group_limits.get(task_type)
        if limit is None:
            return rated
        active = sum(
            1
            for t in self.tasks.values()
            if (t.type, t.group, t.state) == (task_type, group, TaskState.ACTIVE)
        )
        return min(rated, max(0, limit - active))

    def budget(self, task_type: str) -> int:
        """How many tasks of ``task_type`` its limits let start now."""
        spacing, burst, concurrency = self.limits.get(task_type, (None, 1, None))
        room = MAX_TASKS
        if spacing is not None:
            behind = max(self.next_start.get(task_type, 0), self.now()) - self.now()
            room = max(0, math.floor(burst - behind / spacing + 1e-9))
        if concurrency is not None:
            active = sum(
                1
                for t in self.tasks.values()
                if t.type == task_type and t.state is TaskState.ACTIVE
            )
            room = min(room, max(0, concurrency - active))
        return room

    @rule(
        task_type=st.sampled_from(TYPES),
        priority=st.sampled_from(list(Priority)),
        key=st.sampled_from(["d1", "d2"]),
        n=st.integers(0, 9),
        window=st.sampled_from([1, 5]),
        max_wait=st.sampled_from([None, 5, 10]),
        keep=st.sampled_from(["last", "first"]),
    )
    def debounce(
        self,
        task_type: str,
        priority: Priority,
        key: str,
        n: int,
        window: int,
        max_wait: int | None,
        keep: Literal["last", "first"],
    ) -> None:
        """A debounced submission joins the task its key names while that task waits for its
        first start, moving the start a window on (never past max_wait after the first), and
        with keep 'last' replacing its payload; otherwise it creates a scheduled task."""
        if len(self.tasks) >= MAX_TASKS:
            return
        debounce = Debounce(key=key, window=window, max_wait=max_wait, keep=keep)
        wanted = Submission(
            type=task_type, priority=priority, payload={"n": n}, max_retries=1, debounce=debounce
        )
        submitted = self.run(lambda: self.broker.enqueue(wanted))
        now = self.now()
        holder = self.tasks.get(self.debounced.get((task_type, key), ""))
        if holder is not None and holder.state is TaskState.SCHEDULED and holder.attempt == 0:
            assert (submitted.id, submitted.created) == (holder.id, False), submitted
            assert submitted.debounced == ("replaced" if keep == "last" else "joined")
            assert submitted.priority is holder.priority
            holder.ready_ms = now + window * 1000
            if max_wait is not None:
                holder.ready_ms = min(holder.ready_ms, holder.debounce_first_ms + max_wait * 1000)
            if keep == "last":
                holder.payload = {"n": n}
            stored = self.run(lambda: self.broker.get(holder.id))
            assert stored is not None and stored.payload == holder.payload
            return
        assert submitted.created and submitted.debounced == "created", submitted
        assert submitted.state is TaskState.SCHEDULED
        task = ModelTask(submitted.id, task_type, priority, 1, TaskState.SCHEDULED)
        task.ready_ms, task.payload, task.debounce_first_ms = now + window * 1000, {"n": n}, now
        self.tasks[task.id] = task
        self.debounced[(task_type, key)] = task.id

    @rule(
        task_type=st.sampled_from(TYPES),
        rate=st.one_of(st.none(), st.sampled_from(["1/s", "2/s", "1/10s"])),
        burst=st.one_of(st.none(), st.integers(1, 3)),
        concurrency=st.one_of(st.none(), st.integers(1, 3)),
        per_group=st.one_of(st.none(), st.integers(1, 2)),
        group_rate=st.one_of(st.none(), st.sampled_from(["1/s", "2/s", "1/10s"])),
    )
    def set_limits(
        self,
        task_type: str,
        rate: str | None,
        burst: int | None,
        concurrency: int | None,
        per_group: int | None,
        group_rate: str | None = None,
    ) -> None:
        policy = Policy(
            rate_limit=rate,
            rate_burst=burst,
            concurrency=concurrency,
            group_concurrency=per_group,
            group_rate_limit=group_rate,
        )
        self.run(lambda: self.broker.set_policy(policy, task_type, replace=True))
        if per_group is None:
            self.group_limits.pop(task_type, None)
        else:
            self.group_limits[task_type] = per_group
        if group_rate is None:  # the resting groups come back at once
            self.group_spacing.pop(task_type, None)
            self.resting = {tg: until for tg, until in self.resting.items() if tg[0] != task_type}
        else:
            self.group_spacing[task_type] = parse_rate(group_rate).spacing_ms
        if rate is None and concurrency is None:
            self.limits.pop(task_type, None)
            self.next_start.pop(task_type, None)
            return
        spacing = None if rate is None else parse_rate(rate).spacing_ms
        if spacing is None:
            self.next_start.pop(task_type, None)
        self.limits[task_type] = (spacing, burst or 1, concurrency)

    @precondition(lambda self: self.has(TaskState.ACTIVE))
    @rule(
        picks=st.lists(
            st.tuples(
                st.integers(0, 1000),
                st.sampled_from(KINDS),
                st.sampled_from([0, 0, 0, -1, 1, None]),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def report(self, picks: list[tuple[int, OutcomeKind, int | None]]) -> None:
        """Reports on running tasks; a skewed attempt, or (skew None) a task in any state with
        its current attempt (e.g. reaped and waiting for its retry), makes a report stale."""
        reports = []
        for index, kind, skew in picks:
            task_id = self.pick(index, (TaskState.ACTIVE,) if skew is not None else None)
            assert task_id is not None
            attempt = self.tasks[task_id].attempt + (skew or 0)
            reports.append(
                Report(
                    task_id=task_id,
                    attempt=attempt,
                    kind=kind,
                    error="e",
                    snooze_ms=SNOOZES_MS[index % len(SNOOZES_MS)],
                )
            )

        async def step() -> tuple[list[TaskState | None], dict[str, tuple[TaskState, int]]]:
            states = await self.broker.report(reports)
            return states, await self.ready_states([r.task_id for r in reports])

        states, stored = self.run(step)
        fronts: list[ModelTask] = []
        for r, state in zip(reports, states, strict=True):
            task = self.tasks[r.task_id]
            if task.state is not TaskState.ACTIVE or task.attempt != r.attempt:
                assert state is None, f"stale report of {r} was not ignored"
                continue
            if r.kind is OutcomeKind.SUCCEEDED:
                self.finish(task, TaskState.SUCCEEDED)
            elif r.kind is OutcomeKind.CANCELLED or task.cancel_requested:
                self.finish(task, TaskState.CANCELLED)
            elif r.kind is OutcomeKind.INTERRUPTED:
                if self.given_back(task):
                    fronts.append(task)
            elif r.kind is OutcomeKind.SNOOZED:
                self.snoozed(task, r.snooze_ms)
            elif task.attempt > task.max_retries:
                self.finish(task, TaskState.DEAD)
            else:
                self.retry_or_pending(task, *stored[task.id])
            assert state is task.state, f"{r}: broker says {state}, model {task.state}"
        for task in reversed(fronts):
            self.push(task, front=True)

    def given_back(self, task: ModelTask) -> bool:
        """An interrupted attempt: cancelled if that was requested; else not spent, expired
        past the deadline, or pending again. Whether it is pending (for its queue's front)."""
        if task.cancel_requested:
            self.finish(task, TaskState.CANCELLED)
            return False
        task.attempt -= 1
        if task.past_deadline(self.now()):
            self.finish(task, TaskState.EXPIRED)
            return False
        task.state = TaskState.PENDING
        return True

    def snoozed(self, task: ModelTask, delay_ms: int) -> None:
        """A snooze gives the attempt back and waits ``delay_ms``; one past the cap is dead, one
        that would start past the deadline expired."""
        event(f"snoozed {delay_ms} ms, {task.snoozes} before")
        if task.snoozes + 1 > MAX_SNOOZES:
            self.finish(task, TaskState.DEAD)
            return
        task.attempt, task.snoozes = task.attempt - 1, task.snoozes + 1
        if task.past_deadline(self.now() + delay_ms):
            self.finish(task, TaskState.EXPIRED)
        elif delay_ms > 0:
            task.state, task.ready_ms = TaskState.SCHEDULED, self.now() + delay_ms
        else:
            task.state = TaskState.PENDING
            self.push(task)

    @rule(
        worker=st.sampled_from(WORKERS),
        stray=st.one_of(st.none(), st.integers(0, 1000)),
        stale=st.booleans(),
    )
    def heartbeat(self, worker: str, stray: int | None, stale: bool) -> None:
        """The worker's running tasks; with ``stray`` one task it does not hold, with ``stale``
        its first task under the attempt before (a lease it held before a reap)."""
        held = [
            t for t in self.tasks.values() if t.state is TaskState.ACTIVE and t.worker == worker
        ]
        lost = []
        if stale and held:
            lost.append(held.pop(0))
        running = [(t.id, t.attempt) for t in held] + [(t.id, t.attempt - 1) for t in lost]
        other = self.pick(stray) if stray is not None else None
        if other is not None and self.tasks[other] not in held + lost:
            lost.append(self.tasks[other])
            running.append((other, self.tasks[other].attempt))
        reply = self.run(lambda: self.broker.heartbeat(_worker(worker, self.now()), running))
        assert reply.lost == [t.id for t in lost]
        assert reply.cancel_requested == [t.id for t in held if t.cancel_requested]
        for task in held:
            task.lease_ms = self.now() + LEASE_MS
        self.workers[worker] = self.now()

    @rule(seconds=st.sampled_from([0.001, 1, 5, 15, 29, 31, 61, 130]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # Claims, reports and the passing of time are most of a queue's life: give them more turns
    # (Hypothesis picks uniformly among the rules whose preconditions hold).
    claim_again = claim
    report_again = report
    advance_clock_again = advance_clock

    @precondition(lambda self: self.has(TaskState.ACTIVE) or self.workers)
    @rule()
    def reap(self) -> None:
        expired = sorted(
            (t.lease_ms, t.id)
            for t in self.tasks.values()
            if t.state is TaskState.ACTIVE and t.lease_ms <= self.now()
        )

        async def step() -> tuple[Any, dict[str, tuple[TaskState, int]]]:
            result = await self.broker.reap()
            return result, await self.ready_states([i for _, i in expired])

        result, stored = self.run(step)
        assert result.reaped == len(expired)
        silent = {w for w, beat in self.workers.items() if beat <= self.now() - LEASE_MS}
        assert set(result.workers_removed) == silent
        for worker in silent:
            del self.workers[worker]
            self.idle.pop(worker, None)
            self.hand_offs_given.pop(worker, None)
        for _, task_id in expired:
            task = self.tasks[task_id]
            if task.cancel_requested:
                self.finish(task, TaskState.CANCELLED)
            elif task.attempt > task.max_retries:
                self.finish(task, TaskState.DEAD)
            else:
                self.retry_or_pending(task, *stored[task_id])

    @rule()
    def trim_finished(self) -> None:
        result = self.run(self.broker.trim)
        expected = self.trim()
        assert (result.succeeded, result.cancelled, result.expired, result.dead) == (
            expected[TaskState.SUCCEEDED],
            expected[TaskState.CANCELLED],
            expected[TaskState.EXPIRED],
            expected[TaskState.DEAD],
        )

    @precondition(lambda self: self.has(TaskState.SCHEDULED) or self.has_deadlines())
    @rule()
    def promote(self) -> None:
        """The sweep ends waiting tasks past their deadline (and forgets the deadline of a
        running one), then makes due scheduled tasks pending."""
        result = self.run(self.broker.promote)
        past = sorted(
            (t.expires_ms, t.id)
            for t in self.tasks.values()
            if t.indexed and t.expires_ms is not None and t.expires_ms <= self.now()
        )
        expired = 0
        for _, task_id in past:
            task = self.tasks[task_id]
            task.indexed = False
            if task.state in (TaskState.BLOCKED, TaskState.PENDING, TaskState.SCHEDULED):
                if task.state is TaskState.PENDING:
                    self.unqueue(task)
                self.finish(task, TaskState.EXPIRED)
                expired += 1
        assert len(result.expired) == expired
        scheduled = sorted(
            (t.ready_ms, t.id) for t in self.tasks.values() if t.state is TaskState.SCHEDULED
        )
        due = [i for ready, i in scheduled if ready <= self.now()]
        later = [ready for ready, _ in scheduled if ready > self.now()]
        later += [t.expires_ms for t in self.tasks.values() if t.indexed and t.expires_ms]
        assert result.promoted == len(due)
        assert result.next_due_ms == (min(later) if later else None)
        for task_id in due:
            task = self.tasks[task_id]
            task.state = TaskState.PENDING
            self.push(task)

    @rule(index=st.integers(0, 1000), which=st.sampled_from(["any", "running", "gone"]))
    def cancel(self, index: int, which: str) -> None:
        running = self.pick(index, (TaskState.ACTIVE,)) if which == "running" else None
        task_id = running or (self.pick(index) if which != "gone" else None)
        if task_id is None:
            unknown = self.gone[index % len(self.gone)] if self.gone else "no-such-task"
            with pytest.raises(TaskNotFoundError):
                self.run(lambda: self.broker.cancel(unknown))
            return
        task = self.tasks[task_id]
        if task.state.is_terminal:
            with pytest.raises(ConflictingStateError):
                self.run(lambda: self.broker.cancel(task_id))
            return
        outcome = self.run(lambda: self.broker.cancel(task_id))
        if task.state is TaskState.ACTIVE:
            assert outcome == "requested"
            task.cancel_requested = True
        else:
            assert outcome == "cancelled"
            if task.state is TaskState.PENDING:
                self.unqueue(task)
            self.finish(task, TaskState.CANCELLED)
            task.error = "cancelled before it ran"

    @precondition(lambda self: self.tasks)
    @rule(index=st.integers(0, 1000))
    def requeue_one(self, index: int) -> None:
        task_id = self.pick(index)
        if task_id is None:
            return
        task = self.tasks[task_id]
        if task.state is not TaskState.DEAD:
            with pytest.raises(ConflictingStateError):
                self.run(lambda: self.broker.requeue_dead(task_id))
            return
        self.run(lambda: self.broker.requeue_dead(task_id))
        self.requeued(task)

    def requeued(self, task: ModelTask) -> None:
        task.state, task.attempt, task.cancel_requested = TaskState.PENDING, 0, False
        task.snoozes, task.expires_ms, task.indexed = 0, None, False
        self.push(task)

    def dead_in_order(self, task_type: str | None) -> list[ModelTask]:
        dead = [
            t
            for t in self.tasks.values()
            if t.state is TaskState.DEAD and task_type in (None, t.type)
        ]
        return sorted(dead, key=lambda t: (t.finished_ms, t.id))

    @precondition(lambda self: self.has(TaskState.DEAD))
    @rule(task_type=st.one_of(st.none(), st.sampled_from(TYPES)))
    def requeue_all(self, task_type: str | None) -> None:
        dead = self.dead_in_order(task_type)
        assert self.run(lambda: self.broker.requeue_all_dead(task_type)) == len(dead)
        for task in dead:
            self.requeued(task)

    @precondition(lambda self: self.has(TaskState.DEAD))
    @rule(task_type=st.one_of(st.none(), st.sampled_from(TYPES)))
    def purge(self, task_type: str | None) -> None:
        dead = self.dead_in_order(task_type)
        assert self.run(lambda: self.broker.purge_dead(task_type)) == len(dead)
        for task in dead:
            self.forget(task.id)

    @precondition(lambda self: self.workers)
    @rule(worker=st.sampled_from(WORKERS))
    def deregister(self, worker: str) -> None:
        was_registered = self.run(lambda: self.broker.deregister(worker))
        assert was_registered is (self.workers.pop(worker, None) is not None)
        self.idle.pop(worker, None)
        given = self.hand_offs_given.pop(worker, None)
        if given is None:
            return
        # Its last hand-off, still active at that attempt, never reached it: given back.
        _, task_id, attempt = given
        task = self.tasks.get(task_id)
        if task is None or task.state is not TaskState.ACTIVE or task.attempt != attempt:
            return
        event("deregistered with a hand-off it never took")
        if self.given_back(task):
            self.push(task, front=True)

    # -- the checks -------------------------------------------------------------------------

    def settle_hand_offs(self) -> None:
        """Take into the model the hand-offs the last step made: each to a worker that waited
        for the task's type (of no limits or groups), of a task pending and within its
        deadline, none behind a task left pending in a more urgent or earlier place."""
        k = self.broker.keys

        async def read() -> list[Any]:
            return await self.broker.redis.pipeline(
                [
                    ("HGETALL", k.handed),
                    ("HGETALL", k.idle_workers),
                    ("HKEYS", k.limits),
                    ("HKEYS", k.grouped),
                ]
            )

        handed_flat, idle_flat, limited, grouped = self.run(read)
        handed = dict(zip(handed_flat[::2], handed_flat[1::2], strict=True))
        new: list[tuple[str, ModelTask, str]] = []
        for worker, entry in handed.items():
            token, task_id, attempt = entry.split(" ")
            if self.hand_offs_given.get(worker, ("",))[0] == token:
                continue
            task = self.tasks[task_id]
            assert worker in self.idle, f"{task_id} handed to {worker}, which did not wait"
            assert task.type in self.idle[worker], f"{task_id} handed to {worker} for another type"
            assert task.state is TaskState.PENDING, f"{task} handed off"
            assert task.type not in limited and task.type not in grouped, f"{task} handed off"
            assert not task.past_deadline(self.now()), f"{task} handed off past its deadline"
            assert int(attempt) == task.attempt + 1
            new.append((worker, task, token))
            event("handed off")
            self.hand_offs_given[worker] = (token, task_id, int(attempt))
            del self.idle[worker]
        now = self.now()
        given = {task.id for _, task, _ in new}
        for worker, task, _ in new:
            queue = self.queues[task.queue]
            ahead = [
                i for i in queue[: queue.index(task.id)] if not self.tasks[i].past_deadline(now)
            ]
            assert set(ahead) <= given, f"{task.id} handed to {worker} ahead of {ahead}"
        for _, task, _ in new:
            self.unqueue(task)
        for worker, task, _ in new:
            rank = PRIORITY_ORDER.index(task.priority)
            for (priority, task_type, _), ids in self.queues.items():
                urgent = PRIORITY_ORDER.index(Priority(priority)) < rank
                live = [i for i in ids if not self.tasks[i].past_deadline(now)]
                assert not (task_type == task.type and urgent and live), (
                    f"{task.id} handed to {worker} while more urgent {live} waited"
                )
            lease_ms = self.run(lambda t=task: self.broker.redis.execute("ZSCORE", k.active, t.id))  # type: ignore[misc]
            task.state, task.worker, task.attempt = TaskState.ACTIVE, worker, task.attempt + 1
            task.lease_ms = int(float(lease_ms))
        idle = {
            w: set(e.split(" ", 2)[2].split(","))
            for w, e in zip(idle_flat[::2], idle_flat[1::2], strict=True)
        }
        assert idle == self.idle, f"registrations {idle}, the model {self.idle}"

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        self.settle_hand_offs()
        ids = list(self.tasks)
        k = self.broker.keys

        async def read() -> tuple[
            list[Any], list[str], dict[Queue, list[str]], list[str], list[str]
        ]:
            await assert_invariants(self.broker)
            stored = await self.broker.get_many(ids)
            names = await self.broker.redis.execute("KEYS", k.task("*"))
            queues = {
                q: await self.broker.redis.execute(
                    "LRANGE", k.group_ready(*q) if q[2] else k.ready(*q[:2]), 0, -1
                )
                for q in self.queues
            }
            workers = await self.broker.redis.execute("ZRANGE", k.workers, 0, -1)
            deadlines = await self.broker.redis.execute("ZRANGE", k.deadlines, 0, -1)
            return stored, names, queues, workers, deadlines

        stored, names, queues, workers, deadlines = self.run(read)
        assert len(names) == len(self.tasks), "the broker holds tasks the model does not know"
        for task, found in zip(self.tasks.values(), stored, strict=True):
            assert found is not None, f"task {task.id} vanished; model: {task}"
            assert (found.state, found.attempt) == (task.state, task.attempt), (found, task)
            assert found.cancel_requested is task.cancel_requested, (found, task)
            assert (found.snoozes, found.expires_ms) == (task.snoozes, task.expires_ms), (
                found,
                task,
            )
            if task.state is TaskState.BLOCKED:
                assert found.waiting_for == task.waiting_for, (found, task)
            if task.depends_on:
                assert found.depends_on == task.depends_on, (found, task)
                if task.error and task.error.startswith("dependency"):
                    assert found.error == task.error, (found, task)
        for queue, expected in self.queues.items():
            assert queues[queue] == expected, f"ready list {queue}"
        assert sorted(workers) == sorted(self.workers)
        assert sorted(deadlines) == sorted(i for i, t in self.tasks.items() if t.indexed)


def test_broker_keeps_its_invariants_through_random_operations(redis_url: str) -> None:
    with TrioThread() as thread:
        client = Redis.from_url(redis_url)

        class OnTheTestServer(BrokerMachine):
            trio_thread = thread
            redis = client

        try:
            run_state_machine_as_test(
                OnTheTestServer,
                settings=settings(
                    max_examples=25,
                    stateful_step_count=50,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        finally:
            thread.run(client.aclose)
