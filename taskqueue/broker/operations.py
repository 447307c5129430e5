"""The queue operations a producer or an operator needs, written once and free of I/O.

The trio :class:`~taskqueue.broker.Broker` and the synchronous
:class:`~taskqueue.SyncClient` (on redis-py) both run these, so a submission's validation, a
script's arguments, the meaning of its reply and every key name are defined in one place, as
hypercorn keeps its protocols apart from its event loops.

An operation is a generator. It yields a :data:`Step` (a command, a pipeline, or one of the
broker's Lua scripts), is sent the reply, and returns its result; an error reply is thrown into
it as :class:`~taskqueue.redis.ResponseError`, whichever client read it. A driver is a loop of
a dozen lines (:meth:`Broker._run`, :meth:`SyncClient._run`). Most operations are one step;
listings and bulk dead-letter operations take several, each decided by the replies before it.

The worker's operations (claim, report, heartbeat, progress, reap, promote, deregister) are
here too, though only the trio broker runs them: the synchronous client never runs tasks. They
are the hot path, one step each, with no work per task beyond the script's arguments and the
reading of its reply.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import msgspec

from taskqueue import _json
from taskqueue.broker import cursors
from taskqueue.broker.codec import (
    CUT_JSON_FIELDS,
    CUT_TEXT_FIELDS,
    claim_from_reply,
    task_from_hash,
    worker_from_hash,
    worker_to_json,
    workflow_from_reply,
)
from taskqueue.broker.keys import Keys, count_field
from taskqueue.broker.model import (
    BULK_CANCEL_STATES,
    PURGEABLE_STATES,
    BrokerSettings,
    BulkCancellation,
    Cancellation,
    HeartbeatReply,
    Page,
    PromoteResult,
    QueueReport,
    ReapedTask,
    ReapResult,
    Report,
    Submission,
    Submitted,
    TaskView,
    TrimResult,
    unserved_warning,
)
from taskqueue.broker.partitions import AwayFromHome, away_types, tag_id
from taskqueue.broker.policy import (
    GLOBAL_SETTINGS,
    REDIS_NAMES,
    SUBMISSION_NAMES,
    TYPE_CONFIG_SETTINGS,
    TYPE_SETTINGS,
    Layer,
    PolicyView,
    encode_value,
)
from taskqueue.broker.policy import unsets as policy_unsets
from taskqueue.broker.policy import writes as policy_writes
from taskqueue.broker.scripts import load_scripts
from taskqueue.broker.validation import task_fields, task_type_problem
from taskqueue.errors import (
    ConflictingStateError,
    DurabilityUnsupportedError,
    IdempotencyKeyNotFoundError,
    InvalidTaskError,
    NotDurableError,
    QueueFullError,
    TaskNotFoundError,
    TooManyTypesError,
    UnservedTypeError,
)
from taskqueue.ids import new_task_ids
from taskqueue.models import (
    DEFAULT_PAGE,
    HELD_FRESH_MS,
    MAX_PAGE,
    MAX_WORKFLOW_TASKS,
    PRIORITY_ORDER,
    TOP_GROUPS,
    Claim,
    GroupLoad,
    GroupStats,
    Policy,
    Priority,
    QueueStats,
    Task,
    TaskState,
    WorkerInfo,
    Workflow,
    validated,
)
from taskqueue.outcomes import OutcomeKind
from taskqueue.rates import parse_rate
from taskqueue.redis import NoScriptError, ResponseError, Script

T = TypeVar("T")
Item = TypeVar("Item")
Arg = str | int | float
#: Members of the types set one trim samples for types without tasks (see trim.lua).
TYPE_SWEEP = 100


@attrs.frozen
class Call:
    """One command; its reply."""

    args: tuple[Arg, ...]


@attrs.frozen
class Pipeline:
    """Commands sent together in one round trip; their replies as a list."""

    commands: tuple[tuple[Arg, ...], ...]


@attrs.frozen
class RunScript:
    """One of the broker's Lua scripts; ``keys`` is always the namespace prefix alone."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


@attrs.frozen
class Parallel:
    """Operations that may run at once (on a cluster, each on its own node): their answers
    as a list, in order. The first error is raised, as itself, once all have ended."""

    operations: tuple[Generator[Any, Any, Any], ...]


Step = Call | Pipeline | RunScript | Parallel
#: A queue operation: yields steps, is sent their replies, returns ``T``.
Operation = Generator[Step, Any, T]

#: Dead-letter ids read per step by the bulk operations.
DEAD_CHUNK = 500
#: Tasks one step of a bulk cancel cancels at most, and members of a state's sorted set it
#: scans at most: each step is one short script, so Redis serves others in between.
CANCEL_CHUNK = 1000


def _script(keys: Keys, name: str, *args: Arg) -> RunScript:
    return RunScript(getattr(load_scripts(), name), (keys.prefix, keys.fence), args)


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """A hash from its flat HGETALL reply ``[field, value, field, value, ...]``."""
    it = iter(flat)
    return dict(zip(it, it, strict=True))


# -- submitting -------------------------------------------------------------------------------


