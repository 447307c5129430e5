"""What a submission may say, checked before anything reaches Redis.

The constraints are the model's (:class:`~taskqueue.models.Submission`); what a Struct cannot
say is checked here: the payload's encoded size, ``delay`` and ``eta`` excluding each other
(and ``expires_in`` and ``expires_at``), an ``eta`` within reach of *now*, a deadline after
the task's start, the headers' size in all, and a dependency by index naming an earlier task of
the batch.
:func:`task_fields` turns one submission into the sixteen fields enqueue.lua takes, or
raises :class:`~taskqueue.InvalidTaskError` naming the field.
"""

from __future__ import annotations

import math
from datetime import datetime

import msgspec

from taskqueue import _json
from taskqueue.broker.model import BrokerSettings
from taskqueue.errors import InvalidTaskError, PayloadTooLargeError
from taskqueue.models import (
    EXCLUSIVE_DEADLINE_FIELDS,
    EXCLUSIVE_SUBMISSION_FIELDS,
    MAX_DELAY,
    MAX_HEADERS_BYTES,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_RETRIES_LIMIT,
    MAX_TIMEOUT,
    MAX_TYPE_LENGTH,
    TYPE_RULE,
    Debounce,
    DependencyFailure,
    MaxRetries,
    Submission,
    TaskType,
    Timeout,
    validated,
)

__all__ = [
    "MAX_DELAY",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_RETRIES_LIMIT",
    "MAX_TIMEOUT",
    "MAX_TYPE_LENGTH",
    "task_fields",
    "task_type_problem",
    "valid_max_retries",
    "valid_timeout",
]

_MAX_DELAY_MS = MAX_DELAY * 1000


def task_type_problem(task_type: object) -> str | None:
    """What is wrong with ``task_type`` as a task type name, or None if nothing is."""
    if not isinstance(task_type, str) or not task_type:
        return "type must be a non-empty string"
    if not _fits(task_type, TaskType):
        return f"invalid task type {task_type!r}: {TYPE_RULE}"
    return None


def valid_max_retries(value: object) -> bool:
    return _fits(value, MaxRetries)


def valid_timeout(value: object) -> bool:
    return _fits(value, Timeout)


def _fits(value: object, kind: object) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


def task_fields(
    settings: BrokerSettings, s: Submission, task_id: str, now: int, position: int = 0
) -> list[str | int]:
    """The 17 enqueue.lua fields of one submission, the ``position``-th of its batch, validated."""
    # A Struct built in Python has not been checked yet (one decoded from JSON has, but it
    # costs well under a microsecond to be sure).
    s = validated(msgspec.structs.asdict(s), Submission)
    try:
        payload = _json.dumps(s.payload)
    except TypeError as exc:
        raise InvalidTaskError(f"payload is {exc}", field="payload") from None
    if len(payload) > settings.max_payload_bytes:
        raise PayloadTooLargeError(
            f"payload is {len(payload)} bytes of JSON, over the limit of "
            f"{settings.max_payload_bytes}",
            field="payload",
        )
    ready_ms = _ready_ms(s, now) if s.debounce is None else _debounced_ready_ms(s, now)
    # Unset priority, max_retries and timeout go to Redis as '': enqueue.lua fills them
    # from the task type's defaults (registered by its workers), else the broker's.
    return [
        task_id,
        s.type,
        "" if s.priority is None else str(s.priority),  # a Priority, once validated
        payload,
        "" if s.max_retries is None else s.max_retries,
        "" if s.timeout is None else math.ceil(s.timeout * 1000),
        ready_ms,
        s.idempotency_key or "",
        _dependencies(s, position),
        "" if s.unique is None else int(s.unique),
        "" if s.expires_in is None and s.expires_at is None else _expires_ms(s, now, ready_ms),
        _headers(s.headers),
        *_debounce(s.debounce),
        s.group or "",
    ]


#: What a debounced submission may not say as well: each decides the task's start or its
#: identity in a way of its own.
_NOT_WITH_DEBOUNCE = ("delay", "eta", "idempotency_key", "unique", "depends_on")


def _debounced_ready_ms(s: Submission, now: int) -> int:
    """A debounced task starts a window after its submission (enqueue.lua moves it on as
    more join it)."""
    assert s.debounce is not None
    for name in _NOT_WITH_DEBOUNCE:
        if getattr(s, name) is not None:
            raise InvalidTaskError(f"debounce cannot be combined with {name}", field="debounce")
    max_wait = s.debounce.max_wait
    if max_wait is not None and max_wait < s.debounce.window:
        raise InvalidTaskError(
            f"debounce.max_wait ({max_wait:g}s) must be at least its window "
            f"({s.debounce.window:g}s)",
            field="debounce.max_wait",
        )
    return now + math.ceil(s.debounce.window * 1000)


