"""Operations on a namespace of several partitions (see :mod:`~taskqueue.broker.partitions`),
built from the one-partition operations of :mod:`~taskqueue.broker.operations`.

I/O-free like those: an operation here sends a task's work to the partition its id names,
a submission to the partitions its placement chose, and a namespace-wide one to every
partition at once (a :class:`~taskqueue.broker.operations.Parallel` step, which the async
broker runs concurrently and the sync client one after another), then merges the answers
(:mod:`~taskqueue.broker.merging`). With one partition, each is the operation it wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from taskqueue.broker import cursors, operations
from taskqueue.broker.keys import Keys
from taskqueue.broker.merging import (
    merge_bulk_cancellations,
    merge_claims,
    merge_heartbeats,
    merge_stats,
)
from taskqueue.broker.model import (
    BrokerSettings,
    BulkCancellation,
    HeartbeatReply,
    Page,
    QueueReport,
    Submission,
    Submitted,
    TaskView,
)
from taskqueue.broker.operations import Operation, Parallel
from taskqueue.broker.partitions import AwayFromHome, Placer, key_partition, partition_of
from taskqueue.errors import IdempotencyKeyNotFoundError
from taskqueue.models import Claim, QueueStats, TaskState, WorkerInfo

T = TypeVar("T")
Item = TypeVar("Item")
Partitions = Sequence[Keys]


def keys_of(partitions: Partitions, task_id: str) -> Keys:
    """The keys of the partition ``task_id`` lives in."""
    return partitions[partition_of(task_id, len(partitions))]


def each(partitions: Partitions, make: Callable[[Keys], Operation[T]]) -> Operation[list[T]]:
    """``make``'s operation on every partition, at once; the answers in partition order."""
    if len(partitions) == 1:
        return [(yield from make(partitions[0]))]
    answers: list[T] = yield Parallel(tuple(make(keys) for keys in partitions))
    return answers


def by_task(
    partitions: Partitions,
    items: Sequence[Item],
    task_id: Callable[[Item], str],
    make: Callable[[Keys, list[Item]], Operation[list[T]]],
) -> Operation[list[T]]:
    """An operation on many tasks, each partition given its own tasks' items: the answers,
    one per item, in the items' order."""
    count = len(partitions)
    if count == 1:
        return (yield from make(partitions[0], list(items)))
    shares = _shares(partition_of(task_id(item), count) for item in items)
    replies = yield Parallel(
        tuple(make(partitions[p], [items[i] for i in indices]) for p, indices in shares)
    )
    return _reassembled(len(items), shares, replies)


def paged(
    partitions: Partitions,
    make: Callable[[Keys, str | None, int], Operation[Page[Item]]],
    limit: int,
    cursor: str | None,
) -> Operation[Page[Item]]:
    """One page of a listing across partitions: partition by partition, each in its own
    order, a page that ends a partition going on into the next. The cursor names the
    partition (:func:`~taskqueue.broker.cursors.partition_cursor`)."""
    count = len(partitions)
    if count == 1:
        return (yield from make(partitions[0], cursor, limit))
    partition, inner = cursors.read_partition(cursor, count)
    items: list[Item] = []
    while True:
        page = yield from make(partitions[partition], inner, limit - len(items))
        items += page.items
        if page.next_cursor is not None:
            return Page(items, cursors.partition_cursor(partition, page.next_cursor))
        partition, inner = partition + 1, None
        if partition == count:
            return Page(items, None)
        if len(items) >= limit:
            return Page(items, cursors.partition_cursor(partition, None))


def total(partitions: Partitions, make: Callable[[Keys], Operation[int]]) -> Operation[int]:
    """The sum of ``make``'s counts over every partition (a bulk operation's: how many)."""
    return sum((yield from each(partitions, make)))


# -- submitting -------------------------------------------------------------------------------


