"""The REST app: an ASGI callable serving the declared operations, and nothing but
problem+json errors.

Each request goes match → auth → inputs → handler → response. Every operation runs behind the
same checks, in this order, before its handler sees anything: the path and method (404/405),
the bearer token (401/403), the query parameters and headers (422), then for a body the
content type (415), its size (413), its syntax (400) and its schema (422). A handler therefore
only meets valid input, and every refusal names what was wrong. Errors raised later (unknown
id, finished task, full queue, Redis down) go through the one mapping in
:mod:`taskqueue.api.errors`; anything else is a bug, logged with its traceback and answered
500 without details.

Our own small layer rather than a framework: per request the server spends a fifth to a
quarter less CPU than it did on Quart (see docs/architecture.md), and the refusal path is
ours to get right. A refusal sent before the body was read would end the HTTP/1.1 connection
(hypercorn closes one whose request did not all arrive when its response completes), so the
rest of the body is read and dropped after the response's body is sent and before it is
marked complete, up to ``server.max_request_bytes``: the client has its answer at once, and
the connection carries its next request. A body declared over the limit is not waited for:
that answer says ``Connection: close``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import msgspec

from taskqueue.api.auth import Authenticator, AuthResult
from taskqueue.api.context import ApiContext
from taskqueue.api.errors import ApiError, api_error, auth_error, invalid
from taskqueue.api.events import EventHub
from taskqueue.api.rest import admin, inputs, openapi, policy, schedules, sse, tasks
from taskqueue.api.rest.health import health_routes
from taskqueue.api.rest.http import ClientGone, Receive, Request
from taskqueue.api.rest.openapi import build_document
from taskqueue.api.rest.problems import WWW_AUTHENTICATE, problem_response
from taskqueue.api.rest.routing import Access, Api, Call, Operation, Param, Route
from taskqueue.api.rest.send import (
    Message,
    Response,
    Send,
    StreamingResponse,
    send_response,
    send_stream,
)
from taskqueue.api.rest.urls import Match, UrlMap, canonical
from taskqueue.api.ui.pages import Dashboard
from taskqueue.api.ui.session import CSRF_HEADER, read_session

log = logging.getLogger(__name__)

#: The ASGI scope key under which the API dispatcher (:mod:`taskqueue.api.asgi`) leaves an
#: object whose ``route`` the app sets to the operation's path template.
REQUEST_INFO_KEY = "taskqueue.request"

_CLOSE = (b"connection", b"close")


class RestApp:
    """The ASGI app of the REST API (HTTP scopes only: the dispatcher answers ``lifespan``)."""

    def __init__(self, api: Api, routes: list[Route], ui: Dashboard | None = None) -> None:
        self.api = api
        self.urls = UrlMap(routes)
        #: The web dashboard, which serves ``/`` and ``/ui``: pages, not operations.
        self.ui = ui
        self.limit = api.context.server.max_request_bytes

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._respond(request)
            # Over HTTP/1.1 a body left unread must arrive before the connection can carry
            # another request (HTTP/2 streams are independent, hypercorn drops such data).
            drain = request.http1 and request.body_pending
            if drain and (
                isinstance(response, StreamingResponse) or not request.discardable(self.limit)
            ):
                response.headers.append(_CLOSE)
                drain = False
            if isinstance(response, StreamingResponse):
                await send_stream(response, send, receive)
            elif drain:
                await send_response(response, send, before_end=partial(request.discard, self.limit))
            else:
                await send_response(response, send)
        except ClientGone:
            return  # hypercorn has nothing to send to either

    async def _respond(self, request: Request) -> Response | StreamingResponse:
        """The response to ``request``: its handler's, or the problem that stopped it."""
        try:
            path = canonical(request.path)
            # Tell the API dispatcher which operation this is, for its metrics' route label.
            info: Any = request.scope.get(REQUEST_INFO_KEY)
            if self.ui is not None and self.ui.serves(path):
                if info is not None:
                    info.route = self.ui.route(path)
                return await self.ui.respond(request, path)
            match = self.urls.match(request.method, path)
            if match.route is None:
                return _unmatched(request.method, path, match)
            if info is not None:
                info.route = match.route.operation.path
            return await self._call(request, match.route, match.params)
        except ClientGone:
            raise
        except Exception as exc:
            error = api_error(exc)
            if error is None:
                log.error("bug: %s %s failed", request.method, request.path, exc_info=exc)
                detail = "the server failed; see its log"
                error = ApiError(500, "INTERNAL", "Internal error", detail)
            return problem_response(error)

    async def _call(
        self, request: Request, route: Route, path: Mapping[str, str]
    ) -> Response | StreamingResponse:
        op = route.operation
        refused = _authorize(self.api, request, op)
        if refused is not None:
            return refused
        query = _query(request, op)
        headers = _headers(request, op)
        body = await self._body(request, op.body) if op.body is not None else None
        for param in op.headers:
            if param.body_field and param.field_name in headers:
                body = _from_header(body, param, headers[param.field_name])
        return await route.handler(Call(self.api, path, query, request.headers, body))

    async def _body(self, request: Request, kind: type) -> Any:
        """The request body, as a ``kind`` document."""
        mimetype = request.mimetype
        if mimetype != "application/json" and not mimetype.endswith("+json"):
            shown = request.headers.get("content-type") or "none"
            raise ApiError(
                415,
                "INVALID_ARGUMENT",
                "Unsupported media type",
                f"the body must be JSON (Content-Type: application/json), not {shown}",
            )
        return inputs.body(kind, await request.body(self.limit))


