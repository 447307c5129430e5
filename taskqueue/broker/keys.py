"""The Redis key layout of one namespace: the only definition of key names.

Every key starts with ``{namespace}:``; the braces are a Redis Cluster hash tag, so a whole
namespace lives in one slot and every Lua script can touch any of its keys atomically.

The Lua scripts get the same names from :func:`lua_prelude`, which is generated from the
layout below (and from the task states and priorities in :mod:`taskqueue.models`), so Python
and Lua can never disagree about where a thing lives.
"""

from __future__ import annotations

import re

from taskqueue.broker.policy import LIMIT_NAMES, SUBMISSION_NAMES
from taskqueue.models import MAX_TYPE_LENGTH, PRIORITY_ORDER, TYPE_LUA_PATTERN, TaskState

#: name -> template relative to the namespace prefix. ``{x}`` is a parameter.
LAYOUT: dict[str, str] = {
    "task": "t:{id}",  # hash: the task record (see codec.py for its fields)
    "ready": "q:{priority}:{type}",  # list: ids of pending tasks without a group, FIFO
    "group_ready": "g:{priority}:{type}:{group}",  # list: ids of one group's pending tasks, FIFO
    "ring": "ring:{priority}:{type}",  # zset: group -> its turn, the groups with pending tasks
    # of a grouped type ('' for the type's tasks without a group; see _lib.lua)
    "grouped": "grouped",  # hash: type -> 1, the types with grouped tasks (claims use rings)
    "group_pending": "gp:{type}",  # zset: group -> its pending tasks (of all priorities)
    "group_active": "ga:{type}",  # zset: group -> its active tasks
    "group_resting": "gr:{type}",  # zset: group -> when its group rate limit lets it start one
    "scheduled": "scheduled",  # zset: id -> ready time (delayed starts and retry backoffs)
    "blocked": "blocked",  # zset: id -> creation time (tasks waiting for their dependencies)
    "active": "active",  # zset: id -> lease deadline
    "succeeded": "succeeded",  # zset: id -> finish time (trimmed after the result TTL)
    "dead": "dead",  # zset: id -> time of death (the dead-letter queue)
    "cancelled": "cancelled",  # zset: id -> cancel time (trimmed after the result TTL)
    "expired": "expired",  # zset: id -> expiry time (trimmed after the result TTL)
    "deadlines": "deadlines",  # zset: id -> deadline (ms), of tasks with one that have not ended
    "counts": "counts",  # hash: "state|priority|type" -> count, "total|outcome" -> count
    "types": "types",  # set: the task types with a task counted in `counts` (see _lib.lua)
    "policy_live": "policy:live",  # hash: queue policy set by operators (see policy.py)
    "policy_config": "policy:config",  # hash: queue policy written by daemons at start
    "limits": "limits",  # hash: type -> its limits in force (see set_policy.lua, claim.lua)
    "rate": "rate",  # hash: type -> when its rate limit lets the next task start (ms, GCRA)
    "held": "held",  # hash: type -> "ms limit": the last claim that left its tasks waiting
    "served": "served",  # hash: type -> ms until which a live worker serves it (its heartbeat)
    "workers": "workers",  # zset: worker id -> last heartbeat
    "worker": "w:{id}",  # hash: a worker's registration
    # Hand-offs (see _lib.lua): a worker whose claim came back short waits for a task of its
    # types to be leased to it straight from the script that makes one pending.
    "idle": "idle:{type}",  # set: ids of the workers waiting for a hand-off of the type
    "idle_workers": "idle",  # hash: worker id -> "lease ms types,..." of its registration
    "handed": "handed",  # hash: worker id -> "task id attempt", its last hand-off
    "worker_channel": "ch:w:{id}",  # pub/sub: a task handed off to the worker (claim fields)
    "idempotency": "idem:{key}",  # string: task id, expires after the idempotency window
    "unique": "uniq:{hash}",  # string: id of the live task of a type and payload (see enqueue)
    "debounce": "deb:{key}",  # string: "type|key" -> id of the task its submissions join
    "wake_channel": "ch:wake",  # pub/sub: "types,..." when tasks became pending
    "cancel_channel": "ch:cancel",  # pub/sub: "worker_id task_id" for running tasks to cancel
    "events_channel": "ch:events",  # pub/sub: JSON list of task state changes
    "schedules": "schedules",  # hash: schedule name -> its definition (JSON)
    "schedule_due": "schedules:due",  # zset: name -> next run (ms), for schedules not paused
    "schedule": "s:{name}",  # hash: a schedule's state (see read_schedules.lua)
    "fence": "fence",  # never written: every script declares it beside the prefix (see below)
}

