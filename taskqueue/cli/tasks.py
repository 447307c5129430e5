"""``taskqueue submit``, ``status``, ``cancel``, ``tasks`` and ``purge``: one task at a time, a
page, or (``cancel --type``, ``purge``) every task of a type or state, after asking.

Piped, ``submit`` prints only the new id (``id=$(taskqueue submit ...)`` works); on a terminal
it says more. ``submit --wait`` follows the task to its end and exits 1 unless it succeeded,
so a shell script can run a task as a step.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import IO, Any

import attrs
import click
import msgspec
import trio
from rich.text import Text

from taskqueue.broker import Page, Submission, Submitted, wall_clock_ms
from taskqueue.broker.keys import COUNTED_STATES
from taskqueue.broker.model import BULK_CANCEL_STATES, PURGEABLE_STATES
from taskqueue.cli.common import (
    DURATION,
    EXIT_FAILED,
    PRIORITIES,
    STATES,
    Refused,
    Session,
    client_options,
    fail,
    read_payload,
)
from taskqueue.cli.views import (
    span,
    state_text,
    task_details,
    task_listing,
    workflow_listing,
)
from taskqueue.models import Debounce, DebounceKeep, DependencyFailure, Task, TaskState
from taskqueue.operating import Operator
from taskqueue.wire import cancelled_json, submitted_json, task_json


@click.command()
@click.argument("task_type", metavar="TYPE")
@click.option("--payload", metavar="JSON", help="The payload, as JSON text.")
@click.option(
    "--payload-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the JSON payload from a file ('-': standard input).",
)
@click.option(
    "--priority",
    type=click.Choice(PRIORITIES),
    help="Default: the task type's own, else medium.",
)
@click.option(
    "--max-retries",
    type=int,
    help="Retries after a failed attempt (default: the type's, else task.max_retries).",
)
@click.option(
    "--timeout",
    **DURATION,
    help="Run-time limit, e.g. 30s, 5m (default: the type's, else task.default_timeout).",
)
@click.option("--delay", **DURATION, help="Start no sooner than this from now, e.g. 10s, 1h.")
@click.option(
    "--expires-in",
    **DURATION,
    help="Its deadline from now, e.g. 30s, 1h: not started by then, it ends expired, never run.",
)
@click.option("--idempotency-key", help="Submitting the same key again returns the first task.")
@click.option(
    "--header",
    "headers",
    metavar="NAME=VALUE",
    multiple=True,
    help="A header for its processor (a trace context, a tenant); repeat for several.",
)
@click.option(
    "--group",
    metavar="NAME",
    help="Its fair-share group (a tenant, a customer): within a priority, claims take turns"
    " across the groups with ready tasks.",
)
@click.option(
    "--debounce",
    "debounce_key",
    metavar="KEY",
    help="Join the waiting task of this type with this key (its payload replaced), or make one"
    " that starts once submissions stop for --debounce-window.",
)
@click.option(
    "--debounce-window", **DURATION, help="With --debounce: the quiet time before it starts."
)
@click.option(
    "--debounce-max-wait",
    **DURATION,
    help="With --debounce: start no later than this after the first submission.",
)
@click.option(
    "--debounce-keep",
    type=click.Choice(["last", "first"]),
    default="last",
    show_default=True,
    help="With --debounce: which submission's payload the task runs with.",
)
@click.option(
    "--after",
    "depends_on",
    metavar="ID",
    multiple=True,
    help="Run once this task succeeded, with its result as an input (repeat for several).",
)
@click.option(
    "--unique",
    is_flag=True,
    default=None,
    help="If a task of this type and payload is still waiting or running, return it instead.",
)
@click.option(
    "--run-anyway",
    is_flag=True,
    help="With --after: run even if one of them ends dead, cancelled or expired (else cancelled"
    " too).",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Submit this many copies, in batches, with a progress bar.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Tasks per round trip with --count.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the task to end and print it; exit 1 unless it succeeded.",
)
@click.option("--wait-timeout", **DURATION, help="With --wait: give up after this long (exit 1).")
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse (exit 1) a type no live worker serves, instead of warning.",
)
@click.option(
    "--unserved-grace",
    **DURATION,
    default="5s",
    show_default=True,
    help="With --wait: give up (exit 1) once no live worker has served the type for this long.",
)
@client_options
def submit(
    task_type: str,
    payload: str | None,
    payload_file: IO[str] | None,
    priority: str | None,
    max_retries: int | None,
    timeout: float | None,
    delay: float | None,
    expires_in: float | None,
    idempotency_key: str | None,
    headers: tuple[str, ...],
    group: str | None,
    debounce_key: str | None,
    debounce_window: float | None,
    debounce_max_wait: float | None,
    debounce_keep: DebounceKeep,
    depends_on: tuple[str, ...],
    unique: bool | None,
    run_anyway: bool,
    count: int,
    batch: int,
    wait: bool,
    wait_timeout: float | None,
    strict: bool,
    unserved_grace: float,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Submit a task of TYPE and print its id.

    \b
      taskqueue submit http.request --payload '{"url": "https://example.com/hook"}'
      taskqueue submit echo --payload-file job.json --wait
      taskqueue submit noop --count 10000
      taskqueue submit report.send --after 0190c3a1-...   # runs once that task succeeded
      taskqueue submit sms.send --expires-in 5m           # not started in 5 minutes: expired
      taskqueue submit mail.send --header x-tenant=acme
      taskqueue submit report.build --group customer-17  # takes turns with other customers
      taskqueue submit search.reindex --debounce user-7 --debounce-window 2s --debounce-max-wait 30s
    """
    if count > 1 and wait:
        fail("--wait follows one task; `taskqueue bench` submits many and waits for them")
    if count > 1 and idempotency_key is not None:
        fail("--idempotency-key with --count would make every copy the same task")
    if wait_timeout is not None and not wait:
        fail("--wait-timeout needs --wait")
    if run_anyway and not depends_on:
        fail("--run-anyway needs --after")
    if (debounce_key is None) != (debounce_window is None):
        fail("--debounce and --debounce-window go together")
    if debounce_max_wait is not None and debounce_key is None:
        fail("--debounce-max-wait needs --debounce")
    if debounce_key is not None and count > 1:
        fail("--debounce with --count would make every copy join one task")
    value = read_payload(payload, payload_file)
    s = Session.start(config_path, flags, json_mode)
    submission = Submission(
        type=task_type,
        payload=value,
        priority=priority,
        max_retries=max_retries,
        timeout=timeout,
        delay=delay,
        expires_in=expires_in,
        idempotency_key=idempotency_key,
        headers=_headers(headers),
        group=group,
        depends_on=list(depends_on) or None,
        unique=unique,
        on_dependency_failure=DependencyFailure.RUN if run_anyway else None,
        debounce=None
        if debounce_key is None or debounce_window is None
        else Debounce(
            key=debounce_key,
            window=debounce_window,
            max_wait=debounce_max_wait,
            keep=debounce_keep,
        ),
    )
    if unserved_grace <= 0:
        fail("--unserved-grace must be above 0")
    if count > 1:
        _submit_copies(s, submission, count, batch, strict)
    else:
        _submit_one(s, submission, strict, wait, Waiting(wait_timeout, unserved_grace))