def enqueue_many(
    settings: BrokerSettings,
    keys: Keys,
    submissions: Sequence[Submission],
    now: int,
    *,
    strict: bool = False,
    partition: int = 0,
) -> Operation[list[Submitted]]:
    """Submit a batch atomically, in one round trip (see :meth:`Broker.enqueue_many`), to
    ``partition`` (whose keys ``keys`` are)."""
    if not submissions:
        return []
    script, _ = _enqueue_script(settings, keys, submissions, now, strict, partition)
    try:
        if settings.durable_submit:
            reply, not_on_disk = yield from _with_fsync(settings, script)
        else:
            reply, not_on_disk = (yield script), None
    except ResponseError as exc:
        raise _refusal(str(exc), submissions) from None
    return _submitted(reply, not_on_disk, submissions)


def enqueue_and_view(
    settings: BrokerSettings,
    keys: Keys,
    submission: Submission,
    now: int,
    cut_at: int,
    partition: int = 0,
) -> Operation[tuple[Submitted, TaskView]]:
    """Submit one task and read it back as :func:`view` does, in one round trip: what a
    REST or gRPC submit answers with. The view is sent right behind the script, for the id
    the task gets if it is new; one that found an earlier task (its idempotency key, or as
    unique) is read in a second round trip, as is everything under ``durable_submit``."""
    if settings.durable_submit:
        (submitted,) = yield from enqueue_many(
            settings, keys, (submission,), now, partition=partition
        )
        return submitted, (yield from view(keys, submitted.id, cut_at))
    script, (task_id,) = _enqueue_script(settings, keys, (submission,), now, False, partition)
    reading = _view_script(keys, (task_id,), cut_at)
    reply, read = yield Pipeline((evalsha(script), evalsha(reading)))
    if isinstance(reply, ResponseError):
        if not str(reply).startswith("NOSCRIPT"):
            raise _refusal(str(reply), (submission,))
        (submitted,) = yield from enqueue_many(
            settings, keys, (submission,), now, partition=partition
        )
        return submitted, (yield from view(keys, submitted.id, cut_at))
    (submitted,) = _submitted(reply, None, (submission,))
    if submitted.id != task_id or isinstance(read, ResponseError) or not read[0]:
        return submitted, (yield from view(keys, submitted.id, cut_at))
    return submitted, _task_view(read[0])


def _enqueue_script(
    settings: BrokerSettings,
    keys: Keys,
    submissions: Sequence[Submission],
    now: int,
    strict: bool,
    partition: int,
) -> tuple[RunScript, list[str]]:
    """enqueue.lua for ``submissions`` (validated here), and the ids new tasks get: ids
    that name ``partition``."""
    away = ",".join(away_types(submissions, partition, settings.partitions))
    args: list[Arg] = [now, 1 if strict else 0, away, *_fallback_args(settings)]
    ids = new_task_ids(len(submissions), now)
    if settings.partitions > 1:
        ids = [tag_id(task_id, partition, settings.partitions) for task_id in ids]
    args += _batch_fields(settings, submissions, ids, now)
    return _script(keys, "enqueue", *args), ids


def validate_submissions(
    settings: BrokerSettings, submissions: Sequence[Submission], now: int
) -> None:
    """Raise the :class:`InvalidTaskError` that submitting ``submissions`` would raise."""
    _batch_fields(settings, submissions, new_task_ids(len(submissions), now), now)


def _batch_fields(
    settings: BrokerSettings, submissions: Sequence[Submission], ids: Sequence[str], now: int
) -> list[Arg]:
    """enqueue.lua's fields of each submission; an invalid one named by its index."""
    fields: list[Arg] = []
    for index, submission in enumerate(submissions):
        try:
            fields += task_fields(settings, submission, ids[index], now, index)
        except InvalidTaskError as exc:
            if len(submissions) > 1:
                raise type(exc)(f"task {index}: {exc}", field=f"{index}.{exc.field}") from None
            raise
    return fields


def _submitted(
    reply: Any, not_on_disk: str | None, submissions: Sequence[Submission]
) -> list[Submitted]:
    """What enqueue.lua's reply says of each submission."""
    results, unserved = reply
    if not_on_disk is not None:
        written = [task_id for task_id, created, *_ in results if created]
        raise NotDurableError(
            f"{not_on_disk}; the tasks {', '.join(written) or '(none new)'} were written and"
            " may still run: check on them, or submit again with the same idempotency keys",
            task_ids=written,
        )
    warnings = {t: [unserved_warning(t)] for t in unserved}
    return [
        Submitted(
            task_id,
            TaskState(state),
            bool(created),
            Priority(priority),
            warnings.get(s.type, []) if warnings else [],
            debounced or None,
        )
        for (task_id, created, state, priority, debounced), s in zip(
            results, submissions, strict=True
        )
    ]


def evalsha(script: RunScript) -> tuple[Arg, ...]:
    """``script`` as one EVALSHA command, for a :class:`Pipeline`."""
    return ("EVALSHA", script.script.sha, len(script.keys), *script.keys, *script.args)


def _with_fsync(settings: BrokerSettings, script: RunScript) -> Operation[tuple[Any, str | None]]:
    """``script``'s reply, and None once Redis has fsynced it to its append-only file (else
    why not): the script and a ``WAITAOF`` leave together on one connection, as ``WAITAOF``
    waits for the writes of its own connection. The script's error reply is raised."""
    wait = ("WAITAOF", 1, 0, max(1, round(settings.durable_timeout * 1000)))
    reply, fsynced = yield Pipeline((evalsha(script), wait))
    if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
        source = script.script.source
        reply, fsynced = yield Pipeline((("EVAL", source, *evalsha(script)[2:]), wait))
    if isinstance(reply, ResponseError):
        raise reply
    if isinstance(fsynced, ResponseError):
        return reply, durability_problem(str(fsynced))
    if fsynced[0] < 1:
        return reply, (
            f"Redis did not confirm within {settings.durable_timeout:g} s that the submission"
            " is on disk (redis.durable_submit)"
        )
    return reply, None


