"""Workflows as batches: chains and chords built from plain submissions.

A workflow is a batch of :class:`~taskqueue.models.Submission` whose ``depends_on`` name
earlier tasks of the batch by index, submitted in one call (``submit_many``), so the broker
stores the whole DAG atomically and decides in its scripts when each task may run. These
helpers only write the indices; anything else (a diamond, a fan-in of two chains) is a
``depends_on`` list written by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from taskqueue.models import Submission

__all__ = ["chain", "chord"]


def chain(*steps: Submission) -> list[Submission]:
    """Each step after the first runs once the one before it succeeded, and receives that
    step's result as ``ctx.inputs[0]``. A step's own ``depends_on`` (task ids) are kept."""
    return [_after(step, [n - 1] if n else []) for n, step in enumerate(steps)]


def chord(members: Sequence[Submission], callback: Submission) -> list[Submission]:
    """The members run in parallel (a group); ``callback`` runs once, after all of them
    succeeded, with their results in order as ``ctx.inputs``. A member that ends dead or
    cancelled cancels the callback, unless it has ``on_dependency_failure="run"``."""
    if not members:
        raise ValueError("a chord needs at least one member")
    return [*members, _after(callback, list(range(len(members))))]


def _after(step: Submission, indices: list[int]) -> Submission:
    """``step`` depending also on the batch's tasks at ``indices``."""
    if not indices:
        return step
    own = [dep for dep in step.depends_on or () if isinstance(dep, str)]
    if len(own) != len(step.depends_on or ()):
        raise ValueError("a workflow step may name other tasks by id only; indices are its own")
    return msgspec.structs.replace(step, depends_on=[*indices, *own])
