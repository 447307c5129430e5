"""The OpenAPI 3.1 document, generated from the operations the server actually serves.

Paths, parameters, bodies and replies come from each route's :class:`Operation`; the schemas
are msgspec's JSON Schemas of the very types the app converts requests to and encodes replies
from (:mod:`taskqueue.wire`, :mod:`taskqueue.models`), published as components. The error replies an
operation can give are derived from what it declares (a body can be malformed, too large or
not JSON; a token can be missing; Redis can be down), so they stay in step with the checks the
app factory wraps around every handler.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec
import msgspec.inspect as mi

from taskqueue.api.rest.problems import PROBLEM_JSON
from taskqueue.api.rest.routing import (
    API_PREFIX,
    Access,
    Call,
    Operation,
    Param,
    Reply,
    Route,
    RouteTable,
    Schema,
    json_response,
)
from taskqueue.api.rest.send import Response
from taskqueue.models import EXCLUSIVE_DEADLINE_FIELDS, EXCLUSIVE_SUBMISSION_FIELDS
from taskqueue.wire import Problem

OPENAPI_PATH = f"{API_PREFIX}/openapi.json"

routes = RouteTable()


@routes.add(
    Operation(
        method="GET",
        path=OPENAPI_PATH,
        operation_id="openapi",
        summary="This document",
        tag="meta",
        access=Access.PUBLIC,
        replies={200: Reply("The OpenAPI 3.1 document.", {"type": "object"})},
        uses_redis=False,
    )
)
async def openapi_document(call: Call) -> Response:
    return json_response(call.api.openapi)


#: Why each generic error status happens, as documented.
ERRORS: dict[int, str] = {
    400: "The body is not valid JSON.",
    401: "No bearer token, or an unknown one (see the WWW-Authenticate header).",
    403: "The token may only read; this operation writes. Or the request was authenticated "
    "by the dashboard's session cookie without its CSRF token in the `X-CSRF-Token` header "
    "(a write from the dashboard must carry the token its page was served with).",
    413: "The body is over `server.max_request_bytes`, or the payload over "
    "`task.max_payload_bytes` (`field` names it).",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    422: "A field or parameter is invalid or unknown; `field` names it.",
    503: "Redis is unreachable; retry later (see Retry-After).",
}

DESCRIPTION = """\
Submit, inspect, cancel and watch tasks. Every error is an RFC 9457 problem
(`application/problem+json`) whose `detail` says what is wrong and, for an invalid field,
whose `field` names it. Writes need an admin token, reads any valid token
(`Authorization: Bearer <token>`), unless the server runs without tokens.
The same operations are served over gRPC on the same port (`taskqueue.v1.TaskQueue`)."""


def build_document(
    routes: Iterable[Route], *, auth_enabled: bool, health_open: bool
) -> dict[str, Any]:
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    tags: list[str] = []
    for route in routes:
        op = route.operation
        if op.tag not in tags:
            tags.append(op.tag)
        needs_token = auth_enabled and (
            op.access in (Access.READ, Access.WRITE)
            or (op.access is Access.HEALTH and not health_open)
        )
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, needs_token, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskqueue", "version": _version(), "description": DESCRIPTION},
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@functools.cache
def _schema_components(kind: Any, ref_template: str) -> tuple[Schema, dict[str, Schema]]:
    """msgspec's schema of ``kind`` and its components, made once per type: the daemon (and
    every test server) builds the document at start, and msgspec takes a while per type."""
    (schema,), components = msgspec.json.schema_components([kind], ref_template=ref_template)
    return schema, components


class Schemas:
    """The JSON Schemas of the types an operation names, their Structs gathered as components.

    A reply's document always carries every field (null where there is no value), so its
    schema requires them all; a request's requires only what has no default.
    """

    REF_TEMPLATE = "#/components/schemas/{name}"

    def __init__(self) -> None:
        self._components: dict[str, Schema] = {}
        self._requests: set[str] = set()

    def of(self, kind: Any, *, request: bool = False) -> Schema:
        """``kind``'s schema (a dict passes as it is), its components recorded."""
        if isinstance(kind, dict):
            return kind
        schema, components = copy.deepcopy(_schema_components(kind, self.REF_TEMPLATE))
        self._components.update(components)
        if request:
            self._requests.update(components)
        else:  # a document that leaves out unset fields (a policy layer) requires none
            self._requests.update(_omitting_defaults(kind) & set(components))
        return schema

    def components(self) -> dict[str, Schema]:
        result = {}
        for name, schema in sorted(self._components.items()):
            schema = dict(schema)
            properties = schema.get("properties")
            if properties and name not in self._requests and name != Problem.__name__:
                schema["required"] = list(properties)
            if name == "Submission":  # the rules between fields, which a Struct cannot say
                schema["allOf"] = [
                    {"not": {"required": list(pair)}}
                    for pair in (EXCLUSIVE_SUBMISSION_FIELDS, EXCLUSIVE_DEADLINE_FIELDS)
                ]
            result[name] = schema
        return result