@attrs.frozen
class Waiting:
    """How ``submit --wait`` waits: ``timeout`` in all (None: no limit), and how long a task
    may wait with no live worker serving its type before the wait gives up."""

    timeout: float | None
    unserved_grace: float


async def wait_while_served(
    client: Operator, task: Submitted, task_type: str, how: Waiting
) -> Task:
    """The task once it ends. Every ``unserved_grace`` seconds it has not, the served types are
    read (one command): if none of the live workers serves ``task_type``, the wait ends with
    "no worker serves this type" instead of lasting for ever."""
    deadline = math.inf if how.timeout is None else trio.current_time() + how.timeout
    while True:
        left = deadline - trio.current_time()
        try:
            return await client.wait(task.id, timeout=max(0.0, min(how.unserved_grace, left)))
        except TimeoutError:
            if trio.current_time() >= deadline:
                raise TimeoutError(f"task {task.id} did not end within {how.timeout}s") from None
        if task_type not in await client.served_types():
            raise Refused(
                f"no worker serves this type: no live worker has served task type "
                f"{task_type!r} for {span(how.unserved_grace)}; task {task.id} waits for one",
                EXIT_FAILED,
            )


def _submit_one(
    s: Session, submission: Submission, strict: bool, wait: bool, waiting_how: Waiting
) -> None:
    out = s.out

    async def one(client: Operator) -> tuple[Submitted, Task | None]:
        (first,) = await client.submit_many([submission], strict=strict)
        for warning in first.warnings:
            out.note(f"warning: {warning}")
        if not out.json_mode:
            if out.rich:
                how = _how(first)
                out.line(
                    Text.assemble(f"{how} ", (first.id, "bold"), " (", state_text(first.state), ")")
                )
            else:
                out.line(first.id)
        if not wait:
            return first, None
        waiting = out.err.status(f"waiting for {first.id} …") if out.err.is_terminal else None
        with waiting or contextlib.nullcontext():
            return first, await wait_while_served(client, first, submission.type, waiting_how)

    first, task = s.call(one)
    if task is None:
        if out.json_mode:
            out.json(submitted_json(first))
        return
    if out.json_mode:
        out.json(task_json(task))
    else:
        out.show(task_details(task, wall_clock_ms(), traceback=False))
    if task.state is not TaskState.SUCCEEDED:
        why = f": {task.error.strip().splitlines()[-1]}" if task.error else ""
        fail(f"task {task.id} ended {task.state.value}{why}", EXIT_FAILED)