#: The states whose members live in a sorted set, and which set.
STATE_ZSETS: dict[TaskState, str] = {
    TaskState.BLOCKED: "blocked",
    TaskState.SCHEDULED: "scheduled",
    TaskState.ACTIVE: "active",
    TaskState.SUCCEEDED: "succeeded",
    TaskState.DEAD: "dead",
    TaskState.CANCELLED: "cancelled",
    TaskState.EXPIRED: "expired",
}

#: States counted per priority and type in the counts hash. Succeeded, cancelled and expired
#: tasks are counted by their sorted sets' ZCARD instead, since they are trimmed in bulk.
COUNTED_STATES = (
    TaskState.BLOCKED,
    TaskState.PENDING,
    TaskState.SCHEDULED,
    TaskState.ACTIVE,
    TaskState.DEAD,
)

_PARAM = re.compile(r"\{(\w+)\}")


def prefix_for(namespace: str, partition: int = 0) -> str:
    """The prefix of every key of ``partition`` of ``namespace``: ``{ns}:``, or ``{ns:p}:``
    for a partition past the first (a namespace has no colon, so no namespace's own
    prefix can be another's partition's)."""
    if not namespace or any(c in namespace for c in "{}:"):
        raise ValueError(f"invalid namespace {namespace!r}: non-empty, without braces or colons")
    return "{" + namespace + (f":{partition}" if partition else "") + "}:"


class Keys:
    """Key names of one namespace, as attributes (fixed keys) and methods (parametrised ones)."""

    def __init__(self, namespace: str, partition: int = 0) -> None:
        self.namespace = namespace
        #: Which partition of the namespace these keys are (see broker/partitions.py).
        self.partition = partition
        self.prefix = prefix_for(namespace, partition)
        p = self.prefix
        self.scheduled = p + LAYOUT["scheduled"]
        self.blocked = p + LAYOUT["blocked"]
        self.active = p + LAYOUT["active"]
        self.succeeded = p + LAYOUT["succeeded"]
        self.dead = p + LAYOUT["dead"]
        self.cancelled = p + LAYOUT["cancelled"]
        self.expired = p + LAYOUT["expired"]
        self.deadlines = p + LAYOUT["deadlines"]
        self.counts = p + LAYOUT["counts"]
        self.types = p + LAYOUT["types"]
        self.policy_live = p + LAYOUT["policy_live"]
        self.policy_config = p + LAYOUT["policy_config"]
        self.limits = p + LAYOUT["limits"]
        self.grouped = p + LAYOUT["grouped"]
        self.rate = p + LAYOUT["rate"]
        self.held = p + LAYOUT["held"]
        self.served = p + LAYOUT["served"]
        self.workers = p + LAYOUT["workers"]
        self.wake_channel = p + LAYOUT["wake_channel"]
        self.cancel_channel = p + LAYOUT["cancel_channel"]
        self.events_channel = p + LAYOUT["events_channel"]
        self.schedules = p + LAYOUT["schedules"]
        self.schedule_due = p + LAYOUT["schedule_due"]
        self.fence = p + LAYOUT["fence"]
        self._task = p + LAYOUT["task"].replace("{id}", "")
        self._worker = p + LAYOUT["worker"].replace("{id}", "")
        self.idle_workers = p + LAYOUT["idle_workers"]
        self.handed = p + LAYOUT["handed"]
        self._idempotency = p + LAYOUT["idempotency"].replace("{key}", "")
        self._unique = p + LAYOUT["unique"].replace("{hash}", "")

    def task(self, task_id: str) -> str:
        return self._task + task_id

    def ready(self, priority: str, task_type: str) -> str:
        return self.prefix + LAYOUT["ready"].format(priority=priority, type=task_type)

    def group_ready(self, priority: str, task_type: str, group: str) -> str:
        return self.prefix + LAYOUT["group_ready"].format(
            priority=priority, type=task_type, group=group
        )

    def ring(self, priority: str, task_type: str) -> str:
        return self.prefix + LAYOUT["ring"].format(priority=priority, type=task_type)

    def group_pending(self, task_type: str) -> str:
        return self.prefix + LAYOUT["group_pending"].format(type=task_type)

    def group_active(self, task_type: str) -> str:
        return self.prefix + LAYOUT["group_active"].format(type=task_type)

    def group_resting(self, task_type: str) -> str:
        return self.prefix + LAYOUT["group_resting"].format(type=task_type)

    def worker(self, worker_id: str) -> str:
        return self._worker + worker_id

    def idle(self, task_type: str) -> str:
        return self.prefix + LAYOUT["idle"].format(type=task_type)

    def worker_channel(self, worker_id: str) -> str:
        return self.prefix + LAYOUT["worker_channel"].format(id=worker_id)

    def schedule(self, name: str) -> str:
        return self.prefix + LAYOUT["schedule"].format(name=name)

    def idempotency(self, key: str) -> str:
        return self._idempotency + key

    def unique(self, digest: str) -> str:
        return self._unique + digest

    def zset_of(self, state: TaskState) -> str:
        return self.prefix + LAYOUT[STATE_ZSETS[state]]