def _omitting_defaults(kind: Any) -> set[str]:
    """The names of the Structs within ``kind`` that leave out fields at their default."""
    found: set[str] = set()
    seen: set[int] = set()

    def walk(info: mi.Type) -> None:
        if id(info) in seen:
            return
        seen.add(id(info))
        if isinstance(info, mi.StructType):
            if info.cls.__struct_config__.omit_defaults:
                found.add(info.cls.__name__)
            for field in info.fields:
                walk(field.type)
        for name in ("type", "item_type", "key_type", "value_type"):  # type: a Metadata's
            if isinstance(inner := getattr(info, name, None), mi.Type):
                walk(inner)
        for inner in getattr(info, "item_types", None) or getattr(info, "types", None) or ():
            if isinstance(inner, mi.Type):
                walk(inner)

    walk(mi.type_info(kind))
    return found


def _operation(op: Operation, needs_token: bool, schemas: Schemas) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{"bearer": []}] if needs_token else [],
    }
    if op.description:
        doc["description"] = op.description
    parameters = [
        *(_parameter(p, "path", schemas) for p in op.path_params),
        *(_parameter(p, "query", schemas) for p in op.query),
        *(_parameter(p, "header", schemas) for p in op.headers),
    ]
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        content = {"application/json": {"schema": schemas.of(op.body, request=True)}}
        doc["requestBody"] = {"required": True, "content": content}
    responses = {
        str(status): _reply(reply, schemas) for status, reply in sorted(op.replies.items())
    }
    for status, why in sorted(error_statuses(op, needs_token).items()):
        responses.setdefault(str(status), _problem(why, schemas))
    doc["responses"] = responses
    return doc


def error_statuses(op: Operation, needs_token: bool) -> dict[int, str]:
    """Every error status ``op`` can answer, with why."""
    statuses = dict(op.errors)
    if needs_token:
        statuses[401] = ERRORS[401]
        if op.access is Access.WRITE:
            statuses[403] = ERRORS[403]
    if op.body is not None:
        for status in (400, 413, 415):
            statuses[status] = ERRORS[status]
    if op.body is not None or op.query or op.headers:
        statuses.setdefault(422, ERRORS[422])
    if op.uses_redis:
        statuses[503] = ERRORS[503]
    return statuses


def _parameter(param: Param, where: str, schemas: Schemas) -> dict[str, Any]:
    schema = schemas.of(param.kind)
    if param.default is not None:
        schema = {**schema, "default": msgspec.to_builtins(param.default)}
    return {
        "name": param.name,
        "in": where,
        "required": param.required or where == "path",
        "description": param.description,
        "schema": schema,
    }


def _reply(reply: Reply, schemas: Schemas) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": reply.description}
    if reply.body is not None:
        doc["content"] = {reply.media_type: {"schema": schemas.of(reply.body)}}
    if reply.headers:
        doc["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    return doc


def _problem(description: str, schemas: Schemas) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": schemas.of(Problem)}}}


def _version() -> str:
    try:
        return version("taskqueue")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"