def _debounce(debounce: Debounce | None) -> tuple[str, int | str, int | str, str]:
    """enqueue.lua's debounce fields: key, window (ms), max wait (ms, '' for none), keep."""
    if debounce is None:
        return "", "", "", ""
    max_wait = "" if debounce.max_wait is None else math.ceil(debounce.max_wait * 1000)
    return debounce.key, math.ceil(debounce.window * 1000), max_wait, debounce.keep


def _headers(headers: dict[str, str] | None) -> str:
    """The headers as enqueue.lua stores them: JSON text, '' for none."""
    if not headers:
        return ""
    text = _json.dumps(headers)
    if len(text) > MAX_HEADERS_BYTES:
        raise InvalidTaskError(
            f"headers are {len(text)} bytes of JSON, over the limit of {MAX_HEADERS_BYTES}",
            field="headers",
        )
    return text


def _dependencies(s: Submission, position: int) -> str:
    """enqueue.lua's dependencies field: '' or "<cancel|run> <dep>,<dep>...", an index of the
    batch written as '#<index>'. An index must name an earlier task, so a batch is acyclic."""
    if not s.depends_on:
        if s.on_dependency_failure is not None:
            raise InvalidTaskError(
                "on_dependency_failure needs depends_on", field="on_dependency_failure"
            )
        return ""
    deps = []
    for n, dep in enumerate(s.depends_on):
        if isinstance(dep, int):
            if dep >= position:
                raise InvalidTaskError(
                    f"index {dep} does not name an earlier task of the batch (this is task"
                    f" {position}); a task may depend only on those before it",
                    field=f"depends_on.{n}",
                )
            deps.append(f"#{dep}")
        elif not dep or any(c in ", #" or not c.isprintable() for c in dep):
            raise InvalidTaskError(f"{dep!r} is not a task id", field=f"depends_on.{n}")
        else:
            deps.append(dep)
    return f"{s.on_dependency_failure or DependencyFailure.CANCEL} {','.join(deps)}"


def _ready_ms(s: Submission, now: int) -> int:
    """When the task becomes ready to run: now, or after its delay, or at its eta."""
    if all(getattr(s, name) is not None for name in EXCLUSIVE_SUBMISSION_FIELDS):
        either = " or ".join(EXCLUSIVE_SUBMISSION_FIELDS)
        raise InvalidTaskError(
            f"give either {either}, not both", field=EXCLUSIVE_SUBMISSION_FIELDS[0]
        )
    if s.delay is not None:
        return now + math.ceil(s.delay * 1000)
    if s.eta is None:
        return now
    seconds = s.eta.timestamp() if isinstance(s.eta, datetime) else s.eta
    ready_ms = math.ceil(seconds * 1000)
    # The same bound as delay's: Lua would store a far-off time as "1e+23".
    if ready_ms - now >= _MAX_DELAY_MS:
        raise InvalidTaskError(
            f"eta must be less than 10 years from now, not {s.eta!r}", field="eta"
        )
    return ready_ms


def _expires_ms(s: Submission, now: int, ready_ms: int) -> int:
    """The task's deadline: after now, and after it becomes ready (else it could never run)."""
    if s.expires_in is not None and s.expires_at is not None:
        either = " or ".join(EXCLUSIVE_DEADLINE_FIELDS)
        raise InvalidTaskError(
            f"give either {either}, not both", field=EXCLUSIVE_DEADLINE_FIELDS[0]
        )
    if s.expires_in is not None:
        field, expires_ms = "expires_in", now + math.ceil(s.expires_in * 1000)
    else:
        assert s.expires_at is not None
        at = s.expires_at
        seconds = at.timestamp() if isinstance(at, datetime) else at
        field, expires_ms = "expires_at", math.ceil(seconds * 1000)
        if expires_ms <= now:
            raise InvalidTaskError(f"expires_at {at!r} has passed already", field=field)
        if expires_ms - now >= _MAX_DELAY_MS:
            raise InvalidTaskError(
                f"expires_at must be less than 10 years from now, not {at!r}", field=field
            )
    if expires_ms <= ready_ms:
        start = "eta" if s.eta is not None else "delay"
        raise InvalidTaskError(
            f"the deadline ({field}) must come after the task's start ({start}): it could "
            "never run",
            field=field,
        )
    return expires_ms