def _submit_copies(
    s: Session, submission: Submission, count: int, batch: int, strict: bool
) -> None:
    """``submit --count``: batches of one round trip each, a progress bar on a terminal."""
    out = s.out

    async def copies(client: Operator) -> list[Submitted]:
        done: list[Submitted] = []
        with out.progress(("submitting", count)) as bars:
            while len(done) < count:
                part = await client.submit_many(
                    [submission] * min(batch, count - len(done)), strict=strict
                )
                if not done:
                    for warning in part[0].warnings:
                        out.note(f"warning: {warning}")
                done += part
                bars.advance(len(part))
        return done

    start = time.perf_counter()
    done = s.call(copies)
    seconds = time.perf_counter() - start
    if out.json_mode:
        out.json([submitted_json(x) for x in done])
    elif out.rich:
        out.line(
            f"submitted {len(done)} tasks of type {submission.type} in {span(seconds)} "
            f"({len(done) / max(seconds, 1e-9):,.0f}/s): {done[0].id} … {done[-1].id}"
        )
    else:
        out.lines(x.id for x in done)


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--traceback", is_flag=True, help="Show the last error's whole traceback.")
@client_options
def status(
    task_id: str, traceback: bool, config_path: str | None, json_mode: bool, **flags: Any
) -> None:
    """Show one task: its state, attempts, times, result or last error (exit 3 if unknown)."""
    s = Session.start(config_path, flags, json_mode)
    task = s.call(lambda client: client.get(task_id))
    if json_mode:
        s.out.json(task_json(task))
    else:
        s.out.show(task_details(task, wall_clock_ms(), traceback=traceback))


