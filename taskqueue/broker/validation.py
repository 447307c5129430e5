"""What a submission may say, checked before anything reaches Redis.

:func:`task_fields` turns one :class:`~taskqueue.broker.Submission` into the eight fields
enqueue.lua takes, or raises :class:`~taskqueue.InvalidTaskError` naming the field; the limits
here are also what the API's schema and the plugin registry check against.
"""

from __future__ import annotations

import math
from datetime import datetime

from taskqueue import _json
from taskqueue.broker.model import BrokerSettings, Submission
from taskqueue.errors import InvalidTaskError, PayloadTooLargeError
from taskqueue.models import Priority

MAX_TYPE_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_RETRIES_LIMIT = 1000
MAX_TIMEOUT = 7 * 24 * 3600  # seconds
#: How far ahead ``delay`` and ``eta`` may reach, in seconds (Lua would print a farther time
#: in exponent notation).
MAX_DELAY = 10 * 365 * 86400
#: Characters a task type may not contain: they separate fields in keys and messages.
FORBIDDEN_IN_TYPE = " \t\r\n{}:|,@"
_FORBIDDEN = frozenset(FORBIDDEN_IN_TYPE)
_MAX_DELAY_MS = MAX_DELAY * 1000


def task_type_problem(task_type: object) -> str | None:
    """What is wrong with ``task_type`` as a task type name, or None if nothing is."""
    if not isinstance(task_type, str) or not task_type:
        return "type must be a non-empty string"
    if len(task_type) > MAX_TYPE_LENGTH or not _FORBIDDEN.isdisjoint(task_type):
        return (
            f"invalid task type {task_type!r}: at most {MAX_TYPE_LENGTH} characters, "
            "no spaces, braces, colons, commas, '|' or '@'"
        )
    return None


def valid_max_retries(value: object) -> bool:
    return _is_int(value) and 0 <= value <= MAX_RETRIES_LIMIT  # type: ignore[operator]


def valid_timeout(value: object) -> bool:
    return _is_number(value) and 0 < value <= MAX_TIMEOUT  # type: ignore[operator]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def task_fields(settings: BrokerSettings, s: Submission, task_id: str, now: int) -> list[str | int]:
    """The 8 enqueue.lua fields of one submission, validated."""
    task_type = s.type
    problem = task_type_problem(task_type)
    if problem is not None:
        raise InvalidTaskError(problem, field="type")
    try:
        priority = "" if s.priority is None else Priority.parse(s.priority).value
    except ValueError as exc:
        raise InvalidTaskError(str(exc), field="priority") from None
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
    # Unset priority, max_retries and timeout go to Redis as '': enqueue.lua fills them
    # from the task type's defaults (registered by its workers), else the broker's.
    max_retries = s.max_retries
    if max_retries is not None and not valid_max_retries(max_retries):
        raise InvalidTaskError(
            f"max_retries must be a whole number from 0 to 1000, not {max_retries!r}",
            field="max_retries",
        )
    timeout = s.timeout
    if timeout is not None and not valid_timeout(timeout):
        raise InvalidTaskError(
            f"timeout must be a number of seconds above 0 and at most a week, not {timeout!r}",
            field="timeout",
        )
    ready_ms = _ready_ms(s, now)
    key = s.idempotency_key
    if key is not None and (
        not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH
    ):
        raise InvalidTaskError(
            f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
            field="idempotency_key",
        )
    return [
        task_id,
        task_type,
        priority,
        payload,
        "" if max_retries is None else max_retries,
        "" if timeout is None else math.ceil(timeout * 1000),
        ready_ms,
        key or "",
    ]


def _ready_ms(s: Submission, now: int) -> int:
    """When the task becomes ready to run: now, or after its delay, or at its eta."""
    if s.delay is not None and s.eta is not None:
        raise InvalidTaskError("give either delay or eta, not both", field="delay")
    if s.delay is not None:
        if not _is_number(s.delay) or not 0 <= s.delay * 1000 < _MAX_DELAY_MS:
            raise InvalidTaskError(
                f"delay must be a number of seconds from 0 up, not {s.delay!r}", field="delay"
            )
        return now + math.ceil(s.delay * 1000)
    if s.eta is None:
        return now
    if isinstance(s.eta, datetime):
        if s.eta.tzinfo is None:
            raise InvalidTaskError("eta must carry a time zone", field="eta")
        ready_ms = math.ceil(s.eta.timestamp() * 1000)
    elif _is_number(s.eta) and math.isfinite(s.eta):
        ready_ms = math.ceil(s.eta * 1000)
    else:
        raise InvalidTaskError(
            f"eta must be a datetime or epoch seconds, not {s.eta!r}", field="eta"
        )
    # The same bound as delay's: Lua would store a far-off time as "1e+23".
    if ready_ms - now >= _MAX_DELAY_MS:
        raise InvalidTaskError(
            f"eta must be less than 10 years from now, not {s.eta!r}", field="eta"
        )
    return ready_ms
