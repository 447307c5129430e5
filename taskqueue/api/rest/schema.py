"""The JSON Schemas of the REST API, and the validator that enforces them.

One definition serves twice: :func:`validate` checks every request body and query parameter
against these schemas, and :mod:`taskqueue.api.rest.openapi` publishes the very same dicts in
the OpenAPI document. So the document cannot promise what the server does not check, nor the
server refuse what the document allows (the broker's own checks, which these mirror, remain the
last word: a value valid here but refused there still gets a 422 naming the field).

The validator understands the subset of JSON Schema (2020-12) these schemas use: ``type``
(one or a list), ``enum``, ``minimum``/``maximum`` and their exclusive forms, ``minLength``/
``maxLength``, ``pattern`` (anchored with ``^…$``), ``format: date-time``, ``properties``
with ``required`` and ``additionalProperties: false``, ``not: {required: [a, b]}`` (fields
that exclude each other), ``items`` with ``minItems``/``maxItems``, and ``$ref`` to the
components below. Every error names the offending field as a dotted path (``tasks.3.priority``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any, Final

from taskqueue.api.errors import ApiError
from taskqueue.broker.validation import (
    FORBIDDEN_IN_TYPE,
    MAX_DELAY,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_RETRIES_LIMIT,
    MAX_TIMEOUT,
    MAX_TYPE_LENGTH,
)
from taskqueue.models import Priority, TaskState

Schema = dict[str, Any]

#: Submissions in one batch request.
MAX_BATCH: Final = 1000
#: Page sizes of the listings.
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
#: ``delay`` and ``eta`` may reach at most this far ahead (the broker's bound).
MAX_DELAY_SECONDS: Final = MAX_DELAY
MAX_TIMEOUT_SECONDS: Final = MAX_TIMEOUT
#: Epoch seconds beyond which no ``eta`` can be within MAX_DELAY_SECONDS of now (year 2286).
MAX_EPOCH_SECONDS: Final = 9_999_999_999


#: How the control characters among FORBIDDEN_IN_TYPE are written in a regex character class
#: (the others stand for themselves there).
_CHAR_CLASS = {"\t": r"\t", "\r": r"\r", "\n": r"\n"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (OpenAPI 3.1 spells it as a list of types)."""
    result = dict(schema)
    kind = result["type"]
    result["type"] = [*(kind if isinstance(kind, list) else [kind]), "null"]
    return result


_MS = {"type": "integer", "minimum": 0, "description": "Unix epoch milliseconds."}
_ISO = {"type": "string", "format": "date-time", "description": "The same time, RFC 3339 (UTC)."}
_ANY = {"description": "Any JSON value."}

TASK_TYPE: Final[Schema] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_TYPE_LENGTH,
    "pattern": "^[^" + "".join(_CHAR_CLASS.get(c, c) for c in FORBIDDEN_IN_TYPE) + "]+$",
    "description": "Names the processor that runs the task, e.g. `email.send`.",
    "examples": ["echo"],
}
PRIORITY: Final[Schema] = {"type": "string", "enum": [p.value for p in Priority]}
STATE: Final[Schema] = {"type": "string", "enum": [s.value for s in TaskState]}
IDEMPOTENCY_KEY: Final[Schema] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
}

