"""A request's text and JSON as the model's types, or a 422 that names the field at fault.

Query, path and header parameters are converted from their text (``"25"`` to ``25``, a state's
name to the :class:`~taskqueue.models.TaskState`); a body is parsed as JSON, then converted to
its document type with every constraint checked. What the OpenAPI document says of each comes
from the same types, so the two agree.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from taskqueue import _json
from taskqueue.api.errors import ApiError
from taskqueue.api.rest.routing import TASK_ID_PATTERN, Param
from taskqueue.models import MAX_PAGE, invalid_field, validated

T = TypeVar("T")

NonEmpty = Annotated[str, Meta(min_length=1)]
PageSize = Annotated[int, Meta(ge=1, le=MAX_PAGE)]
TaskId = Annotated[
    str,
    Meta(
        pattern=f"^{TASK_ID_PATTERN}$",
        description="A UUIDv7, as the server gives it.",
        extra_json_schema={"format": "uuid"},
    ),
]


def parameter(param: Param, text: str) -> Any:
    """The value of ``param`` given as ``text``."""
    try:
        return msgspec.convert(text, param.kind, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid_field(exc, param.kind, text, prefix=param.name) from None


def body(kind: type[T], data: str | bytes) -> T:
    """The request body ``data`` as a ``kind`` document."""
    try:
        value = _json.loads(data)
    except _json.JSONDecodeError as exc:
        raise ApiError(
            400, "INVALID_ARGUMENT", "Malformed JSON", f"the body is not valid JSON: {exc}"
        ) from None
    return validated(value, kind)
