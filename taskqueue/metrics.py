"""Prometheus metrics of one daemon process, named by Prometheus conventions.

Counters of task outcomes are kept by the process that saw them: the worker that ran the
attempt (from what ``finish.lua`` answered for it: retried, dead-lettered, cancelled …), the API
process that accepted a submission or cancelled a waiting task. Prometheus sums them across
processes. Queue depths and live workers are read from the broker's incremental counters when
scraped: one round trip of two O(1)-in-tasks commands, however many tasks are queued.

The consumer runs tens of thousands of tasks a second, so its per-task work here is a few
increments of plain ``int`` attributes and two bucket lookups (:class:`TaskCounts`), turned into
Prometheus samples only when scraped (:class:`_TaskCollector`); a ``labels()`` lookup or a
locked ``inc()`` per task would cost more than the rest of the bookkeeping together.

Task types are whatever submitters name, so a type becomes a label value only once a worker
has registered it (the served-types hash its heartbeat writes, read with every scrape, and the
types this process's own worker runs); every other type is counted under the one value
:data:`OTHER_TYPE`. A submitter can then add no series, however many types it makes up.

Each daemon has its own registry, so several can live in one process (tests do).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from taskqueue.broker import (
    Broker,
    BulkCancellation,
    Cancellation,
    Submission,
    Submitted,
    TrimResult,
)
from taskqueue.broker.model import unserved_warning
from taskqueue.models import GroupStats, Priority, QueueStats, TaskState
from taskqueue.redis import (
    AuthenticationError,
    RedisConnectionError,
    RedisError,
    ResponseError,
)

__all__ = [
    "CONTENT_TYPE",
    "DEPTH_STATES",
    "DURATION_BUCKETS",
    "Metrics",
    "TaskCounts",
]

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

#: From half a millisecond to an hour: tasks here range from no-ops to long batch jobs.
DURATION_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip

# The ``le`` labels, as prometheus-client writes them ("0.0005", "1.0", "+Inf").
_BOUND_TEXT: Final = (*(repr(float(b)) for b in DURATION_BUCKETS), "+Inf")

#: The states ``taskqueue_queue_depth`` reports: where tasks wait or run, and the dead letters.
#: Succeeded and cancelled records are history (kept as `[retention]` says), not a queue.
DEPTH_STATES: Final = (
    TaskState.BLOCKED,
    TaskState.PENDING,
    TaskState.SCHEDULED,
    TaskState.ACTIVE,
    TaskState.DEAD,
)

#: Most (task type, priority) series a process keeps, a second bound behind labelling only
#: served types (workers may register many); beyond it, new types count under OTHER_TYPE.
MAX_TASK_SERIES: Final = 2000
#: The label value of every type no worker registered. Not a valid type name (those start with
#: a letter or digit), so no real type's series can be mistaken for it.
OTHER_TYPE: Final = "_other"

#: How long a scrape waits for Redis before it answers without queue depths.
REFRESH_TIMEOUT: Final = 2.0

#: Redis error replies that say the server is in trouble (out of memory, read-only replica …).
#: Other error replies, such as a script's ``NOTFOUND`` for an unknown task, are answers.
_REDIS_ERROR_CODES: Final = frozenset(
    {
        "ERR", "WRONGTYPE", "OOM", "READONLY", "LOADING", "BUSY", "NOPERM", "MISCONF",
        "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK", "EXECABORT", "NOREPLICAS",
    }
)  # fmt: skip

# gRPC status names by code, for the API metrics' ``status`` label.
_GRPC_STATUS: Final = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip


def grpc_status_name(code: int) -> str:
    return _GRPC_STATUS[code] if 0 <= code < len(_GRPC_STATUS) else str(code)


def _counter_by(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    """A counter with one labelled sample per entry of ``counts``."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, n in counts.items():
        family.add_metric([value], n)
    return family


