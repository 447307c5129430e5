"""What the ``taskqueue`` command shows, decided without any I/O: the JSON documents, the
words for times and states, and each command's *view* — a :class:`Listing` of rows or
:class:`Details` of one thing.

:mod:`taskqueue.cli.output` prints a view in one of three forms (rich on a terminal, plain
columns in a pipe, or JSON), so the same table can be a one-off print, a ``--watch`` screen
redrawn in place or a plain snapshot, and tests can check a view without a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
from rich.text import Text

from taskqueue.models import (
    DependencyFailure,
    QueueStats,
    Task,
    TaskState,
    WorkerInfo,
    Workflow,
)
from taskqueue.wire import iso

if TYPE_CHECKING:  # importing the plugin machinery costs every command 0.15s
    from taskqueue.processors import ProcessorSpec

#: How each state is coloured on a terminal; the words themselves are what pipes get.
STATE_STYLES: dict[TaskState, str] = {
    TaskState.BLOCKED: "dim",
    TaskState.PENDING: "yellow",
    TaskState.SCHEDULED: "cyan",
    TaskState.ACTIVE: "bold blue",
    TaskState.SUCCEEDED: "green",
    TaskState.DEAD: "bold red",
    TaskState.CANCELLED: "magenta",
    TaskState.EXPIRED: "dim magenta",
}

Cell = str | Text


# -- words for times --------------------------------------------------------------------------


def span(seconds: float) -> str:
    """A duration the way people say it: ``350ms``, ``4.2s``, ``3m05s``, ``2h03m``, ``3d04h``."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def ago(ms: int | None, now_ms: int) -> str:
    """``5s ago``, or ``in 5s`` for a time still to come (a scheduled task's start)."""
    if ms is None:
        return "-"
    delta = (now_ms - ms) / 1000
    return f"{span(delta)} ago" if delta >= 0 else f"in {span(delta)}"


def moment(ms: int | None, now_ms: int) -> str:
    """An exact UTC time and how long ago it was, for details where both matter."""
    if ms is None:
        return "-"
    return f"{iso(ms)} ({ago(ms, now_ms)})"


def state_text(state: TaskState) -> Text:
    return Text(state.value, style=STATE_STYLES[state])