def check_durable_submit() -> Operation[None]:
    """Raise :class:`DurabilityUnsupportedError` unless this Redis can confirm persistence
    (``WAITAOF`` exists and ``appendonly`` is on); a daemon with ``durable_submit`` asks at
    start, so a server that cannot is named then rather than at the first submit."""
    try:
        yield Call(("WAITAOF", 1, 0, 1))
    except ResponseError as exc:
        raise DurabilityUnsupportedError(durability_problem(str(exc))) from None


def durability_problem(error: str) -> str:
    """What an error reply to ``WAITAOF`` means for ``redis.durable_submit``, and the fix."""
    if "appendonly" in error:
        cause = "the server's appendonly is off (WAITAOF waits for the append-only file)"
        fix = "set appendonly yes on the server"
    else:
        cause = "the server has no WAITAOF, which Redis 7.2 and newer have"
        fix = "upgrade Redis, or turn redis.durable_submit off and set appendfsync always"
    return f"redis.durable_submit cannot be honoured: {cause} (Redis said: {error}); {fix}"


@functools.lru_cache(maxsize=32)
def _fallback_args(settings: BrokerSettings) -> tuple[Arg, ...]:
    """enqueue.lua's fallback policy fields for ``settings`` (used where Redis holds no
    policy), encoded once per settings rather than on every submit: a quarter of a lone
    submit's own work in Python."""
    fallback = settings.policy()
    return tuple(encode_value(field, getattr(fallback, field)) for field in SUBMISSION_NAMES)


def _refusal(error: str, submissions: Sequence[Submission]) -> Exception:
    """The error for one of enqueue.lua's refusals (any other error reply, unchanged)."""
    if error.startswith("AWAY "):
        return AwayFromHome(error.removeprefix("AWAY "))
    if error.startswith("BADTYPE"):
        index = int(error.split()[1])
        field = "type" if len(submissions) == 1 else f"{index}.type"
        return InvalidTaskError(task_type_problem(submissions[index].type) or error, field=field)
    if error.startswith("TOOMANYTYPES"):
        _, task_type, types, limit = error.split()
        return TooManyTypesError(
            f"task type {task_type!r} has no tasks, and {types} task types already do: the"
            f" policy's max_task_types is {limit}; submit to an existing type, or wait until"
            " some type has no pending, scheduled, active or dead task left",
            task_type=task_type,
        )
    if error.startswith("QUEUEFULL"):
        _, task_type, depth, limit = error.split()
        return QueueFullError(
            f"queue of task type {task_type!r} is full: {depth} pending, limit {limit}"
        )
    if error.startswith("NODEPENDENCY"):
        _, at, dep = error.split(" ", 2)
        position = int(at)
        submission = submissions[position]
        n = next(
            (n for n, d in enumerate(submission.depends_on or ()) if str(d) == dep.lstrip("#")),
            0,
        )
        field = f"depends_on.{n}" if len(submissions) == 1 else f"{position}.depends_on.{n}"
        return InvalidTaskError(
            f"depends on task {dep!r}, which does not exist (never submitted, or its record"
            " expired)",
            field=field,
        )
    if error.startswith("UNSERVED"):
        task_type = error.split()[1]
        index = next(i for i, s in enumerate(submissions) if s.type == task_type)
        field = "type" if len(submissions) == 1 else f"{index}.type"
        return UnservedTypeError(
            f"no live worker serves task type {task_type!r}, and submissions of unserved "
            "types are refused (strict, or the policy's refuse_unserved)",
            field=field,
            task_type=task_type,
        )
    return ResponseError(error)


def served_types(keys: Keys, now: int) -> Operation[frozenset[str]]:
    """The task types some live worker serves (as their heartbeats registered them)."""
    reply = yield Call(("HGETALL", keys.served))
    return frozenset(t for t, until in pairs(reply).items() if int(until) >= now)


# -- policy -----------------------------------------------------------------------------------


def policy(settings: BrokerSettings, keys: Keys) -> Operation[PolicyView]:
    """Both layers of the queue policy (see :mod:`taskqueue.broker.policy`)."""
    live, config = yield Pipeline((("HGETALL", keys.policy_live), ("HGETALL", keys.policy_config)))
    return PolicyView.from_hashes(pairs(live), pairs(config), settings.policy())


def set_policy(
    keys: Keys, layer: Layer, task_type: str | None, settings: Policy, *, replace: bool
) -> Operation[None]:
    """Set ``settings`` in one scope (``task_type`` None: global) of ``layer``; ``replace``:
    unset what ``settings`` leaves unset, else leave it as it is."""
    settings = _checked_policy(settings, task_type)
    fields = policy_writes(settings, task_type, replace=replace)
    if fields:
        yield _script(keys, "set_policy", layer, *fields)


def unset_policy(
    keys: Keys, layer: Layer, task_type: str | None, fields: Sequence[str]
) -> Operation[None]:
    """Unset settings (Policy field names) in one scope of ``layer``."""
    _checked_policy(Policy(), task_type)
    for field in fields:
        if field not in REDIS_NAMES:
            raise InvalidTaskError(
                f"unknown policy setting {field!r}; expected one of {', '.join(REDIS_NAMES)}",
                field=field,
            )
    if fields:
        yield _script(keys, "set_policy", layer, *policy_unsets(fields, task_type))