def count_field(state: TaskState | str, priority: str, task_type: str) -> str:
    return f"{state}|{priority}|{task_type}"


def lua_prelude() -> str:
    """Lua definitions of the layout, states and priorities, prepended to every script.

    ``KEYS[1]`` of every script is the namespace prefix; it carries the hash tag, which is what
    Redis Cluster routes by. ``KEYS[2]`` is the fence, a key that is never written: with two
    declared keys that do not exist, a node whose slot is being migrated answers ``TRYAGAIN``
    (the client waits and retries) instead of running the script on a half-moved namespace.
    """
    lines = [
        "-- generated by taskqueue/broker/keys.py: do not edit in the .lua files",
        "local P = KEYS[1]",
    ]
    for name, template in LAYOUT.items():
        params = _PARAM.findall(template)
        if not params:
            lines.append(f"local K_{name.upper()} = P .. '{template}'")
            continue
        parts = [
            f"'{piece}'" if i % 2 == 0 else piece for i, piece in enumerate(_PARAM.split(template))
        ]
        body = " .. ".join(part for part in parts if part != "''")
        lines.append(f"local function key_{name}({', '.join(params)}) return P .. {body} end")
    for state in TaskState:
        lines.append(f"local S_{state.name} = '{state.value}'")
    lines.append("local PRIORITIES = {" + ", ".join(f"'{p.value}'" for p in PRIORITY_ORDER) + "}")
    zsets = ", ".join(f"[S_{s.name}] = K_{z.upper()}" for s, z in STATE_ZSETS.items())
    lines.append("local STATE_ZSET = {" + zsets + "}")
    terminal = ", ".join(f"[S_{s.name}] = true" for s in TaskState if s.is_terminal)
    lines.append("local TERMINAL = {" + terminal + "}")
    counted = ", ".join(f"S_{s.name}" for s in COUNTED_STATES)
    lines.append("local COUNTED_STATES = {" + counted + "}")
    names = ", ".join(f"'{name}'" for name in SUBMISSION_NAMES.values())
    lines.append("local POLICY_NAMES = {" + names + "}")
    limits = ", ".join(f"'{name}'" for name in LIMIT_NAMES.values())
    lines.append("local LIMIT_NAMES = {" + limits + "}")
    lines.append(f"local TYPE_PATTERN = '{TYPE_LUA_PATTERN}'")
    lines.append(f"local MAX_TYPE_LENGTH = {MAX_TYPE_LENGTH}")
    return "\n".join(lines) + "\n"
