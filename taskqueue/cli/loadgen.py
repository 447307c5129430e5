"""The load generator behind ``taskqueue bench``: it measures the queue from submit to finish.

It submits N tasks of one type, at a target rate or as fast as batches go, waits for every one
to end, and reports throughput and latency percentiles. Latencies come from the task records
(``finished_ms - created_ms``, both stamped by the broker), not from when this process noticed,
so they are the queue's numbers and not the observer's.

Completion is followed on the broker's event channel (no polling of thousands of records); a
slow reconciliation pass over the tasks not yet seen to end covers a lost subscription, and one
final read of all the records gives the numbers. The arithmetic (pacing, percentiles, the
report) is in plain functions the tests call directly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from taskqueue.broker import Submission
from taskqueue.cli.output import ProgressBars
from taskqueue.cli.views import Details, span
from taskqueue.client import Client
from taskqueue.models import Task, TaskState

#: Records read per round trip when reconciling and in the final read.
_READ_CHUNK = 1000
#: How often tasks not seen to end on the event channel are looked up directly.
_RECONCILE_EVERY = 1.0


@attrs.frozen(kw_only=True)
class BenchPlan:
    """What to submit and how fast. ``rate`` None: as fast as ``batch``-sized batches go."""

    count: int
    task_type: str = "noop"
    payload: Any = None
    rate: float | None = None
    batch: int = 200
    priority: str | None = None
    #: Seconds to wait, after the last submission, for the tasks to end.
    timeout: float = 300.0


@attrs.frozen(kw_only=True)
class BenchReport:
    """The outcome of a run. Times in seconds; ``latency`` and ``wait`` map p50/p90/p99/max
    to seconds (``wait`` is submit-to-start, ``latency`` submit-to-finish)."""

    task_type: str
    count: int
    finished: int
    by_state: dict[str, int]
    submit_seconds: float
    submit_rate: float
    #: First submission to last finish, from the records.
    elapsed_seconds: float
    throughput: float
    latency: dict[str, float]
    wait: dict[str, float]
    timed_out: bool

    @property
    def ok(self) -> bool:
        """Every task ended, and every one succeeded."""
        return not self.timed_out and self.by_state.get(TaskState.SUCCEEDED.value, 0) == self.count

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "ok": self.ok}


def due(elapsed: float, rate: float, count: int) -> int:
    """How many of ``count`` tasks paced at ``rate`` per second should be out ``elapsed``
    seconds after the start: the first goes at once, then one every ``1/rate`` seconds."""
    if elapsed < 0:
        return 0
    return min(count, math.floor(elapsed * rate) + 1)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``ordered`` (sorted ascending):
    a value that was really observed, so p99 of 100 samples is the 99th, not an interpolation."""
    if not ordered:
        return math.nan
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def _spread(values: list[float]) -> dict[str, float]:
    values.sort()
    if not values:
        return {}
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": values[-1],
    }


def summarize(
    plan: BenchPlan, tasks: Sequence[Task], *, submit_seconds: float, timed_out: bool
) -> BenchReport:
    """The report on ``tasks`` (the records read at the end, missing ones left out)."""
    by_state: dict[str, int] = {}
    for task in tasks:
        by_state[task.state.value] = by_state.get(task.state.value, 0) + 1
    ended = [t for t in tasks if t.state.is_terminal and t.finished_ms is not None]
    latency = [(t.finished_ms - t.created_ms) / 1000 for t in ended if t.finished_ms is not None]
    wait = [(t.started_ms - t.created_ms) / 1000 for t in ended if t.started_ms is not None]
    if ended:
        first = min(t.created_ms for t in tasks)
        last = max(t.finished_ms for t in ended if t.finished_ms is not None)
        elapsed = max(0.001, (last - first) / 1000)
    else:
        elapsed = 0.0
    return BenchReport(
        task_type=plan.task_type,
        count=plan.count,
        finished=len(ended),
        by_state=dict(sorted(by_state.items())),
        submit_seconds=submit_seconds,
        submit_rate=plan.count / submit_seconds if submit_seconds > 0 else math.inf,
        elapsed_seconds=elapsed,
        throughput=len(ended) / elapsed if elapsed else 0.0,
        latency=_spread(latency),
        wait=_spread(wait),
        timed_out=timed_out,
    )