def set_type_policies(keys: Keys, policies: Mapping[str, Policy]) -> Operation[None]:
    """Write the config layer of task types from their plugins and the configuration's limits
    (a worker does at start), each type's replaced as a whole; the last worker to start wins."""
    fields: list[Arg] = []
    for task_type, p in policies.items():
        config_part = Policy(**{f: getattr(p, f) for f in TYPE_CONFIG_SETTINGS})
        fields += policy_writes(_checked_policy(config_part, task_type), task_type, replace=True)
    if fields:
        yield _script(keys, "set_policy", "config", *fields)


def _checked_policy(settings: Policy, task_type: str | None) -> Policy:
    if task_type is not None and (problem := task_type_problem(task_type)) is not None:
        raise InvalidTaskError(problem, field="type")
    if task_type is not None:
        for field in GLOBAL_SETTINGS:
            if getattr(settings, field) is not None:
                raise InvalidTaskError(
                    f"{field} is a global setting: set it without a task type", field=field
                )
    else:
        for field in TYPE_SETTINGS:
            if getattr(settings, field) is not None:
                raise InvalidTaskError(
                    f"{field} is set per task type: give the type it limits", field=field
                )
    checked = validated(msgspec.structs.asdict(settings), Policy)
    for field in ("rate_limit", "group_rate_limit"):
        if (rate := getattr(checked, field)) is not None:
            try:
                parse_rate(rate)
            except ValueError as exc:
                raise InvalidTaskError(str(exc), field=field) from None
    return checked


def stats_and_served(keys: Keys, now: int) -> Operation[tuple[QueueStats, frozenset[str]]]:
    """:func:`stats` and :func:`served_types` in one round trip (what a metrics scrape reads)."""
    counts, (served,) = yield from _stats_with(keys, now, (("HGETALL", keys.served),))
    return counts, frozenset(t for t, until in pairs(served).items() if int(until) >= now)


def queue_report(settings: BrokerSettings, keys: Keys, now: int) -> Operation[QueueReport]:
    """Counts, served types and policy in one round trip (``taskqueue queues``)."""
    counts, (served, live, config) = yield from _stats_with(keys, now, _report_commands(keys))
    return QueueReport(
        stats=counts,
        served=frozenset(t for t, until in pairs(served).items() if int(until) >= now),
        policy=PolicyView.from_hashes(pairs(live), pairs(config), settings.policy()),
    )


def _report_commands(keys: Keys) -> tuple[tuple[Arg, ...], ...]:
    return (
        ("HGETALL", keys.served),
        ("HGETALL", keys.policy_live),
        ("HGETALL", keys.policy_config),
    )


# -- working ----------------------------------------------------------------------------------


def claim(
    settings: BrokerSettings,
    keys: Keys,
    worker_id: str,
    task_types: Sequence[str],
    count: int,
    now: int,
    *,
    guard_turn: bool = False,
    hand_offs: str | None = None,
) -> Operation[Claim]:
    """Lease up to ``count`` pending tasks of ``task_types``, tried in this order, to
    ``worker_id``; on a ``guard_turn``, first one task from each priority below the highest
    that has work (see :meth:`Broker.claim`, which rotates the types and picks the turns).

    ``hand_offs`` (None: none) is the token of the last hand-off the worker has received (''
    for none): a claim that takes fewer than ``count`` then registers the worker for
    a hand-off of the next pending task of its types (see _lib.lua)."""
    if count <= 0 or not task_types:
        return Claim([])
    reply = yield _script(
        keys,
        "claim",
        now,
        worker_id,
        now + int(settings.lease_ttl * 1000),
        count,
        1 if guard_turn else 0,
        "" if hand_offs is None else "+" + hand_offs,
        *task_types,
    )
    return claim_from_reply(reply, now)


def report(
    settings: BrokerSettings,
    keys: Keys,
    reports: Sequence[Report],
    now: int,
    jitter: Callable[[], float],
) -> Operation[list[TaskState | None]]:
    """Record how a batch of attempts ended: each task's new state, None where the report was
    stale. ``jitter`` draws the retry delay's jitter, in [0, 1), of each failed attempt."""
    if not reports:
        return []
    args: list[Arg] = [
        now,
        int(settings.retry_base_delay * 1000),
        int(settings.retry_max_delay * 1000),
    ]
    succeeded = OutcomeKind.SUCCEEDED  # a local: the loop runs per task
    for r in reports:
        if r.kind is succeeded:
            result = _json.dumps(r.result) if r.result_json is None else r.result_json
            args += (r.task_id, r.attempt, r.kind, result, "", 0)
        elif r.kind is OutcomeKind.SNOOZED:
            args += (r.task_id, r.attempt, r.kind, r.snooze_ms, settings.max_snoozes, 0)
        else:
            args += (r.task_id, r.attempt, r.kind, r.error, r.traceback, jitter())
    reply = yield _script(keys, "finish", *args)
    return [TaskState(state) if state else None for state in reply]


def heartbeat(
    settings: BrokerSettings,
    keys: Keys,
    worker: WorkerInfo,
    running: Iterable[tuple[str, int]],
    now: int,
) -> Operation[HeartbeatReply]:
    """Refresh ``worker``'s registration and the leases of its ``running`` (id, attempt)."""
    ttl = int(settings.lease_ttl * 1000)
    args: list[Arg] = [
        now,
        worker.id,
        ttl,
        now + ttl,
        worker_to_json(worker),
        ",".join(worker.task_types),
    ]
    for task_id, attempt in running:
        args += (task_id, attempt)
    lost, cancel = yield _script(keys, "heartbeat", *args)
    return HeartbeatReply(lost=lost, cancel_requested=cancel)