def enqueue_many(
    settings: BrokerSettings,
    partitions: Partitions,
    placer: Placer,
    submissions: Sequence[Submission],
    now: int,
    *,
    strict: bool = False,
) -> Operation[list[Submitted]]:
    """Submit a batch, each task to the partition ``placer`` chooses: atomically when they
    all share one (as they do unless keys pin them apart), else each partition's share in
    one script of its own, all at once. Then a refusal by one partition (a full queue, too
    many types) leaves what the others wrote; an invalid task is still refused before
    anything is written, named by its index in the whole batch.

    A share refused because it holds a limited type away from its home (nothing written)
    is placed again, with that type homed, and sent again: once per type learnt."""
    if len(partitions) == 1:
        return (
            yield from operations.enqueue_many(
                settings, partitions[0], submissions, now, strict=strict
            )
        )
    answers: list[Any] = [None] * len(submissions)
    waiting = list(range(len(submissions)))
    checked = False
    while waiting:
        batch = [submissions[i] for i in waiting]
        shares = _shares(placer.place(batch))
        if len(shares) > 1 and not checked:
            operations.validate_submissions(settings, submissions, now)
            checked = True
        attempts = tuple(
            _homing(
                operations.enqueue_many(
                    settings,
                    partitions[p],
                    [batch[i] for i in indices],
                    now,
                    strict=strict,
                    partition=p,
                )
            )
            for p, indices in shares
        )
        replies = [(yield from attempts[0])] if len(attempts) == 1 else (yield Parallel(attempts))
        refused: list[int] = []
        for (_, indices), reply in zip(shares, replies, strict=True):
            if isinstance(reply, AwayFromHome):
                if reply.task_type in placer.homed:  # pragma: no cover - Redis disagrees
                    raise RuntimeError(f"partition refused {reply.task_type!r} at its home")
                placer.home(reply.task_type)
                refused += [waiting[i] for i in indices]
                continue
            for index, answer in zip(indices, reply, strict=True):
                answers[waiting[index]] = answer
        waiting = sorted(refused)
    return answers


def enqueue_and_view(
    settings: BrokerSettings,
    partitions: Partitions,
    placer: Placer,
    submission: Submission,
    now: int,
    cut_at: int,
) -> Operation[tuple[Submitted, TaskView]]:
    while True:
        (partition,) = placer.place((submission,))
        try:
            return (
                yield from operations.enqueue_and_view(
                    settings, partitions[partition], submission, now, cut_at, partition
                )
            )
        except AwayFromHome as away:
            if away.task_type in placer.homed:  # pragma: no cover - Redis disagrees
                raise RuntimeError(f"partition refused {away.task_type!r} at its home") from None
            placer.home(away.task_type)


def _homing(operation: Operation[list[Submitted]]) -> Operation[list[Submitted] | AwayFromHome]:
    """``operation``'s answer, or its :class:`AwayFromHome` refusal as the answer."""
    try:
        return (yield from operation)
    except AwayFromHome as away:
        return away


# -- working ----------------------------------------------------------------------------------


def claim(
    settings: BrokerSettings,
    partitions: Partitions,
    first: int,
    worker_id: str,
    task_types: Sequence[str],
    count: int,
    now: int,
    *,
    guard_turn: bool,
    hand_offs: str | None = None,
) -> Operation[Claim]:
    """Up to ``count`` tasks, asking the partitions in turn from ``first``: each is asked
    only for what the ones before left short, so a busy partition fills a claim in one
    script and an idle namespace costs one script per partition (each of which registers
    the worker for a hand-off, with ``hand_offs``)."""
    parts: list[Claim] = []
    wanted = count
    for partition in [*range(first, len(partitions)), *range(first)]:
        part = yield from operations.claim(
            settings,
            partitions[partition],
            worker_id,
            task_types,
            wanted,
            now,
            guard_turn=guard_turn,
            hand_offs=hand_offs,
        )
        parts.append(part)
        wanted -= len(part.tasks)
        if wanted <= 0:
            break
    return merge_claims(parts)