SUBMISSION: Final[Schema] = {
    "type": "object",
    "description": "A task to submit. An unset priority, max_retries or timeout takes the "
    "task type's default (registered by its processor's plugin), else the server's.",
    "additionalProperties": False,
    "required": ["type"],
    "not": {"required": ["delay", "eta"]},
    "properties": {
        "type": TASK_TYPE,
        "payload": {
            **_ANY,
            "description": "The processor's input: any JSON value (integers within 64 bits), "
            "at most `task.max_payload_bytes` once encoded, else 413.",
        },
        "priority": PRIORITY,
        "max_retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES_LIMIT},
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_TIMEOUT_SECONDS,
            "description": "Seconds one attempt may run.",
        },
        "delay": {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": MAX_DELAY_SECONDS,
            "description": "Start no sooner than this many seconds from now. Not with `eta`.",
        },
        "eta": {
            "type": ["number", "string"],
            "format": "date-time",
            "minimum": 0,
            "maximum": MAX_EPOCH_SECONDS,
            "description": "Start no sooner than this time: RFC 3339 with an offset, or Unix "
            "epoch seconds; less than 10 years from now. Not with `delay`.",
        },
        "idempotency_key": {
            **IDEMPOTENCY_KEY,
            "description": "A second submission with the same key within "
            "`task.idempotency_window` returns the first task instead. The `Idempotency-Key` "
            "header is the same.",
        },
    },
}

BATCH: Final[Schema] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tasks"],
    "properties": {
        "tasks": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": ref("Submission")}
    },
}

TASK: Final[Schema] = {
    "type": "object",
    "description": "A task and everything known about it. Times are Unix epoch milliseconds "
    "(`*_ms`), each repeated as an RFC 3339 string (`*_at`).",
    "required": [
        "id",
        "type",
        "priority",
        "state",
        "payload",
        "attempt",
        "max_retries",
        "attempts_left",
        "timeout_ms",
        "created_ms",
        "created_at",
        "ready_ms",
        "ready_at",
        "started_ms",
        "started_at",
        "finished_ms",
        "finished_at",
        "result",
        "error",
        "traceback",
        "idempotency_key",
        "worker_id",
        "cancel_requested",
        "progress",
    ],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "description": "A UUIDv7: ids sort by creation time."},
        "type": {"type": "string"},
        "priority": PRIORITY,
        "state": STATE,
        "payload": _ANY,
        "attempt": {
            "type": "integer",
            "minimum": 0,
            "description": "Times the task was claimed; 0 before its first run.",
        },
        "max_retries": {"type": "integer", "minimum": 0},
        "attempts_left": {"type": "integer", "minimum": 0},
        "timeout_ms": {"type": "integer", "minimum": 0},
        "created_ms": _MS,
        "created_at": _ISO,
        "ready_ms": {**_MS, "description": "When it became (or becomes) ready to run."},
        "ready_at": _ISO,
        "started_ms": nullable(_MS),
        "started_at": nullable(_ISO),
        "finished_ms": nullable(_MS),
        "finished_at": nullable(_ISO),
        "result": {**_ANY, "description": "What the processor returned (null until then)."},
        "error": {"type": ["string", "null"]},
        "traceback": {"type": ["string", "null"]},
        "idempotency_key": {"type": ["string", "null"]},
        "worker_id": {"type": ["string", "null"]},
        "cancel_requested": {"type": "boolean"},
        "progress": {**_ANY, "description": "The last progress a running task reported."},
    },
}

TASK_PAGE: Final[Schema] = {
    "type": "object",
    "required": ["tasks", "next_cursor"],
    "additionalProperties": False,
    "properties": {
        "tasks": {"type": "array", "items": ref("Task")},
        "next_cursor": {
            "type": ["string", "null"],
            "description": "Pass as `cursor` for the next page; null on the last page.",
        },
    },
}

SUBMITTED: Final[Schema] = {
    "type": "object",
    "required": ["id", "state", "created"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "state": STATE,
        "created": {
            "type": "boolean",
            "description": "False when the idempotency key matched an earlier task, whose id "
            "this is; nothing was written then.",
        },
    },
}

BATCH_RESULT: Final[Schema] = {
    "type": "object",
    "required": ["tasks"],
    "additionalProperties": False,
    "properties": {"tasks": {"type": "array", "items": ref("Submitted")}},
}

_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