def set_progress_many(keys: Keys, updates: Sequence[tuple[str, int, str]]) -> Operation[list[bool]]:
    """Record the progress of running tasks, (id, attempt, progress as JSON) each; per
    update, False if its attempt no longer holds the lease."""
    if not updates:
        return []
    args: list[Arg] = []
    for task_id, attempt, progress_json in updates:
        args += (task_id, attempt, progress_json)
    reply = yield _script(keys, "progress", *args)
    return [bool(recorded) for recorded in reply]


def deregister(keys: Keys, worker_id: str) -> Operation[tuple[bool, tuple[str, int] | None]]:
    """Remove a worker's registration: whether it was registered, and its last hand-off
    (task id, attempt) if it had one (see deregister.lua)."""
    registered, task_id, attempt = yield _script(keys, "deregister", worker_id)
    return bool(registered), (task_id, int(attempt)) if task_id else None


def stop_hand_offs(keys: Keys, worker_id: str) -> Operation[None]:
    """End a worker's registration for hand-offs (see :func:`claim`)."""
    yield _script(keys, "stop_hand_offs", worker_id)


def reap(
    settings: BrokerSettings, keys: Keys, limit: int, now: int, jitter: Callable[[], float]
) -> Operation[ReapResult]:
    """Fail up to ``limit`` attempts whose lease expired, and remove workers that stopped
    beating. ``jitter`` draws, in [0, 1), the retry delay's jitter of each failed attempt."""
    args: list[Arg] = [
        now,
        int(settings.lease_ttl * 1000),
        int(settings.retry_base_delay * 1000),
        int(settings.retry_max_delay * 1000),
    ]
    args += [jitter() for _ in range(limit)]
    reaped, gone, flat = yield _script(keys, "reap", *args)
    fields = iter(flat)
    outcomes = [
        ReapedTask(task_id, task_type, Priority(priority), TaskState(state))
        for task_id, task_type, priority, state in zip(fields, fields, fields, fields, strict=True)
    ]
    return ReapResult(reaped=reaped, workers_removed=gone, outcomes=outcomes)


def expire_workers(keys: Keys, worker_ids: Sequence[str], now: int) -> Operation[int]:
    """Expire the leases of workers known to be dead and forget them; how many leases."""
    if not worker_ids:
        return 0
    return int((yield _script(keys, "expire_workers", now, *worker_ids)))


def trim(settings: BrokerSettings, keys: Keys, limit: int, now: int) -> Operation[TrimResult]:
    """Delete up to ``limit`` finished records past their retention."""
    args = [now, limit, *settings.retention.script_args(), TYPE_SWEEP]
    succeeded, cancelled, expired, dead, swept = yield _script(keys, "trim", *args)
    return TrimResult(
        succeeded=succeeded,
        cancelled=cancelled,
        expired=expired,
        dead=dead,
        types_dropped=swept,
    )


def promote(keys: Keys, limit: int, now: int) -> Operation[PromoteResult]:
    """End up to ``limit`` tasks waiting past their deadline expired, and make up to ``limit``
    scheduled tasks whose time has come pending."""
    promoted, next_due, flat = yield _script(keys, "promote", now, limit)
    expired = [(flat[i], Priority(flat[i + 1])) for i in range(0, len(flat), 2)]
    return PromoteResult(
        promoted=promoted, next_due_ms=None if next_due < 0 else next_due, expired=expired
    )


# -- reading ----------------------------------------------------------------------------------


def get(keys: Keys, task_id: str) -> Operation[Task]:
    """The task; :class:`TaskNotFoundError` if there is none."""
    fields = yield Call(("HGETALL", keys.task(task_id)))
    if not fields:
        raise TaskNotFoundError(task_id)
    return task_from_hash(pairs(fields))


def get_many(keys: Keys, task_ids: Sequence[str]) -> Operation[list[Task | None]]:
    """Several tasks in one round trip, None for the missing."""
    if not task_ids:
        return []
    replies = yield Pipeline(tuple(("HGETALL", keys.task(i)) for i in task_ids))
    return [task_from_hash(pairs(r)) if r else None for r in replies]


def view(keys: Keys, task_id: str, cut_at: int) -> Operation[TaskView]:
    """The task with each field over ``cut_at`` bytes cut in Redis (see :class:`TaskView`);
    :class:`TaskNotFoundError` if there is none."""
    (found,) = yield from view_many(keys, (task_id,), cut_at)
    if found is None:
        raise TaskNotFoundError(task_id)
    return found


def view_by_key(keys: Keys, idempotency_key: str, cut_at: int) -> Operation[TaskView]:
    """The task an idempotency key maps to, read as :func:`view` reads it;
    :class:`IdempotencyKeyNotFoundError` if the key is unknown (never used, or its window
    passed) or its task's record expired. One script: the key and the task are read together."""
    fields = (*CUT_JSON_FIELDS, *CUT_TEXT_FIELDS)
    reply = yield _script(
        keys, "view_by_key", cut_at, len(CUT_JSON_FIELDS), len(fields), *fields, idempotency_key
    )
    if not reply:
        raise IdempotencyKeyNotFoundError(idempotency_key)
    return _task_view(reply)