def create_rest_app(context: ApiContext, authenticator: Authenticator, events: EventHub) -> RestApp:
    """The REST API (``events`` must be running for ``/api/v1/events``), and the dashboard."""
    server = context.server
    routes = all_routes(context.metrics_path, metrics_public=context.metrics_public)
    document = build_document(
        routes,
        auth_enabled=authenticator.enabled,
        health_open=server.open_health_endpoints,
    )
    api = Api(context=context, authenticator=authenticator, events=events, openapi=document)
    return RestApp(api, routes, Dashboard(authenticator))


def all_routes(metrics_path: str | None = None, *, metrics_public: bool = False) -> list[Route]:
    """Every operation the REST app serves (``/metrics`` at ``metrics_path``, if given, open
    to all when ``metrics_public``), in the order the document lists them."""
    health = health_routes(metrics_path, public_metrics=metrics_public)
    return [
        *tasks.routes,
        *admin.routes,
        *policy.routes,
        *schedules.routes,
        *sse.routes,
        *health,
        *openapi.routes,
    ]


def _unmatched(method: str, path: str, match: Match) -> Response:
    """The 404 for a path no route has, or the 405 for a method its routes do not take."""
    if not match.allowed:
        detail = f"no such resource: {method} {path}"
        return problem_response(ApiError(404, "NOT_FOUND", "Not found", detail))
    allowed = ", ".join(match.allowed)
    detail = f"{path} allows {allowed}, not {method}"
    error = ApiError(405, "UNIMPLEMENTED", "Method not allowed", detail)
    return problem_response(error, {"Allow": allowed})


def _authorize(api: Api, request: Request, op: Operation) -> Response | None:
    """The refusal for a request without the token ``op`` needs, or None to go on."""
    if op.access is Access.PUBLIC:
        return None
    if op.access is Access.HEALTH and api.context.server.open_health_endpoints:
        return None
    write = op.access is Access.WRITE
    authorization = request.headers.get("authorization")
    # The dashboard's session cookie stands for a bearer token (see taskqueue.api.ui.session);
    # a write made with it must carry the session's CSRF token too.
    session = None if authorization else read_session(request.headers.get("cookie"))
    if session is not None:
        authorization = session.authorization
    result = api.authenticator.check(authorization, write=write)
    error = auth_error(result)
    if error is None:
        if session is None or not write or not api.authenticator.enabled:
            return None
        if session.csrf_ok(request.headers.get(CSRF_HEADER)):
            return None
        detail = "a write made with the dashboard's session needs its X-CSRF-Token header"
        return problem_response(ApiError(403, "PERMISSION_DENIED", "Forbidden", detail))
    headers = {}
    if result is AuthResult.INVALID:
        headers["WWW-Authenticate"] = f'{WWW_AUTHENTICATE}, error="invalid_token"'
    elif result is AuthResult.FORBIDDEN:
        headers["WWW-Authenticate"] = f'{WWW_AUTHENTICATE}, error="insufficient_scope"'
    return problem_response(error, headers)


def _query(request: Request, op: Operation) -> dict[str, Any]:
    """The query parameters ``op`` declares, converted and checked; any other is refused."""
    declared = {param.name: param for param in op.query}
    given: dict[str, list[str]] = {}
    for name, text in request.query():
        given.setdefault(name, []).append(text)
    values: dict[str, Any] = {}
    for name, texts in given.items():
        param = declared.get(name)
        if param is None:
            known = ", ".join(declared) or "none"
            raise invalid(name, f"unknown query parameter; expected {known}")
        if len(texts) > 1:
            raise invalid(name, "given more than once")
        values[name] = inputs.parameter(param, texts[0])
    for param in op.query:
        if param.name not in values and param.default is not None:
            values[param.name] = param.default
        elif param.required and param.name not in values:
            raise invalid(param.name, "required")
    return values


def _headers(request: Request, op: Operation) -> dict[str, Any]:
    """The header parameters ``op`` declares that the request carries, converted and checked,
    by their names in snake case."""
    values: dict[str, Any] = {}
    for param in op.headers:
        text = request.headers.get(param.name.lower())
        if text is not None:
            values[param.field_name] = inputs.parameter(param, text)
    return values


def _from_header(body: Any, param: Param, value: Any) -> Any:
    """``body`` with its field set from the header ``param``, which it must not contradict."""
    name = param.field_name
    given = getattr(body, name)
    if given is not None and given != value:
        raise invalid(name, f"differs from the {param.name} header")
    return msgspec.structs.replace(body, **{name: value})