WORKER: Final[Schema] = {
    "type": "object",
    "required": [
        "id",
        "host",
        "pid",
        "task_types",
        "concurrency",
        "in_flight",
        "processed",
        "failed",
        "started_ms",
        "started_at",
        "last_heartbeat_ms",
        "last_heartbeat_at",
    ],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "host": {"type": "string"},
        "pid": {"type": "integer"},
        "task_types": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Each task type it runs, with the plugin and version providing it.",
        },
        "concurrency": {"type": "integer", "minimum": 0},
        "in_flight": {"type": "integer", "minimum": 0},
        "processed": {"type": "integer", "minimum": 0},
        "failed": {"type": "integer", "minimum": 0},
        "started_ms": _MS,
        "started_at": _ISO,
        "last_heartbeat_ms": _MS,
        "last_heartbeat_at": _ISO,
    },
}

WORKERS: Final[Schema] = {
    "type": "object",
    "required": ["workers"],
    "additionalProperties": False,
    "properties": {"workers": {"type": "array", "items": ref("Worker")}},
}

QUEUES: Final[Schema] = {
    "type": "object",
    "required": ["by_state", "pending_by_priority", "by_type", "totals"],
    "additionalProperties": False,
    "properties": {
        "by_state": {**_COUNTS, "description": "Tasks in each state."},
        "pending_by_priority": {**_COUNTS, "description": "Ready tasks at each priority."},
        "by_type": {
            "type": "object",
            "additionalProperties": _COUNTS,
            "description": "Per task type, its tasks in each live state (pending, scheduled, "
            "active, dead).",
        },
        "totals": {
            **_COUNTS,
            "description": "Lifetime counts: submitted, succeeded, failed, retried, dead, "
            "cancelled, reaped.",
        },
    },
}


def _count(name: str, description: str) -> Schema:
    return {
        "type": "object",
        "required": [name],
        "additionalProperties": False,
        "properties": {name: {"type": "integer", "minimum": 0, "description": description}},
    }


PROBLEM: Final[Schema] = {
    "type": "object",
    "description": "An error, as RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What exactly is wrong."},
        "field": {
            "type": "string",
            "description": "The request field at fault (dotted path), for 413 and 422.",
        },
    },
}

HEALTH: Final[Schema] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
}

READINESS: Final[Schema] = {
    "type": "object",
    "required": ["ready", "redis", "services", "draining"],
    "properties": {
        "ready": {"type": "boolean"},
        "redis": {"type": "string", "description": "`ok`, or why Redis is not reachable."},
        "services": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "draining": {"type": "boolean"},
    },
}

TASK_EVENT: Final[Schema] = {
    "type": "object",
    "description": "One state change, sent as the `data:` of a Server-Sent Event whose "
    "`event:` is `task`.",
    "required": ["task_id", "type", "state"],
    "properties": {
        "task_id": {"type": "string"},
        "type": {"type": "string"},
        "state": {
            "type": "string",
            "enum": [*(s.value for s in TaskState), "progress"],
        },
    },
}

#: Every named schema, published under ``components.schemas``.
COMPONENTS: Final[Mapping[str, Schema]] = {
    "Submission": SUBMISSION,
    "SubmissionBatch": BATCH,
    "Submitted": SUBMITTED,
    "BatchResult": BATCH_RESULT,
    "Task": TASK,
    "TaskPage": TASK_PAGE,
    "Worker": WORKER,
    "WorkerList": WORKERS,
    "QueueStats": QUEUES,
    "Requeued": _count("requeued", "Dead-lettered tasks queued again."),
    "Purged": _count("purged", "Dead-lettered tasks deleted."),
    "Problem": PROBLEM,
    "Health": HEALTH,
    "Readiness": READINESS,
    "TaskEvent": TASK_EVENT,
}


# --------------------------------------------------------------------------------------------
# Validation


def invalid(field: str | None, detail: str) -> ApiError:
    """The 422 for one field (``field`` None: the body as a whole)."""
    where = f"{field}: " if field else ""
    return ApiError(422, "INVALID_ARGUMENT", "Invalid field", f"{where}{detail}", field)