class Buckets:
    """A histogram's raw bucket counts and sum; cumulated only when scraped."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le is <=).
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sum += seconds

    def add(self, other: Buckets) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(_BOUND_TEXT, self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class TaskCounts:
    """What this process saw of the tasks of one (type, priority): plain counters.

    The consumer holds one per running task and bumps its attributes directly. The outcome
    counters exclude one another except ``timed_out``, a part of ``failed``; ``retried`` and
    ``dead`` split ``failed``. So ``completed`` is ``processed + failed + cancelled``.
    """

    __slots__ = (
        "cancelled",
        "dead",
        "duration",
        "expired",
        "failed",
        "priority",
        "processed",
        "retried",
        "snoozed",
        "submitted",
        "timed_out",
        "type",
        "wait",
    )

    def __init__(self, task_type: str, priority: str) -> None:
        self.type = task_type
        self.priority = priority
        self.submitted = 0
        self.processed = 0
        self.failed = 0
        self.timed_out = 0
        self.retried = 0
        self.dead = 0
        self.cancelled = 0
        self.snoozed = 0
        self.expired = 0
        #: Run time of attempts, from the processor's start to its end.
        self.duration = Buckets()
        #: From the task becoming ready to its attempt starting.
        self.wait = Buckets()

    @property
    def completed(self) -> int:
        return self.processed + self.failed + self.cancelled


# name, help, attribute of TaskCounts
_TASK_COUNTERS: Final = (
    ("taskqueue_tasks_submitted", "Tasks accepted by this process (new ones, not an idempotent "
     "repeat).", "submitted"),
    ("taskqueue_tasks_processed", "Attempts that succeeded.", "processed"),
    ("taskqueue_tasks_failed", "Attempts that failed: the processor raised or timed out.",
     "failed"),
    ("taskqueue_tasks_timed_out", "Failed attempts stopped at the task's timeout.", "timed_out"),
    ("taskqueue_tasks_retried", "Failed attempts after which the task will run again.",
     "retried"),
    ("taskqueue_tasks_dead", "Tasks moved to the dead-letter queue after their last attempt.",
     "dead"),
    ("taskqueue_tasks_cancelled", "Tasks cancelled at a user's request: running ones by the "
     "worker that stopped them, waiting ones by the API process.", "cancelled"),
    ("taskqueue_tasks_expired", "Tasks ended expired: their deadline passed before they could "
     "start (counted by the process that found it: a worker's claim or report, or a "
     "scheduler).", "expired"),
    ("taskqueue_tasks_snoozed", "Attempts whose processor snoozed the task: it runs again "
     "later, the attempt not spent (one past max_snoozes is dead instead).", "snoozed"),
    ("taskqueue_tasks_completed", "Attempts that ended with a recorded outcome: processed, "
     "failed or cancelled.", "completed"),
)  # fmt: skip


class _TaskCollector(Collector):
    """Renders every :class:`TaskCounts` of a :class:`Metrics` as counters and histograms."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        counters, duration, wait = self._families()
        return [*counters, duration, wait]

    def collect(self) -> Iterable[Metric]:
        counters, duration_family, wait_family = self._families()
        by_type: dict[str, tuple[Buckets, Buckets]] = {}
        for c in sorted(self._metrics._counts.values(), key=lambda c: (c.type, c.priority)):
            labels = [c.type, c.priority]
            for family, (_, _, attribute) in zip(counters, _TASK_COUNTERS, strict=True):
                family.add_metric(labels, getattr(c, attribute))
            duration, wait = by_type.setdefault(c.type, (Buckets(), Buckets()))
            duration.add(c.duration)
            wait.add(c.wait)
        for task_type, (duration, wait) in by_type.items():
            duration_family.add_metric([task_type], duration.cumulative(), duration.sum)
            wait_family.add_metric([task_type], wait.cumulative(), wait.sum)
        return [*counters, duration_family, wait_family]

    @staticmethod
    def _families() -> tuple[
        list[CounterMetricFamily], HistogramMetricFamily, HistogramMetricFamily
    ]:
        counters = [
            CounterMetricFamily(name, text, labels=("type", "priority"))
            for name, text, _ in _TASK_COUNTERS
        ]
        duration = HistogramMetricFamily(
            "taskqueue_task_duration_seconds",
            "Run time of an attempt, from the processor's start to its end.",
            labels=("type",),
        )
        wait = HistogramMetricFamily(
            "taskqueue_task_wait_seconds",
            "Time from a task becoming ready to run to its attempt starting.",
            labels=("type",),
        )
        return counters, duration, wait


