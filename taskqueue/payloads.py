"""Typed payloads: a task type registered with ``payload=SomeStruct`` (a :class:`msgspec.Struct`)
has its payload checked before the processor runs, so a processor only ever sees a valid one.

A payload that does not fit is refused for good (:class:`~taskqueue.errors.InvalidPayloadError`,
a :class:`~taskqueue.errors.PermanentError`): it would not fit on a retry either. The message
names the field as ``payload.<path>``, the way submitters wrote it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from taskqueue.errors import InvalidPayloadError
from taskqueue.models import describe

__all__ = ["decode_payload", "is_payload_type"]

P = TypeVar("P", bound=msgspec.Struct)


def is_payload_type(payload_type: object) -> bool:
    return isinstance(payload_type, type) and issubclass(payload_type, msgspec.Struct)


def decode_payload(payload_type: type[P], payload: Any) -> P:
    """``payload`` (JSON values, as a task stores them) as an instance of ``payload_type``.

    Raises :class:`InvalidPayloadError` naming the field: ``payload.url: Expected str, got
    int (5)``, ``payload.url: this field is required``, ``payload.retries: unknown field;
    expected one of ...``.
    """
    try:
        return msgspec.convert(payload, type=payload_type)
    except msgspec.ValidationError as exc:
        field, message = describe(str(exc), payload_type, payload)
        path = ".".join(part for part in ("payload", field) if part)
        raise InvalidPayloadError(f"{path}: {message}", field=field or None) from None