def workflow(keys: Keys, task_id: str) -> Operation[Workflow]:
    """Every task linked to ``task_id`` through dependencies, read in one script;
    :class:`TaskNotFoundError` if there is no such task."""
    reply = yield _script(keys, "view_workflow", task_id, MAX_WORKFLOW_TASKS)
    if not reply:
        raise TaskNotFoundError(task_id)
    return workflow_from_reply(reply)


def view_many(keys: Keys, task_ids: Sequence[str], cut_at: int) -> Operation[list[TaskView | None]]:
    """Several tasks as :func:`view` reads them, in one round trip, None for the missing."""
    if not task_ids:
        return []
    reply = yield _view_script(keys, task_ids, cut_at)
    return [_task_view(entry) if entry else None for entry in reply]


def _view_script(keys: Keys, task_ids: Sequence[str], cut_at: int) -> RunScript:
    fields = (*CUT_JSON_FIELDS, *CUT_TEXT_FIELDS)
    return _script(keys, "view", cut_at, len(CUT_JSON_FIELDS), len(fields), *fields, *task_ids)


def _task_view(entry: Sequence[Any]) -> TaskView:
    fields, cuts = entry
    return TaskView(
        task_from_hash(pairs(fields)), {name: int(size) for name, size in pairs(cuts).items()}
    )