class _StateCollector(Collector):
    """Queue depths and workers as last read from Redis, and this worker's own gauges."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily("taskqueue_redis_up", ""),
            GaugeMetricFamily("taskqueue_queue_depth", "", labels=("priority", "state")),
            GaugeMetricFamily("taskqueue_workers_active", ""),
            GaugeMetricFamily("taskqueue_tasks_held", "", labels=("type", "limit")),
            GaugeMetricFamily("taskqueue_groups", "", labels=("type", "state")),
            GaugeMetricFamily("taskqueue_group_pending", "", labels=("type", "group")),
            GaugeMetricFamily("taskqueue_tasks_in_flight", ""),
            GaugeMetricFamily("taskqueue_worker_concurrency", ""),
        ]

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        yield GaugeMetricFamily(
            "taskqueue_redis_up",
            "Whether Redis answered this scrape's read of the queue counters.",
            value=1 if m.depths is not None else 0,
        )
        if m.depths is not None:
            depth = GaugeMetricFamily(
                "taskqueue_queue_depth",
                "Tasks per priority and state, from the broker's counters at scrape time.",
                labels=("priority", "state"),
            )
            for (priority, state), n in m.depths.items():
                depth.add_metric([priority.value, state.value], n)
            yield depth
            yield GaugeMetricFamily(
                "taskqueue_workers_active",
                "Registered workers, from Redis at scrape time (a dead one counts until reaped).",
                value=m.workers,
            )
            held = GaugeMetricFamily(
                "taskqueue_tasks_held",
                "Pending tasks of a type that its rate or concurrency limit keeps waiting.",
                labels=("type", "limit"),
            )
            for task_type, (limit, pending) in sorted(m.held.items()):
                if task_type in m.served:  # a label value only for a registered type
                    held.add_metric([task_type, limit], pending)
            yield held
            yield from self._group_families(m)
        if m.in_flight is not None:
            yield GaugeMetricFamily(
                "taskqueue_tasks_in_flight",
                "Tasks this worker holds: running, or claimed and waiting for a free slot.",
                value=m.in_flight(),
            )
            yield GaugeMetricFamily(
                "taskqueue_worker_concurrency",
                "Tasks this worker runs at once at most.",
                value=m.concurrency,
            )

    @staticmethod
    def _group_families(m: Metrics) -> Iterator[Metric]:
        groups = GaugeMetricFamily(
            "taskqueue_groups",
            "Groups of a grouped task type (fair share) with pending or active tasks.",
            labels=("type", "state"),
        )
        top = GaugeMetricFamily(
            "taskqueue_group_pending",
            "Pending tasks of the groups with the most of them: the top ten per type only, so "
            "the series stay bounded however many groups there are.",
            labels=("type", "group"),
        )
        for g in m.groups:
            if g.type not in m.served:  # a label value only for a registered type
                continue
            groups.add_metric([g.type, TaskState.PENDING.value], g.groups_pending)
            groups.add_metric([g.type, TaskState.ACTIVE.value], g.groups_active)
            for load in g.top:
                if load.pending:
                    top.add_metric([g.type, load.group], load.pending)
        yield groups
        yield top


class _EventCollector(Collector):
    """The counters of the worker's services, the Redis client and the API."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> list[Metric]:
        m = self._metrics
        requests = CounterMetricFamily(
            "taskqueue_api_requests",
            "API requests by protocol (rest, grpc), route, method and status (the HTTP status; "
            "for gRPC the grpc-status name).",
            labels=("api", "route", "method", "status"),
        )
        for labels, n in sorted(m.api_requests.items()):
            requests.add_metric(labels, n)
        duration = HistogramMetricFamily(
            "taskqueue_api_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            labels=("api", "route"),
        )
        for (api, route), buckets in sorted(m.api_duration.items(), key=lambda item: item[0]):
            duration.add_metric([api, route], buckets.cumulative(), buckets.sum)
        errors = _counter_by(
            "taskqueue_redis_errors",
            "Redis commands that failed: kind is connection, auth, or the error code of a "
            "reply that signals trouble (oom, readonly, busy …).",
            "kind",
            dict(sorted(m.redis_errors.items())),
        )
        trimmed = _counter_by(
            "taskqueue_records_trimmed",
            "Finished records this process's trimmer deleted past their retention, by state "
            "(a dead letter dropped this way is lost: see retention.dead and dead_max).",
            "state",
            m.records_trimmed,
        )
        lost = _counter_by(
            "taskqueue_leases_lost",
            "Tasks this worker stopped, or did not start, because their lease had passed or "
            "may have passed to another worker (a stall, a partition), by where they were.",
            "stage",
            m.leases_lost,
        )
        return [
            CounterMetricFamily(
                "taskqueue_worker_heartbeats",
                "Heartbeats this worker sent.",
                value=m.worker_heartbeats,
            ),
            CounterMetricFamily(
                "taskqueue_workers_cleaned_up",
                "Records of dead workers this process's reaper removed.",
                value=m.workers_cleaned_up,
            ),
            trimmed,
            lost,
            CounterMetricFamily(
                "taskqueue_outcomes_refused",
                "Outcomes this worker reported that Redis refused: the task's lease had passed "
                "to another worker, whose outcome counts.",
                value=m.outcomes_refused,
            ),
            CounterMetricFamily(
                "taskqueue_leases_reaped",
                "Expired leases this process's reaper took back (each a failed attempt, or a "
                "cancellation when one was requested).",
                value=m.leases_reaped,
            ),
            requests,
            duration,
            errors,
            CounterMetricFamily(
                "taskqueue_redis_reconnects",
                "Connections to Redis made again after one was lost.",
                value=m.redis_reconnects,
            ),
        ]