@click.command()
@click.argument("task_id", metavar="ID")
@client_options
def workflow(task_id: str, config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Show every task linked to one through dependencies, read at one moment (exit 3 if
    there is no such task)."""
    s = Session.start(config_path, flags, json_mode)
    flow = s.call(lambda client: client.workflow(task_id))
    if json_mode:
        s.out.json(msgspec.to_builtins(flow))
    else:
        s.out.show(workflow_listing(flow))


@click.command()
@click.argument("task_id", metavar="[ID]", required=False)
@click.option("--type", "task_type", metavar="TYPE", help="Cancel every waiting task of this type.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in BULK_CANCEL_STATES]),
    help="With --type: only the tasks in this state (default: blocked, pending, scheduled).",
)
@click.option(
    "--active", is_flag=True, help="With --type: also ask the workers of its running tasks to stop."
)
@click.option("--yes", "-y", is_flag=True, help="With --type: do not ask for confirmation.")
@client_options
def cancel(
    task_id: str | None,
    task_type: str | None,
    state: str | None,
    active: bool,
    yes: bool,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Cancel a task: at once if it waits, by request to its worker if it runs; or, with
    --type, every blocked, pending and scheduled task of a type (asking first).

    Exit 1 if the task has already ended, 3 if there is no such task. With --type it asks on
    a terminal; without one (a script, a pipe) it needs --yes.
    """
    if (task_id is None) == (task_type is None):
        fail("name what to cancel: an ID, or --type TYPE (one of them)")
    if task_type is None and (state is not None or active or yes):
        fail("--state, --active and --yes go with --type")
    s = Session.start(config_path, flags, json_mode)
    if task_type is not None:
        _cancel_type(s, task_type, state, active, yes)
        return
    assert task_id is not None
    outcome = s.call(lambda client: client.cancel(task_id))
    if json_mode:
        s.out.json({"id": task_id, "outcome": outcome})
    elif outcome == "cancelled":
        s.out.line(f"cancelled {task_id}")
    else:
        s.out.line(f"cancel requested for {task_id}: it is running, and its worker stops it")


def _cancel_type(s: Session, task_type: str, state: str | None, active: bool, yes: bool) -> None:
    """``cancel --type``: count what it would affect, ask, then cancel in bounded steps."""
    states = list(BULK_CANCEL_STATES) if state is None else [TaskState(state)]
    stats = s.call(lambda client: client.stats())
    counts = {st: stats.by_state_and_type.get((st, task_type), 0) for st in states}
    counts = {st: n for st, n in counts.items() if n or st is not TaskState.BLOCKED or state}
    running = stats.by_state_and_type.get((TaskState.ACTIVE, task_type), 0) if active else 0
    what = " and ".join(f"{n} {st.value}" for st, n in counts.items())
    plan = f"{what} task{'s' * (sum(counts.values()) != 1)} of type {task_type}"
    if active:
        plan += f", and ask to stop its {running} running"
    if (sum(counts.values()) or running) and not yes:
        confirm(f"cancel would end {plan}", f"Cancel {plan}?", "nothing was cancelled")
    cancellation = s.call(
        lambda client: client.cancel_all(task_type, states=states, include_active=active)
    )
    if s.out.json_mode:
        s.out.json(cancelled_json(cancellation))
        return
    done = ", ".join(f"{cancellation.by_state.get(st, 0)} {st.value}" for st in counts)
    line = f"cancelled {cancellation.cancelled} tasks of type {task_type} ({done})"
    if active:
        line += f"; asked to stop {cancellation.requested} running"
    s.out.line(line)


def confirm(refusal: str, question: str, declined: str) -> None:
    """Ask ``question`` on a terminal (exit 1 saying ``declined`` on a no); without one,
    refuse, saying what it would do (``refusal``): a bulk change that a missing prompt
    silently confirmed could not be undone."""
    if not sys.stdin.isatty():
        fail(f"{refusal}: pass --yes to confirm")
    if not click.confirm(f"{question} This cannot be undone.", err=True):
        fail(declined, EXIT_FAILED)


@click.command()
@click.argument("state", type=click.Choice([s.value for s in PURGEABLE_STATES]))
@click.option("--type", "task_type", metavar="TYPE", help="Delete only the tasks of this type.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@client_options
def purge(
    state: str,
    task_type: str | None,
    yes: bool,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Delete the finished tasks in STATE for good (all of them, or those of --type), as
    retention would once they expire.

    Asks first on a terminal. Without one (a script, a pipe) it needs --yes.
    """
    s = Session.start(config_path, flags, json_mode)
    finished = TaskState(state)
    stats = s.call(lambda client: client.stats())
    of_type = f" of type {task_type}" if task_type else ""
    if task_type is None:
        n, plan = stats.by_state[finished], f"{stats.by_state[finished]} {state} tasks"
    elif finished in COUNTED_STATES:
        n = stats.by_state_and_type.get((finished, task_type), 0)
        plan = f"{n} {state} tasks{of_type}"
    else:  # succeeded and cancelled tasks are counted in all, not by type
        n = stats.by_state[finished]
        plan = f"the {state} tasks{of_type} (of {n} {state} in all)"
    if n and not yes:
        confirm(
            f"purge would delete {plan}", f"Delete {plan}?", "purge cancelled; nothing was deleted"
        )
    purged = s.call(lambda client: client.purge(finished, task_type)) if n else 0
    if json_mode:
        s.out.json({"state": state, "type": task_type, "purged": purged})
    else:
        s.out.line(f"purged {purged} {state} task{'s' * (purged != 1)}{of_type}")


def show_page(s: Session, page: Page[Task], title: str, next_command: str) -> None:
    """Print one page of tasks and, on stderr, how to get the next one."""
    if s.out.json_mode:
        s.out.json([task_json(t) for t in page.items])
    else:
        s.out.show(task_listing(page.items, wall_clock_ms(), title=title))
    if page.next_cursor is not None:
        s.out.note(f"more: {next_command} --cursor {page.next_cursor}")


def listing_options(func: Any) -> Any:
    """``--type``, ``--limit`` and ``--cursor``: the filters and paging of a task listing."""
    func = click.option(
        "--cursor", help="Where the previous page ended (printed on stderr after it)."
    )(func)
    func = click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)(
        func
    )
    return click.option("--type", "task_type", metavar="TYPE", help="Only tasks of this type.")(
        func
    )


@click.command()
@click.option(
    "--state",
    type=click.Choice(STATES),
    default="pending",
    show_default=True,
    help="List the tasks in this state.",
)
@listing_options
@client_options
def tasks(
    state: str,
    task_type: str | None,
    limit: int,
    cursor: str | None,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """List tasks in one state, a page at a time (pending: by priority, then first in first
    out; scheduled: by start time; ended states: newest first)."""
    s = Session.start(config_path, flags, json_mode)
    page = s.call(
        lambda client: client.list_tasks(state, task_type=task_type, limit=limit, cursor=cursor)
    )
    of_type = f" of type {task_type}" if task_type else ""
    again = f"taskqueue tasks --state {state}" + (f" --type {task_type}" if task_type else "")
    show_page(s, page, f"{state} tasks{of_type}", again)


def _headers(given: tuple[str, ...]) -> dict[str, str] | None:
    """``--header NAME=VALUE`` options as headers (None for none)."""
    headers: dict[str, str] = {}
    for option in given:
        name, equals, value = option.partition("=")
        if not equals:
            fail(f"--header {option!r} must be NAME=VALUE")
        headers[name] = value
    return headers or None


def _how(submitted: Submitted) -> str:
    """What a submission did, as ``taskqueue submit`` says it."""
    if submitted.debounced == "replaced":
        return "joined the waiting task (debounce; payload replaced)"
    if submitted.debounced == "joined":
        return "joined the waiting task (debounce; first payload kept)"
    return "submitted" if submitted.created else "already submitted (same idempotency key)"