def heartbeat(
    settings: BrokerSettings,
    partitions: Partitions,
    worker: WorkerInfo,
    running: Iterable[tuple[str, int]],
    now: int,
) -> Operation[HeartbeatReply]:
    """The worker registered in every partition (each reaps its own leases), each
    partition's leases refreshed there."""
    if len(partitions) == 1:
        return (yield from operations.heartbeat(settings, partitions[0], worker, running, now))
    shares: list[list[tuple[str, int]]] = [[] for _ in partitions]
    for lease in running:
        shares[partition_of(lease[0], len(partitions))].append(lease)
    replies = yield Parallel(
        tuple(
            operations.heartbeat(settings, keys, worker, share, now)
            for keys, share in zip(partitions, shares, strict=True)
        )
    )
    return merge_heartbeats(replies)


def cancel_all(
    partitions: Partitions,
    task_type: str,
    clock: Callable[[], int],
    *,
    states: Sequence[TaskState],
    include_active: bool,
) -> Operation[BulkCancellation]:
    return merge_bulk_cancellations(
        (
            yield from each(
                partitions,
                lambda keys: operations.cancel_all(
                    keys, task_type, clock, states=states, include_active=include_active
                ),
            )
        )
    )


# -- reading ----------------------------------------------------------------------------------


def view_by_key(partitions: Partitions, idempotency_key: str, cut_at: int) -> Operation[TaskView]:
    """The task of an idempotency key: in the partition the key names, else (a limited
    type's task lives in its type's home) in any other."""
    count = len(partitions)
    first = key_partition("idem:" + idempotency_key, count)
    try:
        return (yield from operations.view_by_key(partitions[first], idempotency_key, cut_at))
    except IdempotencyKeyNotFoundError:
        if count == 1:
            raise
    others = [keys for keys in partitions if keys.partition != first]
    found: list[TaskView | None] = yield Parallel(
        tuple(_found(operations.view_by_key(keys, idempotency_key, cut_at)) for keys in others)
    )
    for view in found:
        if view is not None:
            return view
    raise IdempotencyKeyNotFoundError(idempotency_key)


def _found(operation: Operation[TaskView]) -> Operation[TaskView | None]:
    try:
        return (yield from operation)
    except IdempotencyKeyNotFoundError:
        return None


def stats(partitions: Partitions, now: int) -> Operation[QueueStats]:
    return merge_stats((yield from each(partitions, lambda keys: operations.stats(keys, now))))


def stats_and_served(
    partitions: Partitions, now: int
) -> Operation[tuple[QueueStats, frozenset[str]]]:
    """The namespace's counts and served types (every worker registers in partition 0)."""
    if len(partitions) == 1:
        return (yield from operations.stats_and_served(partitions[0], now))
    return (yield from stats(partitions, now)), (
        yield from operations.served_types(partitions[0], now)
    )


def queue_report(
    settings: BrokerSettings, partitions: Partitions, now: int
) -> Operation[QueueReport]:
    """Partition 0's report (served types and policy are every partition's) with the whole
    namespace's counts."""
    report = yield from operations.queue_report(settings, partitions[0], now)
    if len(partitions) == 1:
        return report
    others = yield from each(partitions[1:], lambda keys: operations.stats(keys, now))
    return QueueReport(merge_stats([report.stats, *others]), report.served, report.policy)


# -- helpers ----------------------------------------------------------------------------------


def _shares(partition_of_item: Iterable[int]) -> list[tuple[int, list[int]]]:
    """(partition, the indices of its items), for the partitions that have any."""
    shares: dict[int, list[int]] = {}
    for index, partition in enumerate(partition_of_item):
        shares.setdefault(partition, []).append(index)
    return list(shares.items())


def _reassembled(
    size: int, shares: Sequence[tuple[int, list[int]]], replies: Sequence[Sequence[Any]]
) -> list[Any]:
    """One answer per item, in the items' order, from each share's answers."""
    answers: list[Any] = [None] * size
    for (_, indices), reply in zip(shares, replies, strict=True):
        for index, answer in zip(indices, reply, strict=True):
            answers[index] = answer
    return answers