class Metrics:
    """Every metric of one daemon process; see the ``help`` texts for what each one counts."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        if process_metrics:
            # The standard process_* and python_* series (CPU, memory, file descriptors, GC).
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                r.register(collector)
        self._counts: dict[tuple[str, str], TaskCounts] = {}
        self._index: dict[str, dict[str, TaskCounts]] = {}  # type -> priority -> counts
        #: Types a worker registered: their own label value (see the module docstring).
        self.served: set[str] = set()
        #: Set by :meth:`refresh`; None when Redis did not answer the last scrape.
        self.depths: dict[tuple[Priority, TaskState], int] | None = None
        self.workers = 0
        #: Set by :meth:`refresh`: type -> (the limit holding it back, its pending tasks).
        self.held: dict[str, tuple[str, int]] = {}
        #: The grouped task types' group counts and top groups, as the stats name them (at
        #: most :data:`~taskqueue.models.TOP_GROUPS` per type: the label values stay bounded).
        self.groups: list[GroupStats] = []
        #: Set by :meth:`watch_worker` in a daemon that runs tasks.
        self.in_flight: Callable[[], int] | None = None
        self.concurrency = 0
        #: Events of the worker's services and of the Redis client, as plain counts.
        self.worker_heartbeats = 0
        self.workers_cleaned_up = 0
        self.leases_reaped = 0
        self.outcomes_refused = 0
        self.leases_lost: dict[str, int] = {"running": 0, "waiting": 0}
        self.records_trimmed: dict[str, int] = dict.fromkeys(
            ("succeeded", "cancelled", "expired", "dead"), 0
        )
        self.redis_errors: dict[str, int] = {}  # kind -> count
        self.redis_reconnects = 0
        #: API requests: (api, route, method, status) -> count; (api, route) -> latencies.
        self.api_requests: dict[tuple[str, str, str, str], int] = {}
        self.api_duration: dict[tuple[str, str], Buckets] = {}
        r.register(_TaskCollector(self))
        r.register(_StateCollector(self))
        r.register(_EventCollector(self))

    # -- tasks -----------------------------------------------------------------------------

    def task_counts(self, task_type: str, priority: str) -> TaskCounts:
        """The counters of ``task_type`` at ``priority`` (those of :data:`OTHER_TYPE` for a
        type no worker registered); hold on to it, it stays the same.

        Called for every claimed task, so the common case is two dict lookups (a ``Priority``
        works as the key: it is a ``str``).
        """
        try:
            return self._index[task_type][priority]
        except KeyError:
            return self._new_task_counts(task_type, str(priority))

    def _new_task_counts(self, task_type: str, priority: str) -> TaskCounts:
        if task_type not in self.served and task_type != OTHER_TYPE:
            return self.task_counts(OTHER_TYPE, priority)  # not indexed: it may be served later
        if len(self._counts) >= MAX_TASK_SERIES and task_type != OTHER_TYPE:
            return self.task_counts(OTHER_TYPE, priority)  # not indexed: no growth per type
        counts = self._counts[(task_type, priority)] = TaskCounts(task_type, priority)
        self._index.setdefault(task_type, {})[priority] = counts
        return counts

    def watch_worker(
        self, in_flight: Callable[[], int], concurrency: int, task_types: Iterable[str] = ()
    ) -> None:
        """Report a worker's in-flight tasks (read when scraped) and its concurrency limit;
        the ``task_types`` it runs are registered types from now on."""
        self.in_flight = in_flight
        self.concurrency = concurrency
        self.served.update(task_types)

    # -- Redis -----------------------------------------------------------------------------

    def redis_error(self, error: RedisError) -> None:
        """The Redis client's error hook: count what signals trouble, not a script's answer."""
        if isinstance(error, AuthenticationError):
            kind = "auth"
        elif isinstance(error, RedisConnectionError):
            kind = "connection"
        elif isinstance(error, ResponseError):
            code = str(error).split(" ", 1)[0]
            if code not in _REDIS_ERROR_CODES:
                return
            kind = code.lower()
        else:
            kind = "other"
        self.redis_errors[kind] = self.redis_errors.get(kind, 0) + 1

    def redis_reconnected(self) -> None:
        self.redis_reconnects += 1

    # -- the worker's services ---------------------------------------------------------------

    def heartbeat_sent(self) -> None:
        self.worker_heartbeats += 1

    def outcome_refused(self) -> None:
        self.outcomes_refused += 1

    def lease_lost(self, *, started: bool) -> None:
        self.leases_lost["running" if started else "waiting"] += 1

    def trimmed(self, result: TrimResult) -> None:
        for state in ("succeeded", "cancelled", "expired", "dead"):
            self.records_trimmed[state] += getattr(result, state)

    def reaped(self, leases: int, workers: int) -> None:
        self.leases_reaped += leases
        self.workers_cleaned_up += workers

    def tasks_expired(self, expired: Sequence[tuple[str, Priority]]) -> None:
        """As the broker's observer: tasks a claim or the scheduler ended past their deadline."""
        for task_type, priority in expired:
            self.task_counts(task_type, priority).expired += 1

    def lease_expired(self, task_type: str, priority: str, state: TaskState) -> None:
        """Count the outcome of an attempt the reaper ended (its worker died): a failed
        attempt, retried or dead-lettered, or a cancellation that had been asked for. A worker
        claimed the task, and workers claim only the types they registered."""
        self.served.add(task_type)
        counts = self.task_counts(task_type, priority)
        if state is TaskState.CANCELLED:
            counts.cancelled += 1
            return
        counts.failed += 1
        if state is TaskState.DEAD:
            counts.dead += 1
        elif state is TaskState.EXPIRED:
            counts.expired += 1
        else:
            counts.retried += 1

    # -- the API ---------------------------------------------------------------------------

    def tasks_submitted(
        self, submissions: Sequence[Submission], results: Sequence[Submitted]
    ) -> None:
        """As the broker's observer: count the new tasks, at the priority enqueue.lua gave."""
        for s, r in zip(submissions, results, strict=True):
            if r.created and r.priority is not None:
                if unserved_warning(s.type) not in r.warnings:
                    self.served.add(s.type)  # enqueue.lua found a live worker serving it
                self.task_counts(s.type, r.priority).submitted += 1

    def task_cancelled(self, cancellation: Cancellation) -> None:
        """As the broker's observer: a waiting task cancelled (no worker will count it)."""
        if cancellation.outcome == "cancelled":
            self.task_counts(cancellation.type, cancellation.priority).cancelled += 1

    def tasks_cancelled(self, cancellation: BulkCancellation) -> None:
        """As the broker's observer: the waiting tasks a bulk cancel ended."""
        for priority, n in cancellation.by_priority.items():
            self.task_counts(cancellation.type, priority).cancelled += n

    def api_request(self, api: str, route: str, method: str, status: str, seconds: float) -> None:
        """Count one request; ``route`` must be a template or "unmatched", never a raw path."""
        key = (api, route, method, status)
        self.api_requests[key] = self.api_requests.get(key, 0) + 1
        buckets = self.api_duration.get((api, route))
        if buckets is None:
            buckets = self.api_duration[(api, route)] = Buckets()
        buckets.observe(seconds)

    # -- scraping --------------------------------------------------------------------------

    async def refresh(self, broker: Broker) -> None:
        """Read queue depths, the number of workers and the served types from Redis: one round
        trip (:meth:`Broker.stats_and_served`, which reads counters, never scans tasks).

        When Redis does not answer within :data:`REFRESH_TIMEOUT`, the scrape goes on without
        them (``taskqueue_redis_up`` 0) rather than failing: the process's own counters are
        worth having most when Redis is in trouble.
        """
        try:
            with trio.fail_after(REFRESH_TIMEOUT):
                stats, served = await broker.stats_and_served()
            self.depths, self.workers = queue_depths(stats), stats.workers
            self.held = {
                t: (limit, stats.pending_by_type.get(t, 0))
                for t, limit in stats.held_by_limit.items()
            }
            self.groups = stats.groups
            self.served.update(served)
        except (RedisError, trio.TooSlowError) as exc:
            log.debug("metrics: cannot read the queue depths: %s", exc)
            self.depths = None

    def render(self) -> bytes:
        """The registry in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


def queue_depths(stats: QueueStats) -> dict[tuple[Priority, TaskState], int]:
    """Tasks per (priority, state) of :data:`DEPTH_STATES`, every pair present."""
    depths = {(p, s): 0 for p in Priority for s in DEPTH_STATES}
    for (state, priority), count in stats.by_state_and_priority.items():
        if (priority, state) in depths:
            depths[(priority, state)] = count
    return depths
