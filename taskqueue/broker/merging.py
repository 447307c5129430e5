"""One answer from the answers of a namespace's partitions (see
:mod:`~taskqueue.broker.partitions`): what a namespace-wide read or sweep returns when each
partition answered for its own tasks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from taskqueue.broker.model import (
    BulkCancellation,
    HeartbeatReply,
    PromoteResult,
    ReapResult,
    TrimResult,
)
from taskqueue.models import TOP_GROUPS, Claim, GroupLoad, GroupStats, QueueStats

K = TypeVar("K", bound=Hashable)


def summed(counts: Iterable[Mapping[K, int]]) -> dict[K, int]:
    """The per-key sums of several count mappings, in the order keys first appear."""
    total: Counter[K] = Counter()
    for each in counts:
        total.update(each)
    return dict(total)


def merge_stats(parts: Sequence[QueueStats]) -> QueueStats:
    """The namespace's counts: every partition's summed. Every partition registers every
    worker, so the worker count is the largest any partition holds (one that has not yet
    seen a new worker's first beat counts fewer)."""
    if len(parts) == 1:
        return parts[0]
    held: dict[str, str] = {}
    for part in parts:
        held.update(part.held_by_limit)
    return QueueStats(
        by_state=summed(p.by_state for p in parts),
        pending_by_priority=summed(p.pending_by_priority for p in parts),
        pending_by_type=summed(p.pending_by_type for p in parts),
        by_state_and_type=summed(p.by_state_and_type for p in parts),
        totals=summed(p.totals for p in parts),
        workers=max(p.workers for p in parts),
        by_state_and_priority=summed(p.by_state_and_priority for p in parts),
        held_by_limit=held,
        groups=merge_groups([g for p in parts for g in p.groups]),
    )


def merge_groups(stats: Iterable[GroupStats]) -> list[GroupStats]:
    """One :class:`GroupStats` per type (a group's tasks all live in one partition, so the
    counts add up), its top groups re-ranked across partitions."""
    by_type: dict[str, list[GroupStats]] = {}
    for each in stats:
        by_type.setdefault(each.type, []).append(each)
    merged = []
    for task_type, parts in sorted(by_type.items()):
        top: list[GroupLoad] = sorted(
            (load for part in parts for load in part.top),
            key=lambda load: (-load.pending, -load.active, load.group),
        )
        merged.append(
            GroupStats(
                type=task_type,
                groups_pending=sum(p.groups_pending for p in parts),
                groups_active=sum(p.groups_active for p in parts),
                top=top[:TOP_GROUPS],
            )
        )
    return merged


def merge_claims(parts: Sequence[Claim]) -> Claim:
    """The tasks of every partition's claim, and the earliest time a held task may start."""
    if len(parts) == 1:
        return parts[0]
    held = [p.held_until_ms for p in parts if p.held_until_ms is not None]
    return Claim(
        [task for p in parts for task in p.tasks],
        min(held) if held else None,
        [expired for p in parts for expired in p.expired],
        [task for p in parts for task in p.handed],
    )


def merge_heartbeats(parts: Sequence[HeartbeatReply]) -> HeartbeatReply:
    return HeartbeatReply(
        lost=[t for p in parts for t in p.lost],
        cancel_requested=[t for p in parts for t in p.cancel_requested],
    )


def merge_reaps(parts: Sequence[ReapResult]) -> ReapResult:
    """Every partition's reaped tasks; a dead worker is removed from each, named once."""
    return ReapResult(
        reaped=sum(p.reaped for p in parts),
        workers_removed=list(dict.fromkeys(w for p in parts for w in p.workers_removed)),
        outcomes=[o for p in parts for o in p.outcomes],
    )


def merge_trims(parts: Sequence[TrimResult]) -> TrimResult:
    return TrimResult(
        succeeded=sum(p.succeeded for p in parts),
        cancelled=sum(p.cancelled for p in parts),
        dead=sum(p.dead for p in parts),
        expired=sum(p.expired for p in parts),
        types_dropped=sum(p.types_dropped for p in parts),
    )


def merge_promotes(parts: Sequence[PromoteResult]) -> PromoteResult:
    due = [p.next_due_ms for p in parts if p.next_due_ms is not None]
    return PromoteResult(
        promoted=sum(p.promoted for p in parts),
        next_due_ms=min(due) if due else None,
        expired=[e for p in parts for e in p.expired],
    )


def merge_bulk_cancellations(parts: Sequence[BulkCancellation]) -> BulkCancellation:
    return BulkCancellation(
        type=parts[0].type,
        by_state=summed(p.by_state for p in parts),
        by_priority=summed(p.by_priority for p in parts),
        requested=sum(p.requested for p in parts),
    )
