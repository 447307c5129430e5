"""What ``taskqueue policy show`` and ``taskqueue queues`` show of the queue policy and of the
task types no live worker serves, decided without I/O."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from taskqueue.broker import PolicyView, QueueReport
from taskqueue.broker.policy import GLOBAL_SETTINGS, REDIS_NAMES, TYPE_SETTINGS
from taskqueue.cli.views import Listing, span
from taskqueue.config import parse_duration

SETTINGS = tuple(REDIS_NAMES)
_SECONDS = frozenset({"timeout", "idempotency_window"})


def setting_text(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in _SECONDS:
        return span(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def policy_listing(view: PolicyView, task_type: str | None = None) -> Listing:
    """One row per setting and scope: its live and config values, and what applies.

    ``task_type``: that type's scope only; None: the global scope and every type that has a
    policy of its own."""
    scopes: list[str | None] = [task_type] if task_type is not None else [None, *view.task_types]
    rows: list[tuple[str | Text, ...]] = []
    for scope in scopes:
        live, config, effective = (
            view.layer("live", scope),
            view.layer("config", scope),
            view.effective(scope),
        )
        for name in SETTINGS:
            if name in (GLOBAL_SETTINGS if scope is not None else TYPE_SETTINGS):
                continue  # a setting of the other scope only
            own = getattr(live, name), getattr(config, name)
            if scope is not None and task_type is None and own == (None, None):
                continue  # a type's row only where it differs from the global policy
            rows.append(
                (
                    scope or "*",
                    name,
                    setting_text(name, own[0]),
                    setting_text(name, own[1]),
                    setting_text(name, getattr(effective, name)),
                )
            )
    return Listing(
        ("TYPE", "SETTING", "LIVE", "CONFIG", "APPLIES"),
        rows,
        title="queue policy (* = every type; live wins over config until unset)",
    )


def unserved_listing(report: QueueReport) -> Listing:
    """Task types with live tasks that no live worker serves: they wait until one starts."""
    pending = report.stats.pending_by_type
    return Listing(
        ("TYPE", "PENDING", "WORKER"),
        [(t, str(pending.get(t, 0)), Text("none", style="bold red")) for t in report.unserved],
        title="task types no live worker serves",
        empty="every type with tasks has a live worker",
        numeric=frozenset({1}),
    )


def parse_setting(name: str, text: str) -> Any:
    """The value of policy setting ``name`` given as ``text`` on the command line (durations
    as the config file takes them, ``true``/``false``, a priority's name)."""
    if name not in REDIS_NAMES:
        raise ValueError(f"unknown policy setting {name!r}; expected one of {', '.join(SETTINGS)}")
    if name in _SECONDS:
        return parse_duration(text)
    if name in ("refuse_unserved", "paused"):
        if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError(f"{name} is true or false, not {text!r}")
        return text.lower() in ("true", "yes", "1")
    if name in ("priority", "rate_limit", "group_rate_limit"):
        return text  # checked with the rest of the policy
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} is a whole number, not {text!r}") from None
