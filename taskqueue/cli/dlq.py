"""``taskqueue dlq``: the dead-letter queue — tasks that failed their last attempt, kept until
an operator requeues or purges them."""

from __future__ import annotations

from typing import Any

import click

from taskqueue.broker import wall_clock_ms
from taskqueue.cli.common import EXIT_FAILED, Refused, Session, client_options, fail
from taskqueue.cli.tasks import confirm, listing_options, show_page
from taskqueue.cli.views import task_details
from taskqueue.models import Task, TaskState
from taskqueue.operating import Operator
from taskqueue.wire import task_json


@click.group()
def dlq() -> None:
    """The dead-letter queue: tasks that failed their last attempt, kept until requeued."""


def _plural(n: int, task_type: str | None) -> str:
    return f"{n} dead task{'s' * (n != 1)}" + (f" of type {task_type}" if task_type else "")


@dlq.command("list")
@listing_options
@client_options
def dlq_list(
    task_type: str | None,
    limit: int,
    cursor: str | None,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """List dead tasks, newest first, with their last error."""
    s = Session.start(config_path, flags, json_mode)
    page = s.call(
        lambda client: client.dead_letters(task_type=task_type, limit=limit, cursor=cursor)
    )
    again = "taskqueue dlq list" + (f" --type {task_type}" if task_type else "")
    show_page(s, page, "dead-letter queue", again)


@dlq.command("show")
@click.argument("task_id", metavar="ID")
@client_options
def dlq_show(task_id: str, config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Show a dead task with its last error and traceback (exit 1 if it is not dead)."""
    s = Session.start(config_path, flags, json_mode)

    async def dead(client: Operator) -> Task:
        task = await client.get(task_id)
        if task.state is not TaskState.DEAD:
            raise Refused(
                f"task {task_id} is {task.state.value}, not in the dead-letter queue", EXIT_FAILED
            )
        return task

    task = s.call(dead)
    if json_mode:
        s.out.json(task_json(task))
    else:
        s.out.show(task_details(task, wall_clock_ms()))


@dlq.command("requeue")
@click.argument("task_id", metavar="[ID]", required=False)
@click.option("--all", "everything", is_flag=True, help="Requeue every dead task.")
@click.option("--type", "task_type", metavar="TYPE", help="Requeue the dead tasks of this type.")
@client_options
def dlq_requeue(
    task_id: str | None,
    everything: bool,
    task_type: str | None,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Give dead tasks a fresh set of attempts: one by ID, all of a --type, or --all."""
    if sum((task_id is not None, everything, task_type is not None)) != 1:
        fail("name what to requeue: an ID, --type TYPE or --all (one of them)")
    s = Session.start(config_path, flags, json_mode)
    if task_id is not None:
        s.call(lambda client: client.requeue(task_id))
        if json_mode:
            s.out.json({"requeued": 1, "id": task_id})
        else:
            s.out.line(f"requeued {task_id}")
        return
    n = s.call(lambda client: client.requeue_all(task_type))
    if json_mode:
        s.out.json({"requeued": n})
    else:
        s.out.line(f"requeued {_plural(n, task_type)}")


@dlq.command("purge")
@click.option(
    "--type", "task_type", metavar="TYPE", help="Delete only the dead tasks of this type."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@client_options
def dlq_purge(
    task_type: str | None, yes: bool, config_path: str | None, json_mode: bool, **flags: Any
) -> None:
    """Delete dead tasks for good (all of them, or those of --type).

    Asks first on a terminal. Without one (a script, a pipe) it needs --yes: a purge that a
    missing prompt silently confirmed could not be undone.
    """
    s = Session.start(config_path, flags, json_mode)

    async def dead_count(client: Operator) -> int:
        stats = await client.stats()
        if task_type is None:
            return stats.by_state[TaskState.DEAD]
        return stats.by_state_and_type.get((TaskState.DEAD, task_type), 0)

    n = s.call(dead_count)
    if n and not yes:
        plan = _plural(n, task_type)
        confirm(
            f"purge would delete {plan}", f"Delete {plan}?", "purge cancelled; nothing was deleted"
        )
    purged = s.call(lambda client: client.purge_dead(task_type)) if n else 0
    if json_mode:
        s.out.json({"purged": purged})
    else:
        s.out.line(f"purged {_plural(purged, task_type)}")
