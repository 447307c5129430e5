"""What a REST operation is: its path, who may call it, what it takes and what it answers.

Each route module declares its operations with :class:`RouteTable`; the app factory serves them
(checking auth, then converting the query, headers and body to their declared types before the
handler runs) and the OpenAPI document is generated from the same declarations: parameters and
bodies are typed with the model's types (:mod:`taskqueue.models`, :mod:`taskqueue.wire`), whose
JSON Schemas msgspec derives.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import msgspec

from taskqueue.api.rest.send import Response, StreamingResponse

if TYPE_CHECKING:
    from taskqueue.api.auth import Authenticator
    from taskqueue.api.context import ApiContext
    from taskqueue.api.events import EventHub

API_PREFIX = "/api/v1"

#: A task id as :mod:`taskqueue.ids` makes it: a UUIDv7 in lowercase hex.
TASK_ID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

#: What a path parameter's converter matches (a regular expression), by the name a
#: :class:`Param` gives. ``task_id`` matches task ids only, so a fixed path beside a templated
#: one is never read as an id: ``/tasks/batch`` is not the task "batch" (which GET, and the
#: ``Allow`` header of a 405, would otherwise offer), as OpenAPI's rule that fixed paths match
#: first also says.
CONVERTERS: Mapping[str, str] = {"default": "[^/]+", "task_id": TASK_ID_PATTERN}


class Access(enum.Enum):
    """Who may call an operation."""

    PUBLIC = "public"  # anyone (the OpenAPI document)
    HEALTH = "health"  # anyone, unless server.open_health_endpoints = false: then a read token
    READ = "read"  # any valid token
    WRITE = "write"  # an admin token


#: A JSON Schema, for what has no type of its own (the metrics' text, this document).
Schema = dict[str, Any]


@attrs.frozen
class Param:
    """A query, path or header parameter: its text is converted to ``kind``."""

    name: str
    #: A type msgspec converts the text to, e.g. ``Annotated[int, Meta(ge=1)]`` or an enum.
    kind: Any
    description: str
    required: bool = False
    #: The value when it is not given (documented, and passed to the handler).
    default: Any = None
    #: For a path parameter: the converter that matches it (see :data:`CONVERTERS`).
    converter: str = "default"
    #: A header that stands for the body field of the same name in snake case (the
    #: ``Idempotency-Key`` header, say); a body that sets both must agree.
    body_field: bool = False

    @property
    def field_name(self) -> str:
        return self.name.lower().replace("-", "_")


@attrs.frozen
class Reply:
    """One documented success response: ``body`` is its document's type, or a JSON Schema."""

    description: str
    body: Any = None
    media_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)  # name -> description


@attrs.frozen(kw_only=True)
class Operation:
    """One method on one path, as served and as documented."""

    method: str
    path: str  # OpenAPI template, e.g. /api/v1/tasks/{task_id}
    operation_id: str
    summary: str
    description: str = ""
    tag: str
    access: Access
    replies: Mapping[int, Reply]
    query: tuple[Param, ...] = ()
    path_params: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    #: The body's document type (a Struct of :mod:`taskqueue.wire`, or one ``Annotated`` with
    #: what its JSON Schema adds), if it takes one.
    body: Any = None
    #: Error statuses particular to this operation (auth, validation and 503 are implied).
    errors: Mapping[int, str] = attrs.field(factory=dict)
    #: Whether it reads or writes Redis (and so may answer 503 when Redis is down).
    uses_redis: bool = True


@attrs.frozen
class Api:
    """What the handlers work with: the process's parts (``context``) and the API's own."""

    context: ApiContext
    authenticator: Authenticator
    events: EventHub
    #: The OpenAPI document, built once from the routes served.
    openapi: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Call:
    """One request, validated: what a handler receives."""

    api: Api
    path: Mapping[str, str]
    query: Mapping[str, Any]
    #: Every request header, by its name in lowercase (the first, if one is repeated).
    headers: Mapping[str, str]
    body: Any = None


Handler = Callable[[Call], Awaitable[Response | StreamingResponse]]


@attrs.frozen
class Route:
    operation: Operation
    handler: Handler


class RouteTable:
    """Operations and their handlers, in declaration order (the order of the document)."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, operation: Operation) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._routes.append(Route(operation, handler))
            return handler

        return register

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)


_encode = msgspec.json.Encoder().encode


def json_response(
    document: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``document`` (a Struct of :mod:`taskqueue.wire`, or plain JSON data) as the reply."""
    return Response(_encode(document), status, headers)