def list_tasks(
    keys: Keys,
    state: TaskState,
    *,
    task_type: str | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> Operation[Page[Task]]:
    """One page of the tasks in ``state`` (see :meth:`Broker.list_tasks`)."""
    return (yield from _list(keys, state, task_type, limit, cursor, _read_whole, _task_of))


def list_views(
    keys: Keys,
    state: TaskState,
    *,
    cut_at: int,
    task_type: str | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> Operation[Page[TaskView]]:
    """:func:`list_tasks`, each task read as :func:`view` reads it."""
    read = functools.partial(view_many, cut_at=cut_at)
    return (yield from _list(keys, state, task_type, limit, cursor, read, _task_of_view))


#: Reads the tasks of a page's ids: whole, or as views (None for an id gone meanwhile).
_Reader = Callable[[Keys, Sequence[str]], Operation[list[Item | None]]]


def _read_whole(keys: Keys, task_ids: Sequence[str]) -> Operation[list[Task | None]]:
    return (yield from get_many(keys, task_ids))


def _task_of(task: Task) -> Task:
    return task


def _task_of_view(view: TaskView) -> Task:
    return view.task


def _list(
    keys: Keys,
    state: TaskState,
    task_type: str | None,
    limit: int,
    cursor: str | None,
    read: _Reader[Item],
    task_of: Callable[[Item], Task],
) -> Operation[Page[Item]]:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidTaskError(f"limit must be from 1 to {MAX_PAGE}", field="limit")
    if state is TaskState.PENDING:
        return (yield from _list_pending(keys, task_type, limit, cursor, read))
    offset = cursors.read_offset(cursor)
    key = keys.zset_of(state)
    command = "ZREVRANGE" if state.is_terminal else "ZRANGE"
    items: list[Item] = []
    scan = limit if task_type is None else max(limit, 200)
    while len(items) < limit:
        ids = yield Call((command, key, offset, offset + scan - 1))
        if not ids:
            return Page(items, None)
        for i, item in enumerate((yield from read(keys, ids))):
            if item is not None and (task_type is None or task_of(item).type == task_type):
                items.append(item)
                if len(items) == limit:
                    return Page(items, cursors.offset_cursor(offset + i + 1))
        offset += len(ids)
    return Page(items, cursors.offset_cursor(offset))


def _list_pending(
    keys: Keys, task_type: str | None, limit: int, cursor: str | None, read: _Reader[Item]
) -> Operation[Page[Item]]:
    types = [task_type] if task_type else sorted((yield Call(("SMEMBERS", keys.types))))
    rank = {p.value: n for n, p in enumerate(PRIORITY_ORDER)}
    queues = [(p.value, t) for p in PRIORITY_ORDER for t in types]
    # Queues with no pending task are skipped without a round trip each: the counts hash
    # says which hold any, in one HMGET.
    if queues:
        fields = [count_field(TaskState.PENDING, p, t) for p, t in queues]
        held = yield Call(("HMGET", keys.counts, *fields))
        queues = [q for q, n in zip(queues, held, strict=True) if n is not None and int(n) > 0]
    # A grouped type's pending tasks wait in one list per group (and, without a group, in its
    # ready list, the group ''): its queues are those of its ring's members, by name.
    lists: list[tuple[str, str, str]] = []
    if queues:
        pending_types = sorted({t for _, t in queues})
        marked = yield Call(("HMGET", keys.grouped, *pending_types))
        grouped = {t for t, m in zip(pending_types, marked, strict=True) if m}
        for p, t in queues:
            if t not in grouped:
                lists.append((p, t, ""))
                continue
            members = yield Call(("ZRANGE", keys.ring(p, t), 0, -1))
            lists.extend((p, t, g) for g in sorted(members))
    # The cursor names its queue, not its index in `lists`: a queue that emptied or appeared
    # between two pages shifts the indexes, not the order, so the next page starts at the
    # first queue at or after the cursor's.
    position, offset = 0, 0
    if cursor is not None:
        priority, named, at = cursors.read_queue(cursor)
        queue_type, _, group = named.partition("@")
        mark = (rank[priority], queue_type, group)
        position = bisect.bisect_left([(rank[p], t, g) for p, t, g in lists], mark)
        if position < len(lists) and lists[position] == (priority, queue_type, group):
            offset = at
    items: list[Item] = []
    while position < len(lists) and len(items) < limit:
        wanted = limit - len(items)
        p, t, g = lists[position]
        queue = keys.group_ready(p, t, g) if g else keys.ready(p, t)
        ids = yield Call(("LRANGE", queue, offset, offset + wanted - 1))
        items.extend(t for t in (yield from read(keys, ids)) if t is not None)
        if len(ids) < wanted:
            position, offset = position + 1, 0
        else:
            offset += len(ids)
    if position >= len(lists):
        return Page(items, None)
    p, t, g = lists[position]
    return Page(items, cursors.queue_cursor(p, f"{t}@{g}" if g else t, offset))


def _stats_commands(keys: Keys) -> tuple[tuple[Arg, ...], ...]:
    return (
        ("HGETALL", keys.counts),
        ("ZCARD", keys.succeeded),
        ("ZCARD", keys.cancelled),
        ("ZCARD", keys.expired),
        ("ZCARD", keys.workers),
        ("HGETALL", keys.held),
        evalsha(_script(keys, "view_groups", TOP_GROUPS)),
    )


def stats(keys: Keys, now: int) -> Operation[QueueStats]:
    """Queue depths and counts from the incrementally kept counters: O(1) on Redis."""
    counts, _ = yield from _stats_with(keys, now, ())
    return counts


def _stats_with(
    keys: Keys, now: int, commands: Sequence[tuple[Arg, ...]]
) -> Operation[tuple[QueueStats, Sequence[Any]]]:
    """The stats, and the replies of ``commands`` sent in the same round trip (a second one
    loads the groups script into a Redis that does not hold it yet)."""
    own = _stats_commands(keys)
    replies = yield Pipeline((*own, *commands))
    groups = replies[len(own) - 1]
    if isinstance(groups, ResponseError):
        if not isinstance(groups, NoScriptError):
            raise groups
        groups = yield _script(keys, "view_groups", TOP_GROUPS)
    return _stats_from(replies[: len(own) - 1], groups, now), replies[len(own) :]


def _group_stats(reply: Sequence[Any]) -> list[GroupStats]:
    out = []
    for task_type, pending, active, *named in reply:
        it = iter(named)
        top = [
            GroupLoad(group=g, pending=int(p), active=int(a))
            for g, p, a in zip(it, it, it, strict=True)
        ]
        out.append(
            GroupStats(type=task_type, groups_pending=pending, groups_active=active, top=top)
        )
    return sorted(out, key=lambda g: g.type)


def _stats_from(replies: Sequence[Any], groups: Sequence[Any], now: int) -> QueueStats:
    """The counters; ``now`` judges which limits still hold tasks back (a claim noted it
    within :data:`HELD_FRESH_MS`)."""
    counts, succeeded, cancelled, expired, workers, held = replies
    by_state = {state: 0 for state in TaskState}
    by_state[TaskState.SUCCEEDED] = succeeded
    by_state[TaskState.CANCELLED] = cancelled
    by_state[TaskState.EXPIRED] = expired
    pending_by_priority = {p: 0 for p in Priority}
    pending_by_type: dict[str, int] = {}
    by_state_and_type: dict[tuple[TaskState, str], int] = {}
    by_state_and_priority: dict[tuple[TaskState, Priority], int] = {}
    totals: dict[str, int] = {}
    for field, value in pairs(counts).items():
        n = int(value)
        head, _, rest = field.partition("|")
        if head == "total":
            totals[rest] = n
            continue
        state = TaskState(head)
        priority, _, task_type = rest.partition("|")
        by_state[state] += n
        key = (state, task_type)
        by_state_and_type[key] = by_state_and_type.get(key, 0) + n
        at = (state, Priority(priority))
        by_state_and_priority[at] = by_state_and_priority.get(at, 0) + n
        if state is TaskState.PENDING:
            pending_by_priority[Priority(priority)] += n
            pending_by_type[task_type] = pending_by_type.get(task_type, 0) + n
    held_by_limit: dict[str, str] = {}
    for held_type, note in pairs(held).items():
        noted_ms, _, limit = note.partition(" ")
        if pending_by_type.get(held_type) and int(noted_ms) >= now - HELD_FRESH_MS:
            held_by_limit[held_type] = limit
    return QueueStats(
        by_state=by_state,
        pending_by_priority=pending_by_priority,
        pending_by_type=pending_by_type,
        by_state_and_type=by_state_and_type,
        by_state_and_priority=by_state_and_priority,
        totals=totals,
        workers=workers,
        held_by_limit=held_by_limit,
        groups=_group_stats(groups),
    )


def workers(keys: Keys) -> Operation[list[WorkerInfo]]:
    """The registered workers whose registration has not expired, newest beat first."""
    ids = yield Call(("ZREVRANGE", keys.workers, 0, -1))
    if not ids:
        return []
    replies = yield Pipeline(tuple(("HGETALL", keys.worker(i)) for i in ids))
    return [worker_from_hash(pairs(r)) for r in replies if r]


# -- steering ---------------------------------------------------------------------------------


def cancel(keys: Keys, task_id: str, now: int) -> Operation[Cancellation]:
    """Cancel a task (see :meth:`Broker.cancel`)."""
    try:
        outcome, state, task_type, priority = yield _script(keys, "cancel", now, task_id)
    except ResponseError as exc:
        if str(exc).startswith("NOTFOUND"):
            raise TaskNotFoundError(task_id) from None
        raise
    if outcome == "final":
        raise ConflictingStateError(
            f"task {task_id} has already ended ({state}); nothing to cancel"
        )
    assert outcome in ("cancelled", "requested"), outcome
    return Cancellation(outcome, task_type, Priority(priority))


def requeue_dead(keys: Keys, task_id: str, now: int) -> Operation[None]:
    """Give one dead-lettered task a fresh set of attempts and queue it again."""
    (done,) = yield _script(keys, "requeue_dead", now, task_id)
    if not done:
        task = yield from get(keys, task_id)  # raises TaskNotFoundError
        raise ConflictingStateError(
            f"task {task_id} is {task.state.value}, not in the dead-letter queue"
        )


def requeue_all_dead(keys: Keys, task_type: str | None, clock: Callable[[], int]) -> Operation[int]:
    """Requeue every dead-lettered task (of ``task_type``, if given); how many."""
    total, offset = 0, 0
    while True:
        ids, offset = yield from _finished_chunk(keys, TaskState.DEAD, task_type, offset)
        if ids is None:
            return total
        if ids:
            total += sum((yield _script(keys, "requeue_dead", clock(), *ids)))


def purge_dead(keys: Keys, task_type: str | None) -> Operation[int]:
    """Delete every dead-lettered task (of ``task_type``, if given); how many."""
    return (yield from purge(keys, TaskState.DEAD, task_type))


def purge(keys: Keys, state: TaskState, task_type: str | None) -> Operation[int]:
    """Delete every finished task in ``state`` (of ``task_type``, if given); how many."""
    if state not in PURGEABLE_STATES:
        raise InvalidTaskError(
            f"only finished tasks can be purged ({', '.join(PURGEABLE_STATES)}), not"
            f" {state.value} ones: cancel them first",
            field="state",
        )
    _checked_type(task_type)
    total, offset = 0, 0
    while True:
        ids, offset = yield from _finished_chunk(keys, state, task_type, offset)
        if ids is None:
            return total
        if ids:
            deleted = yield _script(keys, "purge", state, *ids)
            total += deleted
            offset += len(ids) - deleted  # those left alone are stepped over


def cancel_all(
    keys: Keys,
    task_type: str,
    clock: Callable[[], int],
    *,
    states: Iterable[TaskState] = BULK_CANCEL_STATES,
    include_active: bool = False,
) -> Operation[BulkCancellation]:
    """Cancel every waiting task of ``task_type`` in ``states``, and with ``include_active``
    ask the workers of its running ones to stop them: :data:`CANCEL_CHUNK` at most per step.

    Scheduled tasks go first, so one that a promotion makes pending meanwhile is still found
    among the pending. A task submitted while it runs may or may not be cancelled."""
    _checked_type(task_type, required=True)
    wanted = set(states)
    for state in wanted:
        if state not in BULK_CANCEL_STATES:
            raise InvalidTaskError(
                f"a bulk cancel takes the waiting states ({', '.join(BULK_CANCEL_STATES)}),"
                f" not {state.value}"
                + (
                    "; ask for running tasks with include_active"
                    if state is TaskState.ACTIVE
                    else ""
                ),
                field="states",
            )
    by_state: dict[TaskState, int] = {}
    by_priority: dict[Priority, int] = {}
    order = (TaskState.BLOCKED, TaskState.SCHEDULED, TaskState.PENDING)
    steps = [s for s in order if s in wanted] + ([TaskState.ACTIVE] if include_active else [])
    for state in steps:
        offset = 0
        by_state.setdefault(state, 0)
        while offset >= 0:
            n, next_offset, *flat = yield _script(
                keys, "cancel_all", clock(), task_type, state, CANCEL_CHUNK, offset, CANCEL_CHUNK
            )
            for priority, count in pairs(flat).items():
                by_priority[Priority(priority)] = by_priority.get(Priority(priority), 0) + int(
                    count
                )
            by_state[state] += n
            if state is TaskState.PENDING and n == 0:
                break  # nothing more it can take: never spin on a list it cannot empty
            offset = next_offset
    requested = by_state.pop(TaskState.ACTIVE, 0)
    if not by_state.get(TaskState.BLOCKED):  # named only where workflows are in use
        by_state.pop(TaskState.BLOCKED, None)
    return BulkCancellation(
        type=task_type, by_state=by_state, by_priority=by_priority, requested=requested
    )


def _checked_type(task_type: str | None, *, required: bool = False) -> None:
    if task_type is None and required:
        raise InvalidTaskError("name the task type", field="type")
    if task_type is not None and (problem := task_type_problem(task_type)) is not None:
        raise InvalidTaskError(problem, field="type")


def _finished_chunk(
    keys: Keys, state: TaskState, task_type: str | None, offset: int
) -> Operation[tuple[list[str] | None, int]]:
    """The next chunk of the ids in ``state``'s sorted set from ``offset``, oldest first,
    filtered by type (None at the end), and where to read next. Each chunk is acted on (and
    so leaves the set) before the next is read, so only ids of other types are skipped over."""
    ids: list[str] = yield Call(("ZRANGE", keys.zset_of(state), offset, offset + DEAD_CHUNK - 1))
    if not ids:
        return None, offset
    if task_type is None:
        return ids, offset
    types = yield Pipeline(tuple(("HGET", keys.task(i), "type") for i in ids))
    matching = [i for i, t in zip(ids, types, strict=True) if t == task_type]
    return matching, offset + len(ids) - len(matching)