def report_details(report: BenchReport) -> Details:
    def spread(values: dict[str, float]) -> str:
        if not values:
            return "-"
        return "  ".join(f"{name} {span(seconds)}" for name, seconds in values.items())

    states = ", ".join(f"{n} {state}" for state, n in report.by_state.items())
    pairs: list[tuple[str, str]] = [
        ("tasks", f"{report.count} of type {report.task_type}"),
        ("submitted in", f"{span(report.submit_seconds)} ({report.submit_rate:,.0f}/s)"),
        ("finished", f"{report.finished} ({states or 'none'})"),
        ("elapsed", span(report.elapsed_seconds)),
        ("throughput", f"{report.throughput:,.1f} tasks/s"),
        ("latency", spread(report.latency)),
        ("queue wait", spread(report.wait)),
    ]
    if report.timed_out:
        pairs.append(("timed out", f"{report.count - report.finished} tasks had not ended"))
    return Details(list(pairs), title="bench")


async def run_bench(client: Client, plan: BenchPlan, bars: ProgressBars) -> BenchReport:
    """Submit ``plan.count`` tasks, follow them to their end, and report.

    Bar 0 counts submissions and bar 1 endings. Cancelling this (Ctrl-C) leaves the submitted
    tasks queued: they are ordinary tasks, and a worker runs them all the same.
    """
    submission = Submission(type=plan.task_type, payload=plan.payload, priority=plan.priority)
    ids: list[str] = []
    outstanding: set[str] = set()
    ended_early: set[str] = set()  # ended before this side had recorded their submission
    all_ended = trio.Event()
    submitted_all = trio.Event()
    submit_seconds = 0.0

    def ended(task_id: str) -> None:
        if task_id in outstanding:
            outstanding.discard(task_id)
            bars.advance(bar=1)
            if submitted_all.is_set() and not outstanding:
                all_ended.set()
        elif not submitted_all.is_set():
            ended_early.add(task_id)

    async def submit() -> None:
        nonlocal submit_seconds
        start = time.perf_counter()
        while len(ids) < plan.count:
            if plan.rate is None:
                want = min(plan.batch, plan.count - len(ids))
            else:
                behind = due(time.perf_counter() - start, plan.rate, plan.count) - len(ids)
                if behind <= 0:
                    # When the next task is due; rounding in due() can put it a hair behind.
                    next_due = len(ids) / plan.rate - (time.perf_counter() - start)
                    await trio.sleep(max(0.0, next_due))
                    continue
                want = min(plan.batch, behind)
            done = await client.submit_many([submission] * want)
            for s in done:
                ids.append(s.id)
                if s.id in ended_early:
                    bars.advance(bar=1)
                else:
                    outstanding.add(s.id)
            bars.advance(len(done), bar=0)
        submit_seconds = time.perf_counter() - start
        submitted_all.set()
        if not outstanding:
            all_ended.set()

    async def follow(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with client.events() as events:
            task_status.started()
            async for event in events:
                if event.is_end:
                    ended(event.task_id)

    async def reconcile() -> None:
        while True:
            await trio.sleep(_RECONCILE_EVERY)
            waiting = list(outstanding)[:_READ_CHUNK]
            for task_id, task in zip(waiting, await client.get_many(waiting), strict=True):
                if task is not None and task.state.is_terminal:
                    ended(task_id)

    timed_out = False
    async with trio.open_nursery() as nursery:
        await nursery.start(follow)  # subscribed before the first submit: no end is missed
        nursery.start_soon(reconcile)
        await submit()
        with trio.move_on_after(plan.timeout) as scope:
            await all_ended.wait()
        timed_out = scope.cancelled_caught
        nursery.cancel_scope.cancel()
    tasks: list[Task] = []
    for start in range(0, len(ids), _READ_CHUNK):
        found = await client.get_many(ids[start : start + _READ_CHUNK])
        tasks += [t for t in found if t is not None]
    return summarize(plan, tasks, submit_seconds=submit_seconds, timed_out=timed_out)
