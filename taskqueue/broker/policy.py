"""Queue policy in Redis: the one definition of how a :class:`~taskqueue.models.Policy` is
stored, layered and resolved.

Two hashes hold it, one per *layer*: ``live`` (what operators set through the API or
``taskqueue policy set``) and ``config`` (what daemons write at start: the global settings from
their ``[task]`` section, each task type's from the plugin that provides it). A field is the
setting's Redis name for the global scope (``max_queue_depth``) or ``name|type`` for one task
type (``max_queue_depth|mail.send``); values are in the units enqueue.lua uses (milliseconds).

A submission's unset field resolves, first found wins: live[type], config[type], live[global],
config[global], then the submitter's built-in fallback (which only matters before any daemon
has written the config layer). A restart rewrites the config layer only, so a value set live
stays until it is unset; the config's value shows through again then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from taskqueue.models import Policy, Priority
from taskqueue.rates import decode_rate, encode_rate

Layer = Literal["live", "config"]

#: The settings enqueue.lua applies to a submission -> their names in the Redis hashes and in
#: enqueue.lua (the order is enqueue.lua's: ``POLICY_NAMES`` in the Lua prelude).
SUBMISSION_NAMES: Final[dict[str, str]] = {
    "max_queue_depth": "max_queue_depth",
    "max_retries": "max_retries",
    "timeout": "timeout_ms",
    "priority": "priority",
    "idempotency_window": "idempotency_window_ms",
    "refuse_unserved": "refuse_unserved",
    "max_task_types": "max_task_types",
    "unique": "unique",
}
#: The limits claim.lua applies -> their Redis names (``LIMIT_NAMES`` in the Lua prelude, in
#: this order). set_policy.lua folds each type's, live over config, into the ``limits`` hash
#: that claim.lua reads in one HMGET.
LIMIT_NAMES: Final[dict[str, str]] = {
    "rate_limit": "rate_limit",
    "rate_burst": "rate_burst",
    "concurrency": "concurrency",
    "paused": "paused",
    "group_concurrency": "group_concurrency",
    "group_rate_limit": "group_rate_limit",
}
#: The settings finish.lua reads, when an attempt's report needs them (see policy_setting in
#: _lib.lua): nothing to resolve per submission or per claim.
REPORT_NAMES: Final[dict[str, str]] = {"max_snoozes": "max_snoozes"}
#: Every policy field -> its Redis name.
REDIS_NAMES: Final[dict[str, str]] = {**SUBMISSION_NAMES, **LIMIT_NAMES, **REPORT_NAMES}
#: Settings of the global scope only: a task type's would mean nothing.
GLOBAL_SETTINGS: Final = ("max_task_types",)
#: Settings of a task type only: a fleet-wide limit is a limit on one type's tasks.
TYPE_SETTINGS: Final = tuple(LIMIT_NAMES)
_FIELDS_BY_REDIS_NAME = {redis: field for field, redis in REDIS_NAMES.items()}
#: Settings given in seconds, stored in milliseconds.
_SECONDS = frozenset({"timeout", "idempotency_window"})
#: The settings a task type's plugin may give (its processor's defaults).
PLUGIN_SETTINGS: Final = ("priority", "max_retries", "timeout")
#: The settings the config layer holds for a task type: its plugin's, and the limits of the
#: configuration file's ``[limits.<type>]`` tables.
TYPE_CONFIG_SETTINGS: Final = (*PLUGIN_SETTINGS, *TYPE_SETTINGS)


#: The settings that hold a rate (see taskqueue/rates.py).
_RATES = frozenset({"rate_limit", "group_rate_limit"})


def encode_value(field: str, value: Any) -> str:
    if field in _RATES:
        return encode_rate(value)
    if field in _SECONDS:
        return str(max(1, math.ceil(value * 1000)))  # SET PX refuses 0
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Priority):
        return value.value
    return str(value)


def decode_value(field: str, text: str) -> Any:
    if field in _SECONDS:
        return int(text) / 1000
    if field in ("refuse_unserved", "paused", "unique"):
        return text == "1"
    if field == "priority":
        return Priority(text)
    if field in _RATES:
        return decode_rate(text)
    return int(text)


def redis_field(name: str, task_type: str | None) -> str:
    """The hash field of setting ``name`` (its Redis name) in a scope (None: global)."""
    return name if task_type is None else f"{name}|{task_type}"


def writes(policy: Policy, task_type: str | None, *, replace: bool) -> list[str]:
    """Flat (field, value) pairs setting ``policy`` in one scope; an empty value deletes the
    field. ``replace``: every setting ``policy`` leaves unset is deleted; else left alone."""
    out: list[str] = []
    for field, name in REDIS_NAMES.items():
        value = getattr(policy, field)
        if value is not None:
            out += (redis_field(name, task_type), encode_value(field, value))
        elif replace:
            out += (redis_field(name, task_type), "")
    return out


def unsets(fields: Sequence[str], task_type: str | None) -> list[str]:
    """Flat pairs deleting ``fields`` (Policy field names) in one scope."""
    out: list[str] = []
    for field in fields:
        out += (redis_field(REDIS_NAMES[field], task_type), "")
    return out


def merged(*policies: Policy) -> Policy:
    """Each setting from the first of ``policies`` that sets it."""
    values: dict[str, Any] = {}
    for field in REDIS_NAMES:
        for policy in policies:
            value = getattr(policy, field)
            if value is not None:
                values[field] = value
                break
    return Policy(**values)


def _scopes(flat: Mapping[str, str]) -> dict[str | None, Policy]:
    """A layer's hash as a Policy per scope (None: global); unknown fields are ignored."""
    values: dict[str | None, dict[str, Any]] = {}
    for key, text in flat.items():
        name, _, task_type = key.partition("|")
        field = _FIELDS_BY_REDIS_NAME.get(name)
        if field is None:
            continue
        values.setdefault(task_type or None, {})[field] = decode_value(field, text)
    return {scope: Policy(**v) for scope, v in values.items()}


@attrs.frozen
class PolicyView:
    """Both layers as read from Redis, and the submitter's ``fallback`` below them."""

    live: dict[str | None, Policy]
    config: dict[str | None, Policy]
    fallback: Policy

    @classmethod
    def from_hashes(
        cls, live: Mapping[str, str], config: Mapping[str, str], fallback: Policy
    ) -> PolicyView:
        return cls(_scopes(live), _scopes(config), fallback)

    @property
    def task_types(self) -> list[str]:
        """The task types that have a policy of their own in either layer."""
        return sorted({t for t in (*self.live, *self.config) if t is not None})

    def layer(self, layer: Layer, task_type: str | None) -> Policy:
        return (self.live if layer == "live" else self.config).get(task_type, Policy())

    def effective(self, task_type: str | None) -> Policy:
        """What a submission of ``task_type`` (None: of a type with no policy) gets."""
        chain = [self.layer("live", None), self.layer("config", None), self.fallback]
        if task_type is not None:
            chain = [self.layer("live", task_type), self.layer("config", task_type), *chain]
        return merged(*chain)