def validate(schema: Schema, value: Any, field: str = "") -> Any:
    """``value`` if it matches ``schema``, with integral floats where integers are expected
    turned into ints; else an :class:`ApiError` 422 naming the first field at fault."""
    if "$ref" in schema:
        return validate(COMPONENTS[schema["$ref"].rsplit("/", 1)[1]], value, field)
    kinds = schema.get("type")
    if kinds is not None:
        value = _check_type(kinds if isinstance(kinds, list) else [kinds], value, field)
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(map(str, schema["enum"]))
        raise invalid(field, f"{_show(value)} is not one of {choices}")
    if isinstance(value, str):
        _check_string(schema, value, field)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, field)
    elif isinstance(value, list):
        return _check_array(schema, value, field)
    elif isinstance(value, dict):
        return _check_object(schema, value, field)
    return value


_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _check_type(kinds: list[str], value: Any, field: str) -> Any:
    for kind in kinds:
        if kind == "integer" and _is_number(value) and float(value).is_integer():
            return int(value)
        if kind == "number" and _is_number(value):
            return value
        python = _JSON_TYPES.get(kind)
        if python is not None and isinstance(value, python):
            return value
    wanted = " or ".join(("an " if k[0] in "aeiou" else "a ") + k for k in kinds)
    raise invalid(field, f"expected {wanted}, not {_show(value)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_string(schema: Schema, value: str, field: str) -> None:
    if len(value) < schema.get("minLength", 0):
        raise invalid(field, f"must be at least {schema['minLength']} character(s) long")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise invalid(field, f"must be at most {schema['maxLength']} characters long")
    if "pattern" in schema and not _pattern(schema["pattern"]).fullmatch(value):
        raise invalid(field, f"{_show(value)} does not match {schema['pattern']}")
    if schema.get("format") == "date-time" and parse_datetime(value) is None:
        raise invalid(field, f"{_show(value)} is not an RFC 3339 date-time with an offset")


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


def _check_number(schema: Schema, value: float, field: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise invalid(field, f"must be at least {schema['minimum']}, not {value}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise invalid(field, f"must be above {schema['exclusiveMinimum']}, not {value}")
    if "maximum" in schema and value > schema["maximum"]:
        raise invalid(field, f"must be at most {schema['maximum']}, not {value}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        raise invalid(field, f"must be below {schema['exclusiveMaximum']}, not {value}")


def _check_array(schema: Schema, value: list[Any], field: str) -> list[Any]:
    if len(value) < schema.get("minItems", 0):
        raise invalid(field, f"must hold at least {schema['minItems']} item(s)")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise invalid(field, f"must hold at most {schema['maxItems']} items, not {len(value)}")
    items = schema.get("items")
    if items is None:
        return value
    return [validate(items, item, _join(field, str(i))) for i, item in enumerate(value)]


def _check_object(schema: Schema, value: dict[str, Any], field: str) -> dict[str, Any]:
    properties: Mapping[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    if extra is False:
        for name in value:
            if name not in properties:
                known = ", ".join(properties)
                raise invalid(_join(field, name), f"unknown field; expected one of {known}")
    for name in schema.get("required", ()):
        if name not in value:
            raise invalid(_join(field, name), "this field is required")
    result = {}
    for name, item in value.items():
        sub = properties.get(name, extra if isinstance(extra, dict) else {})
        result[name] = validate(sub, item, _join(field, name))
    exclusive = schema.get("not", {}).get("required", ())
    if exclusive and all(name in value for name in exclusive):
        given = " or ".join(exclusive)
        raise invalid(_join(field, exclusive[0]), f"give either {given}, not both")
    return result


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_datetime(text: str) -> datetime | None:
    """An RFC 3339 date-time with a UTC offset, or None (naive times are ambiguous)."""
    if not 20 <= len(text) <= 40 or text[10] not in "Tt ":
        return None
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
