"""``taskqueue policy show|set|unset``: the queue policy every submitter obeys, read and set
live in Redis (through :class:`~taskqueue.client.Client`, so no API server is needed), or
through the API with ``taskqueue --api``.

A value set here wins over the daemons' configuration, across their restarts, until it is
unset; then the configuration's applies again (see :mod:`taskqueue.broker.policy`).
"""

from __future__ import annotations

from typing import Any

import click

from taskqueue.broker import PolicyView
from taskqueue.cli.common import Session, client_options, fail
from taskqueue.cli.policy_views import parse_setting, policy_listing
from taskqueue.errors import InvalidTaskError
from taskqueue.models import Policy, validated
from taskqueue.operating import Operator
from taskqueue.wire import policy_json, policy_scope_json

TYPE_OPTION = click.option(
    "--type", "task_type", metavar="TYPE", help="One task type's policy (default: every type's)."
)


@click.group("policy")
def policy_group() -> None:
    """Show and set the queue policy (depth limits, defaults, refuse_unserved)."""


@policy_group.command()
@TYPE_OPTION
@client_options
def show(task_type: str | None, config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Show the policy: each setting's live and config values, and what applies."""
    s = Session.start(config_path, flags, json_mode)
    view = s.call(lambda client: client.policy())
    _done(s, view, task_type)


@policy_group.command("set")
@click.argument("settings", nargs=-1, required=True, metavar="NAME=VALUE...")
@TYPE_OPTION
@client_options
def set_(
    settings: tuple[str, ...],
    task_type: str | None,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Set policy settings live, e.g. ``max_queue_depth=100 timeout=30s``.

    \b
    Settings: max_queue_depth (0: no limit), max_retries, timeout, priority,
    idempotency_window, refuse_unserved (true/false), unique (true/false), max_snoozes,
    max_task_types (global only; 0: no limit); per type only: rate_limit (100/s,
    1000/min, 5/10s), rate_burst, concurrency, group_concurrency and group_rate_limit
    (per group of the type), paused (true/false; see taskqueue pause).
    """
    values: dict[str, Any] = {}
    for item in settings:
        name, eq, text = item.partition("=")
        if not eq:
            fail(f"{item!r}: give NAME=VALUE")
        try:
            values[name] = parse_setting(name, text)
        except ValueError as exc:
            fail(str(exc))
    try:
        validated(values, Policy)
    except InvalidTaskError as exc:
        fail(str(exc))  # exit 2, naming the setting, before anything is sent
    s = Session.start(config_path, flags, json_mode)

    async def apply(client: Operator) -> PolicyView:
        await client.set_policy(task_type, **values)
        return await client.policy()

    view = s.call(apply)
    _done(s, view, task_type)


@policy_group.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@TYPE_OPTION
@client_options
def unset(
    names: tuple[str, ...],
    task_type: str | None,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Unset live policy settings: the configuration's (or the default) applies again."""
    s = Session.start(config_path, flags, json_mode)

    async def apply(client: Operator) -> PolicyView:
        await client.unset_policy(*names, task_type=task_type)
        return await client.policy()

    _done(s, s.call(apply), task_type)


def _done(s: Session, view: PolicyView, task_type: str | None) -> None:
    if s.out.json_mode:
        s.out.json(policy_json(view) if task_type is None else policy_scope_json(view, task_type))
    else:
        s.out.show(policy_listing(view, task_type))
