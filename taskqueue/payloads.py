"""Typed payloads: a task type registered with ``payload=SomeStruct`` (a :class:`msgspec.Struct`)
has its payload checked before the processor runs, so a processor only ever sees a valid one.

A payload that does not fit is refused for good (:class:`~taskqueue.errors.InvalidPayloadError`,
a :class:`~taskqueue.errors.PermanentError`): it would not fit on a retry either. The message
names the field as ``payload.<path>``, the way submitters wrote it.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from taskqueue.errors import InvalidPayloadError

__all__ = ["decode_payload", "is_payload_type"]

P = TypeVar("P", bound=msgspec.Struct)

# msgspec says where with a JSONPath suffix: "Expected `str`, got `int` - at `$.url`".
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
# A __post_init__ check names its field the same way: ValueError("url: scheme must be http").
_NAMED = re.compile(r"^(?P<name>[A-Za-z_]\w*): (?P<message>.+)$", re.DOTALL)


def is_payload_type(payload_type: object) -> bool:
    return isinstance(payload_type, type) and issubclass(payload_type, msgspec.Struct)


def decode_payload(payload_type: type[P], payload: Any) -> P:
    """``payload`` (JSON values, as a task stores them) as an instance of ``payload_type``.

    Raises :class:`InvalidPayloadError` naming the field: ``payload.url: Expected str, got
    int``, ``payload.url: required``, ``payload.retries: unknown field; expected one of ...``.
    """
    try:
        return msgspec.convert(payload, type=payload_type)
    except msgspec.ValidationError as exc:
        path, message = _describe(str(exc), payload_type)
        field = path.removeprefix("payload").removeprefix(".") or None
        raise InvalidPayloadError(f"{path}: {message}", field=field) from None


def _describe(error: str, payload_type: type[msgspec.Struct]) -> tuple[str, str]:
    """msgspec's error text as (``payload.<path>``, what is wrong), without its backticks."""
    match = _AT.match(error)
    assert match is not None  # the pattern matches any text
    message, path = match["message"], "payload" + (match["path"] or "")
    if missing := _MISSING.match(message):
        return f"{path}.{missing['name']}", "required"
    if unknown := _UNKNOWN.match(message):
        fields = ", ".join(payload_type.__struct_fields__) if path == "payload" else ""
        return f"{path}.{unknown['name']}", "unknown field" + (
            f"; expected one of {fields}" if fields else ""
        )
    if path == "payload" and (named := _NAMED.match(message)):
        return f"payload.{named['name']}", named["message"]
    return path, message.replace("`", "")
