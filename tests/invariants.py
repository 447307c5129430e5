"""The broker's storage invariants, checked by walking every key of a namespace.

"At every moment a task is in exactly one of these places in Redis" (docs/architecture.md).
This module says what that means key by key, so any test (broker, daemon, end to end) can end with
``await assert_invariants(broker)`` and learn at once if some operation left a task in two
places, in none, or miscounted it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from taskqueue.broker import Broker
from taskqueue.broker.keys import COUNTED_STATES, LAYOUT, STATE_ZSETS, count_field
from taskqueue.broker.policy import merged
from taskqueue.models import Priority, TaskState
from taskqueue.rates import encode_rate

_TASK_FIELDS = ("id", "type", "priority", "payload", "state", "attempt", "max_retries")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _pairs(flat: list[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


async def _scan(broker: Broker) -> list[str]:
    keys: list[str] = []
    cursor = "0"
    pattern = _glob_escape(broker.keys.prefix) + "*"
    while True:
        cursor, batch = await broker.redis.execute("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        keys.extend(batch)
        if cursor == "0":
            return sorted(set(keys))


async def assert_invariants(broker: Broker) -> None:
    """Assert that the namespace of ``broker`` is consistent. Checks, for every key:

    - it is one of the layout's keys, of the right Redis type;
    - every task hash is complete, its ``id`` matches its key, and its id sits in exactly one
      state structure, the one its ``state`` names: the ready list of its priority and type
      for ``pending``, the state's sorted set for the others; an active task has a worker and
      an attempt; a scheduled task's score is its ``ready_ms``, a finished one's its
      ``finished_ms``;
    - no ready list or state set holds an id without a task hash, or an id twice;
    - the counts hash equals a recount by (state, priority, type) for pending, scheduled,
      active and dead, and holds no zero or negative counters;
    - :meth:`Broker.stats` agrees with a recount of every state (ZCARD for succeeded,
      cancelled and expired);
    - the deadlines set holds only tasks that have not ended, at their deadline, and every
      waiting task that has one;
    - every task type is in the types set, and every worker record in the workers set.
    """
    k = broker.keys
    prefix = k.prefix
    names = await _scan(broker)
    types = await broker.redis.pipeline([("TYPE", name) for name in names])
    kind_of = dict(zip(names, types, strict=True))

    zset_keys = {k.zset_of(state): state for state in STATE_ZSETS}
    fixed: dict[str, str] = {
        **dict.fromkeys(zset_keys, "zset"),
        k.workers: "zset",
        k.counts: "hash",
        k.types: "set",
        k.policy_live: "hash",
        k.policy_config: "hash",
        k.served: "hash",
        k.schedules: "hash",
        k.schedule_due: "zset",
        k.limits: "hash",
        k.rate: "hash",
        k.held: "hash",
        k.deadlines: "zset",
        k.grouped: "hash",
        k.idle_workers: "hash",
        k.handed: "hash",
    }
    task_prefix = prefix + LAYOUT["task"].removesuffix("{id}")
    worker_prefix = prefix + LAYOUT["worker"].removesuffix("{id}")
    idem_prefix = prefix + LAYOUT["idempotency"].removesuffix("{key}")
    unique_prefix = prefix + LAYOUT["unique"].removesuffix("{hash}")
    debounce_prefix = prefix + LAYOUT["debounce"].removesuffix("{key}")
    ready_prefix = prefix + LAYOUT["ready"].split("{", 1)[0]
    group_ready_prefix = prefix + LAYOUT["group_ready"].split("{", 1)[0]
    group_zset_prefixes = tuple(
        prefix + LAYOUT[name].split("{", 1)[0]
        for name in ("ring", "group_pending", "group_active", "group_resting")
    )
    schedule_prefix = prefix + LAYOUT["schedule"].removesuffix("{name}")
    idle_prefix = prefix + LAYOUT["idle"].removesuffix("{type}")

    task_keys: list[str] = []
    ready_keys: list[str] = []
    worker_keys: list[str] = []
    schedule_keys: list[str] = []
    unique_keys: list[str] = []
    for name in names:
        kind = kind_of[name]
        if name in fixed:
            expected = fixed[name]
        elif name.startswith(task_prefix):
            expected = "hash"
            task_keys.append(name)
        elif name.startswith((ready_prefix, group_ready_prefix)):
            expected = "list"
            ready_keys.append(name)
        elif name.startswith(group_zset_prefixes):
            expected = "zset"
        elif name.startswith(worker_prefix):
            expected = "hash"
            worker_keys.append(name)
        elif name.startswith(idem_prefix):
            expected = "string"
        elif name.startswith(unique_prefix):
            expected = "string"
            unique_keys.append(name)
        elif name.startswith(debounce_prefix):
            expected = "string"
        elif name.startswith(schedule_prefix):
            expected = "hash"
            schedule_keys.append(name)
        elif name.startswith(idle_prefix):
            expected = "set"
        else:
            raise AssertionError(f"unexpected key {name!r} ({kind}) in the namespace")
        assert kind == expected, f"key {name!r} is a {kind}, expected a {expected}"

    reads: list[tuple[str, ...]] = [("HGETALL", name) for name in task_keys]
    reads += [("LRANGE", name, "0", "-1") for name in ready_keys]
    reads += [("ZRANGE", key, "0", "-1", "WITHSCORES") for key in zset_keys]
    reads += [
        ("HGETALL", k.counts),
        ("SMEMBERS", k.types),
        ("ZRANGE", k.workers, "0", "-1"),
    ]
    replies: list[Any] = await broker.redis.pipeline(reads)
    task_replies = replies[: len(task_keys)]
    list_replies = replies[len(task_keys) : len(task_keys) + len(ready_keys)]
    rest = replies[len(task_keys) + len(ready_keys) :]
    zset_replies, (counts_reply, known_types, registered) = rest[: len(zset_keys)], rest[-3:]

    tasks: dict[str, dict[str, str]] = {}
    for name, flat in zip(task_keys, task_replies, strict=True):
        fields = _pairs(flat)
        task_id = name.removeprefix(task_prefix)
        missing = [f for f in _TASK_FIELDS if f not in fields]
        assert not missing, f"task {task_id} lacks fields {missing}: {fields}"
        assert fields["id"] == task_id, f"task hash {name!r} has id {fields['id']!r}"
        assert fields["state"] in set(TaskState), f"task {task_id} state {fields['state']!r}"
        assert fields["priority"] in set(Priority), f"task {task_id}: {fields['priority']!r}"
        tasks[task_id] = fields

    # Where each id was found: ("list", key) or ("zset", state), with multiplicity.
    places: dict[str, list[tuple[str, str]]] = {}
    for name, ids in zip(ready_keys, list_replies, strict=True):
        assert ids, f"empty ready list {name!r} exists"  # Redis deletes empty lists itself
        for task_id in ids:
            places.setdefault(task_id, []).append(("list", name))
    scores: dict[str, int] = {}
    for state, flat in zip(zset_keys.values(), zset_replies, strict=True):
        for task_id, score in _pairs(flat).items():
            places.setdefault(task_id, []).append(("zset", state))
            scores[task_id] = int(float(score))

    orphans = sorted(set(places) - set(tasks))
    assert not orphans, f"ids without a task hash: {[(i, places[i]) for i in orphans]}"

    for task_id, fields in tasks.items():
        state = TaskState(fields["state"])
        found = places.get(task_id, [])
        if state is TaskState.PENDING and fields.get("group"):
            where = ("list", k.group_ready(fields["priority"], fields["type"], fields["group"]))
        elif state is TaskState.PENDING:
            where = ("list", k.ready(fields["priority"], fields["type"]))
        else:
            where = ("zset", state.value)
        assert found == [where], f"{state} task {task_id} is in {found}, expected [{where}]"
        if state is TaskState.ACTIVE:
            assert fields.get("worker_id"), f"active task {task_id} has no worker"
            assert int(fields["attempt"]) >= 1, f"active task {task_id} was never claimed"
        elif state is TaskState.SCHEDULED:
            assert scores[task_id] == int(fields["ready_ms"]), f"task {task_id}: score/ready_ms"
        elif state.is_terminal:
            assert scores[task_id] == int(fields["finished_ms"]), f"task {task_id}: finished_ms"
        if state is not TaskState.ACTIVE:
            assert int(fields["attempt"]) <= int(fields["max_retries"]) + 1, (
                f"task {task_id} ran {fields['attempt']} times, max_retries {fields['max_retries']}"
            )

    recount = Counter(
        count_field(f["state"], f["priority"], f["type"])
        for f in tasks.values()
        if TaskState(f["state"]) in COUNTED_STATES
    )
    counts = {
        field: int(value)
        for field, value in _pairs(counts_reply).items()
        if not field.startswith("total|")
    }
    bad = {field: n for field, n in counts.items() if n <= 0}
    assert not bad, f"counters at zero or below: {bad}"
    assert counts == dict(recount), f"counts hash {counts} != recount {dict(recount)}"
    # The types set is exactly the types with a counted task: none left behind by a type whose
    # last task ended (issue 15, item 4), none missing for a task a listing must find.
    counted_types = {field.split("|", 2)[2] for field in counts}
    assert set(known_types) == counted_types, (
        f"types set {sorted(known_types)} != types with tasks {sorted(counted_types)}"
    )

    _assert_dependency_invariants(tasks)
    await _assert_group_invariants(broker, tasks, dict(zip(ready_keys, list_replies, strict=True)))
    deadlines = _pairs(await broker.redis.execute("ZRANGE", k.deadlines, "0", "-1", "WITHSCORES"))
    _assert_deadline_invariants(tasks, deadlines)
    holders = await broker.redis.pipeline([("GET", name) for name in unique_keys])
    for name, holder in zip(unique_keys, holders, strict=True):
        digest = name.removeprefix(unique_prefix)
        task = tasks.get(holder)
        assert task is not None, f"unique key {digest} held by {holder}, which does not exist"
        assert not TaskState(task["state"]).is_terminal, f"unique key held by ended {holder}"
        assert task.get("unique_key") == digest, f"{holder} holds the unique key of another"
    held = {h for h in holders}
    for task_id, fields in tasks.items():
        if fields.get("unique_key") and not TaskState(fields["state"]).is_terminal:
            # A requeued task finds its key taken only by another live task of its kind.
            assert task_id in held or any(
                tasks[h].get("unique_key") == fields["unique_key"] for h in held
            ), f"live unique task {task_id} lost its key"

    stats = await broker.stats()
    by_state = Counter(TaskState(f["state"]) for f in tasks.values())
    recounted = {state: by_state.get(state, 0) for state in TaskState}
    assert stats.by_state == recounted, f"stats {stats.by_state} != recount {recounted}"

    for name in worker_keys:
        worker_id = name.removeprefix(worker_prefix)
        assert worker_id in registered, f"worker record {worker_id!r} not in the workers set"
    await _assert_schedule_invariants(broker, schedule_keys, schedule_prefix)
    await _assert_limit_invariants(broker)
    await _assert_hand_off_invariants(broker, tasks)


async def _assert_hand_off_invariants(broker: Broker, tasks: dict[str, dict[str, str]]) -> None:
    """Hand-offs: the idle sets hold exactly the registered workers of their types, and no
    task waits pending that a registered worker would have been handed (of one of its types,
    without limits or groups, not past its deadline)."""
    k = broker.keys
    registered = _pairs(await broker.redis.execute("HGETALL", k.idle_workers))
    types_of = {worker: entry.split(" ", 2)[2].split(",") for worker, entry in registered.items()}
    idle_keys = await broker.redis.execute("KEYS", k.idle("*"))
    members = await broker.redis.pipeline([("SMEMBERS", key) for key in idle_keys])
    expected: dict[str, set[str]] = {}
    for worker, types in types_of.items():
        for task_type in types:
            expected.setdefault(k.idle(task_type), set()).add(worker)
    found = {key: set(m) for key, m in zip(idle_keys, members, strict=True)}
    assert found == expected, f"idle sets {found} != registrations {registered}"
    waiting_for = {t for types in types_of.values() for t in types}
    if not waiting_for:
        return
    limited = set(_pairs(await broker.redis.execute("HGETALL", k.limits)))
    grouped = set(_pairs(await broker.redis.execute("HGETALL", k.grouped)))
    for task_id, f in tasks.items():
        handable = f["type"] in waiting_for - limited - grouped and not f.get("expires_ms")
        assert not (f["state"] == TaskState.PENDING and handable), (
            f"task {task_id} of {f['type']} waits pending while a worker waits for one"
        )


async def _assert_group_invariants(
    broker: Broker, tasks: dict[str, dict[str, str]], lists: dict[str, list[str]]
) -> None:
    """Groups: each (priority, type) of a grouped type has a ring whose members are exactly its
    groups with pending tasks and room under the type's group concurrency limit, and '' when
    it has pending tasks without a group, less the groups resting under its group rate limit; a
    type never grouped has no ring; the per-group counters match a recount of pending and
    active tasks."""
    k = broker.keys
    grouped = set(_pairs(await broker.redis.execute("HGETALL", k.grouped)))
    types = sorted({f["type"] for f in tasks.values()} | grouped)
    waiting: dict[tuple[str, str], set[str]] = {}
    pending: dict[str, Counter[str]] = {t: Counter() for t in types}
    active: dict[str, Counter[str]] = {t: Counter() for t in types}
    for f in tasks.values():
        group = f.get("group", "")
        if group and f["state"] in (TaskState.PENDING, TaskState.ACTIVE):
            # A type is marked when its first grouped task becomes ready; a scheduled or
            # blocked one waits for that.
            assert f["type"] in grouped, f"type {f['type']} has a grouped task, not marked grouped"
        if f["state"] == TaskState.PENDING:
            waiting.setdefault((f["priority"], f["type"]), set()).add(group)
            if group:
                pending[f["type"]][group] += 1
        elif f["state"] == TaskState.ACTIVE and group:
            active[f["type"]][group] += 1
    reads: list[tuple[str, ...]] = [
        ("ZRANGE", k.ring(p.value, t), "0", "-1") for t in types for p in Priority
    ]
    reads += [("ZRANGE", k.group_pending(t), "0", "-1", "WITHSCORES") for t in types]
    reads += [("ZRANGE", k.group_active(t), "0", "-1", "WITHSCORES") for t in types]
    reads += [("ZRANGE", k.group_resting(t), "0", "-1") for t in types]
    reads += [("HGET", k.limits, t) for t in types]
    read = list(await broker.redis.pipeline(reads))
    limit_of = {
        t: int(entry.split()[5]) if entry else 0
        for t, entry in zip(types, read[len(read) - len(types) :], strict=True)
    }
    resting = dict(zip(types, map(set, read[-2 * len(types) : -len(types)]), strict=True))
    replies = iter(read)
    for t in types:
        for p in Priority:
            ring = set(next(replies))
            expected = waiting.get((p.value, t), set()) if t in grouped else set()
            if limit_of[t]:
                expected = {g for g in expected if not g or active[t][g] < limit_of[t]}
            expected -= resting[t]
            assert ring == expected, f"ring of {p.value} {t} is {ring}, expected {expected}"
    for counted in (pending, active):
        for t in types:
            stored = {g: int(float(n)) for g, n in _pairs(next(replies)).items()}
            assert stored == dict(counted[t]), f"group counts of {t}: {stored} != {counted[t]}"
    for name, ids in lists.items():
        assert len(ids) == len(set(ids)), f"list {name!r} holds an id twice"


async def _assert_limit_invariants(broker: Broker) -> None:
    """The limits hash claim.lua reads is the policy's limits, live over config, folded:
    nothing a policy no longer sets, nothing missing that it does."""
    k = broker.keys
    limits, rate, held = await broker.redis.pipeline(
        [("HGETALL", k.limits), ("HKEYS", k.rate), ("HKEYS", k.held)]
    )
    view = await broker.policy()
    expected: dict[str, str] = {}
    for task_type in view.task_types:
        p = merged(view.layer("live", task_type), view.layer("config", task_type))
        if (
            p.rate_limit is None
            and p.concurrency is None
            and not p.paused
            and p.group_concurrency is None
            and p.group_rate_limit is None
        ):
            continue
        count, interval = encode_rate(p.rate_limit).split("/") if p.rate_limit else ("0", "0")
        paused = 1 if p.paused else 0
        group_rate = encode_rate(p.group_rate_limit) if p.group_rate_limit else "0/0"
        expected[task_type] = (
            f"{count} {interval} {p.rate_burst or 1} {p.concurrency or 0} {paused}"
            f" {p.group_concurrency or 0} {group_rate.replace('/', ' ')}"
        )
    assert _pairs(limits) == expected, f"limits hash {_pairs(limits)} != policy {expected}"
    assert set(rate) <= set(expected), f"rate state of unlimited types: {set(rate) - set(expected)}"
    assert set(held) <= set(expected), f"held notes of unlimited types: {set(held) - set(expected)}"


async def _assert_schedule_invariants(
    broker: Broker, state_keys: list[str], state_prefix: str
) -> None:
    """Every schedule has a state hash and the reverse; exactly the unpaused are due."""
    k = broker.keys
    defined, due, *states = await broker.redis.pipeline(
        [
            ("HKEYS", k.schedules),
            ("ZRANGE", k.schedule_due, "0", "-1"),
            *[("HGET", key, "paused") for key in state_keys],
        ]
    )
    with_state = {key.removeprefix(state_prefix) for key in state_keys}
    assert with_state == set(defined), f"schedule states {with_state} != definitions {defined}"
    unpaused = {
        key.removeprefix(state_prefix)
        for key, paused in zip(state_keys, states, strict=True)
        if paused != "1"
    }
    assert set(due) == unpaused, f"due schedules {sorted(due)} != unpaused {sorted(unpaused)}"


#: States a task with dependencies can end in without having run.
_NEVER_RAN = (TaskState.CANCELLED, TaskState.EXPIRED)


def _assert_dependency_invariants(tasks: dict[str, dict[str, str]]) -> None:
    """The dependency links agree both ways, and each task's state agrees with its
    dependencies': a blocked task waits for at least one dependency, each of which has not
    ended and names it among its dependents; a task that may not run without its dependencies
    (``on_dependency_failure`` cancel) ran, or runs, only after all of them succeeded.
    Dependencies whose records were trimmed are not judged."""
    for task_id, fields in tasks.items():
        for child in filter(None, fields.get("dependents", "").split(",")):
            if child in tasks:
                deps = tasks[child].get("depends_on", "").split(",")
                assert task_id in deps, f"{child} is a dependent of {task_id} but not its child"
        deps = [d for d in fields.get("depends_on", "").split(",") if d]
        state = TaskState(fields["state"])
        if state is TaskState.BLOCKED:
            waiting = fields.get("waiting_for", "").split(",")
            assert waiting != [""], f"blocked task {task_id} waits for nothing"
            assert len(set(waiting)) == len(waiting), f"{task_id} waits twice: {waiting}"
            for dep_id in waiting:
                assert dep_id in deps, f"{task_id} waits for {dep_id}, not a dependency"
                dep = tasks.get(dep_id)
                assert dep is not None, f"{task_id} waits for {dep_id}, whose record is gone"
                assert not TaskState(dep["state"]).is_terminal, (
                    f"{task_id} waits for {dep_id}, which ended {dep['state']}"
                )
                assert task_id in dep.get("dependents", "").split(","), (
                    f"{dep_id} does not name its dependent {task_id}"
                )
        elif deps and state not in _NEVER_RAN and fields["on_dependency_failure"] != "run":
            unmet = [d for d in deps if d in tasks and tasks[d]["state"] != TaskState.SUCCEEDED]
            assert not unmet, f"{state} task {task_id} ran before {unmet} succeeded"


def _assert_deadline_invariants(
    tasks: dict[str, dict[str, str]], deadlines: dict[str, str]
) -> None:
    """The deadlines set holds tasks that have not ended, each at its ``expires_ms``, and every
    waiting task with a deadline (an active one may have been dropped by a promote that found
    it past its deadline: its report decides)."""
    for task_id, score in deadlines.items():
        task = tasks.get(task_id)
        assert task is not None, f"deadline of {task_id}, which does not exist"
        assert not TaskState(task["state"]).is_terminal, f"deadline of ended task {task_id}"
        assert int(float(score)) == int(task["expires_ms"]), f"task {task_id}: deadline score"
    waiting = {TaskState.BLOCKED, TaskState.PENDING, TaskState.SCHEDULED}
    for task_id, fields in tasks.items():
        if fields.get("expires_ms") and TaskState(fields["state"]) in waiting:
            assert task_id in deadlines, f"waiting task {task_id} with a deadline not in the set"