def compact(text: str, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters, for a table cell."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def compact_json(value: Any, width: int = 60) -> str:
    """``value`` as one line of JSON (a string keeps its quotes), cut to ``width``."""
    return compact(json.dumps(value, ensure_ascii=False), width)


# -- views ------------------------------------------------------------------------------------


@attrs.frozen
class Listing:
    """Rows under named columns. ``numeric`` columns are right-aligned; ``empty`` is what a
    terminal shows when there are no rows (a pipe gets the header alone, so ``wc -l`` and
    ``tail -n +2`` keep working). ``optional`` columns are the first a narrow terminal hides,
    in that order."""

    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    title: str | None = None
    empty: str = "nothing to show"
    numeric: frozenset[int] = frozenset()
    optional: tuple[int, ...] = ()


@attrs.frozen
class Details:
    """``name: value`` pairs about one thing; a value may span several lines (a traceback)."""

    pairs: list[tuple[str, Cell]]
    title: str | None = None


View = Listing | Details


def task_details(task: Task, now_ms: int, *, traceback: bool = True) -> Details:
    """Everything about one task. Without ``traceback``, the last error's traceback is
    replaced by how long it is and how to see it: it can run to a screenful."""
    pairs: list[tuple[str, Cell]] = [
        ("id", task.id),
        ("type", task.type),
        ("state", state_text(task.state)),
        ("priority", task.priority.value),
        ("attempt", f"{task.attempt} of {task.max_retries + 1}"),
        ("timeout", span(task.timeout_ms / 1000)),
        ("payload", json.dumps(task.payload, ensure_ascii=False)),
        ("created", moment(task.created_ms, now_ms)),
    ]
    if task.snoozes:
        pairs.insert(5, ("snoozes", str(task.snoozes)))
    if task.state is TaskState.SCHEDULED or task.ready_ms != task.created_ms:
        pairs.append(("ready", moment(task.ready_ms, now_ms)))
    if task.started_ms is not None:
        pairs.append(("started", moment(task.started_ms, now_ms)))
    if task.expires_ms is not None:
        pairs.append(("deadline", moment(task.expires_ms, now_ms)))
    if task.finished_ms is not None:
        pairs.append(("finished", moment(task.finished_ms, now_ms)))
        if task.started_ms is not None:
            pairs.append(("ran for", span((task.finished_ms - task.started_ms) / 1000)))
    if task.worker_id:
        pairs.append(("worker", task.worker_id))
    if task.group:
        pairs.append(("group", task.group))
    if task.idempotency_key:
        pairs.append(("idempotency key", task.idempotency_key))
    pairs += [(f"header {name}", value) for name, value in sorted(task.headers.items())]
    if task.cancel_requested and not task.state.is_terminal:
        pairs.append(("cancel", Text("requested", style="magenta")))
    pairs += _links(task)
    if task.progress is not None:
        pairs.append(("progress", json.dumps(task.progress, ensure_ascii=False)))
    if task.state is TaskState.SUCCEEDED:
        pairs.append(("result", json.dumps(task.result, ensure_ascii=False)))
    # A task that succeeded after failing (a retry, a requeue) keeps its last error.
    earlier = "earlier " if task.state is TaskState.SUCCEEDED else ""
    if task.error:
        pairs.append((f"{earlier}error", Text(task.error, style="dim" if earlier else "red")))
    if task.traceback and traceback:
        pairs.append((f"{earlier}traceback", Text(task.traceback.rstrip(), style="dim")))
    elif task.traceback:
        lines = len(task.traceback.rstrip().splitlines())
        hint = f"{lines} lines: taskqueue status {task.id} --traceback"
        pairs.append((f"{earlier}traceback", Text(hint, style="dim")))
    return Details(pairs, title=f"task {task.id}")


def _links(task: Task) -> list[tuple[str, Cell]]:
    """The task's dependencies and dependents, one id a line (an empty name continues)."""
    pairs: list[tuple[str, Cell]] = []
    for name, ids in (("depends on", task.depends_on), ("dependents", task.dependents)):
        pairs += [(name if n == 0 else "", task_id) for n, task_id in enumerate(ids)]
    if task.state is TaskState.BLOCKED:
        pairs += [("waits for" if n == 0 else "", i) for n, i in enumerate(task.waiting_for)]
    if task.depends_on and task.on_dependency_failure is DependencyFailure.RUN:
        pairs.append(("if one fails", "runs anyway"))
    if task.inputs is not None:
        pairs.append(("inputs", json.dumps(task.inputs, ensure_ascii=False)))
    return pairs


def task_listing(tasks: Sequence[Task], now_ms: int, *, title: str | None = None) -> Listing:
    """Tasks as rows; the last column says what matters most in each state."""
    rows: list[tuple[Cell, ...]] = []
    for task in tasks:
        if task.state is TaskState.SCHEDULED:
            note = f"starts {ago(task.ready_ms, now_ms)}"
        elif task.state is TaskState.SUCCEEDED:
            note = compact_json(task.result)
        elif task.error:
            note = compact(task.error)
        else:
            note = compact_json(task.payload)
        rows.append(
            (
                task.id,
                task.type,
                state_text(task.state),
                task.priority.value,
                f"{task.attempt}/{task.max_retries + 1}",
                ago(task.created_ms, now_ms),
                note,
            )
        )
    return Listing(
        ("ID", "TYPE", "STATE", "PRIORITY", "ATTEMPT", "CREATED", "DETAIL"),
        rows,
        title=title,
        empty="no tasks",
        optional=(3, 4, 5),
    )


def workflow_listing(flow: Workflow) -> Listing:
    """A workflow's tasks as rows, in the order read (the one asked for first), with what
    each waits for; the title counts them by state."""
    states = ", ".join(f"{n} {state}" for state, n in flow.by_state.items() if n)
    more = "" if flow.complete else f" (the first {len(flow.tasks)})"
    rows: list[tuple[Cell, ...]] = [
        (
            t.id,
            t.type,
            state_text(t.state),
            ", ".join(t.depends_on) or "-",
            compact(t.error) if t.error else "",
        )
        for t in flow.tasks
    ]
    return Listing(
        ("ID", "TYPE", "STATE", "DEPENDS ON", "ERROR"),
        rows,
        title=f"workflow of {len(flow.tasks)} tasks{more}: {states}",
        optional=(4, 3),
    )


def worker_listing(workers: Sequence[WorkerInfo], now_ms: int) -> Listing:
    rows: list[tuple[Cell, ...]] = [
        (
            w.id,
            w.host,
            str(w.pid),
            f"{w.in_flight}/{w.concurrency}",
            str(w.processed),
            str(w.failed),
            span((now_ms - w.started_ms) / 1000),
            ago(w.last_heartbeat_ms, now_ms),
            ",".join(sorted(w.task_types)),
        )
        for w in workers
    ]
    return Listing(
        ("ID", "HOST", "PID", "BUSY", "PROCESSED", "FAILED", "UP", "LAST BEAT", "TYPES"),
        rows,
        title="workers",
        empty="no workers registered",
        numeric=frozenset({2, 3, 4, 5}),
        optional=(2, 1, 6, 5, 4),
    )


_TYPE_STATES = (TaskState.PENDING, TaskState.SCHEDULED, TaskState.ACTIVE, TaskState.DEAD)


def stats_views(stats: QueueStats) -> list[View]:
    """Three tables: tasks by state, live tasks by type, and the lifetime totals; a fourth,
    the top groups by backlog, once a type has grouped tasks."""
    states = Listing(
        ("STATE", "TASKS"),
        [(state_text(state), str(stats.by_state[state])) for state in TaskState],
        title="tasks by state",
        numeric=frozenset({1}),
    )
    by_type: dict[str, dict[TaskState, int]] = {}
    for (state, task_type), count in stats.by_state_and_type.items():
        by_type.setdefault(task_type, {})[state] = count
    held = stats.held_by_limit  # a column only while a limit holds some type back
    # and one of blocked tasks only while some task waits for its dependencies
    shown = (
        (TaskState.BLOCKED, *_TYPE_STATES)
        if stats.by_state.get(TaskState.BLOCKED)
        else _TYPE_STATES
    )
    types = Listing(
        ("TYPE", *(s.value.upper() for s in shown), *(("HELD BY",) if held else ())),
        [
            (
                task_type,
                *(str(counts.get(s, 0)) for s in shown),
                *(
                    (Text(held[task_type], style="yellow") if task_type in held else "-",)
                    * bool(held)
                ),
            )
            for task_type, counts in sorted(by_type.items())
            if any(counts.values())
        ],
        title="live tasks by type",
        empty="no live tasks",
        numeric=frozenset(range(1, len(shown) + 1)),
    )
    totals = Listing(
        ("EVENT", "SINCE START"),
        [(name, str(n)) for name, n in sorted(stats.totals.items())],
        title="lifetime totals",
        empty="nothing yet",
        numeric=frozenset({1}),
    )
    return [states, types, totals, *([group_listing(stats)] if stats.groups else [])]


def group_listing(stats: QueueStats) -> Listing:
    """The top groups of each grouped task type by backlog (fair share), with how many groups
    wait and run in all."""
    rows: list[tuple[Cell, ...]] = []
    for g in stats.groups:
        rows.append((g.type, "-", str(g.groups_pending), str(g.groups_active)))
        rows += [("", t.group, str(t.pending), str(t.active)) for t in g.top]
    return Listing(
        ("TYPE", "GROUP", "PENDING", "ACTIVE"),
        rows,
        title="top groups by backlog (per type first: how many groups wait, how many run)",
        numeric=frozenset({2, 3}),
    )


def plugin_listing(specs: Sequence[ProcessorSpec]) -> Listing:
    """The installed task types: the distribution and version that provide each, the plugin
    (entry point) that registered it, and its own defaults."""

    def default(value: object) -> str:
        return "-" if value is None else str(value)

    rows: list[tuple[Cell, ...]] = [
        (
            spec.task_type,
            spec.version or "-",
            spec.plugin,
            "-" if spec.timeout is None else span(spec.timeout),
            default(spec.max_retries),
            default(spec.priority),
            spec.description,
        )
        for spec in specs
    ]
    return Listing(
        ("TYPE", "VERSION", "PLUGIN", "TIMEOUT", "RETRIES", "PRIORITY", "DESCRIPTION"),
        rows,
        title="task types",
        empty="no plugins installed",
        optional=(2, 5, 4, 3),
    )


def plugin_json(spec: ProcessorSpec) -> dict[str, Any]:
    return {
        "task_type": spec.task_type,
        "plugin": spec.plugin,
        "version": spec.version,
        "description": spec.description,
        "timeout": spec.timeout,
        "max_retries": spec.max_retries,
        "priority": None if spec.priority is None else spec.priority.value,
    }


# -- configuration as TOML --------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(str(value), ensure_ascii=False)


def config_toml(masked: dict[str, dict[str, object]]) -> str:
    """The masked configuration as a TOML file that reads back (an unset key as a comment)."""
    lines: list[str] = []
    for section, values in masked.items():
        if section == "plugins":
            for plugin, table in values.items():
                assert isinstance(table, dict)
                lines += ["", f"[plugins.{plugin}]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
            continue
        if section == "schedules":
            for table in values.values():
                assert isinstance(table, dict)
                lines += ["", "[[schedules]]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
            continue
        lines += ["", f"[{section}]"]
        for key, value in values.items():
            lines.append(f"# {key} is unset" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
