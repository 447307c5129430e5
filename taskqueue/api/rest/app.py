"""The REST app: quart-trio serving the declared operations, and nothing but problem+json errors.

Every operation runs behind the same checks, in this order, before its handler sees anything:
the bearer token (401/403), the query parameters and headers (422), then for a body the content
type (415), its size (413), its syntax (400) and its schema (422). A handler therefore only
meets valid input, and every refusal names what was wrong. Errors raised later (unknown id,
finished task, full queue, Redis down) go through the one mapping in
:mod:`taskqueue.api.errors`; anything else is a bug, logged with its traceback and answered
500 without details.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from quart import request
from quart_trio import QuartTrio
from quart_trio.wrappers import TrioResponse
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from taskqueue.api.auth import Authenticator, AuthResult
from taskqueue.api.context import ApiContext
from taskqueue.api.errors import ApiError, api_error, auth_error, invalid
from taskqueue.api.events import EventHub
from taskqueue.api.rest import admin, inputs, openapi, sse, tasks
from taskqueue.api.rest.health import health_routes
from taskqueue.api.rest.openapi import build_document
from taskqueue.api.rest.problems import WWW_AUTHENTICATE, problem_response
from taskqueue.api.rest.quart_app import RestQuart
from taskqueue.api.rest.routing import Access, Api, Call, Operation, Param, Route

log = logging.getLogger(__name__)

#: How long a client may take to send its request body.
BODY_TIMEOUT = 30.0
#: How long a (non-streaming) response may take to send.
RESPONSE_TIMEOUT = 60.0

#: The ASGI scope key under which the API dispatcher (:mod:`taskqueue.api.asgi`) leaves an
#: object whose ``route`` the view sets to the operation's path template.
REQUEST_INFO_KEY = "taskqueue.request"


def create_rest_app(
    context: ApiContext, authenticator: Authenticator, events: EventHub
) -> QuartTrio:
    """The REST API (``events`` must be running for ``/api/v1/events``)."""
    server = context.server
    app = RestQuart("taskqueue.api.rest")  # quart-trio's, corrected: see its module
    app.config.update(
        MAX_CONTENT_LENGTH=server.max_request_bytes,
        BODY_TIMEOUT=BODY_TIMEOUT,
        RESPONSE_TIMEOUT=RESPONSE_TIMEOUT,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    routes = all_routes(context.metrics_path, metrics_public=context.metrics_public)
    document = build_document(
        routes,
        auth_enabled=authenticator.enabled,
        health_open=server.open_health_endpoints,
    )
    api = Api(context=context, authenticator=authenticator, events=events, openapi=document)
    for route in routes:
        view = _view(api, route)
        app.add_url_rule(
            route.operation.quart_path,
            endpoint=route.operation.operation_id,
            view_func=view,
            methods=[route.operation.method],
            provide_automatic_options=False,
        )
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _error)
    return app


def all_routes(metrics_path: str | None = None, *, metrics_public: bool = False) -> list[Route]:
    """Every operation the REST app serves (``/metrics`` at ``metrics_path``, if given, open
    to all when ``metrics_public``), in the order the document lists them."""
    health = health_routes(metrics_path, public_metrics=metrics_public)
    return [*tasks.routes, *admin.routes, *sse.routes, *health, *openapi.routes]


def _view(api: Api, route: Route) -> Any:
    op = route.operation

    async def view(**path: str) -> TrioResponse:
        # Tell the API dispatcher which operation this is, for its metrics' route label.
        info: Any = request.scope.get(REQUEST_INFO_KEY)
        if info is not None:
            info.route = op.path
        refused = _authorize(api, op)
        if refused is not None:
            return refused
        query = _query(op)
        headers = _headers(op)
        body = await _body(op.body) if op.body is not None else None
        for param in op.headers:
            if param.body_field and param.field_name in headers:
                body = _from_header(body, param, headers[param.field_name])
        return await route.handler(Call(api, path, query, request.headers, body))

    view.__name__ = op.operation_id
    return view


def _authorize(api: Api, op: Operation) -> TrioResponse | None:
    """The refusal for a request without the token ``op`` needs, or None to go on."""
    if op.access is Access.PUBLIC:
        return None
    if op.access is Access.HEALTH and api.context.server.open_health_endpoints:
        return None
    result = api.authenticator.check(
        request.headers.get("Authorization"), write=op.access is Access.WRITE
    )
    error = auth_error(result)
    if error is None:
        return None
    headers = {}
    if result is AuthResult.INVALID:
        headers["WWW-Authenticate"] = f'{WWW_AUTHENTICATE}, error="invalid_token"'
    elif result is AuthResult.FORBIDDEN:
        headers["WWW-Authenticate"] = f'{WWW_AUTHENTICATE}, error="insufficient_scope"'
    return problem_response(error, headers)


def _query(op: Operation) -> dict[str, Any]:
    """The query parameters ``op`` declares, converted and checked; any other is refused."""
    declared = {param.name: param for param in op.query}
    values: dict[str, Any] = {}
    for name in request.args:
        param = declared.get(name)
        if param is None:
            known = ", ".join(declared) or "none"
            raise invalid(name, f"unknown query parameter; expected {known}")
        given = request.args.getlist(name)
        if len(given) > 1:
            raise invalid(name, "given more than once")
        values[name] = inputs.parameter(param, given[0])
    for param in op.query:
        if param.name not in values and param.default is not None:
            values[param.name] = param.default
    return values


def _headers(op: Operation) -> dict[str, Any]:
    """The header parameters ``op`` declares that the request carries, converted and checked,
    by their names in snake case."""
    values: dict[str, Any] = {}
    for param in op.headers:
        text = request.headers.get(param.name)
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


async def _body(kind: type) -> Any:
    """The request body, as a ``kind`` document."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        shown = request.headers.get("Content-Type") or "none"
        raise ApiError(
            415,
            "INVALID_ARGUMENT",
            "Unsupported media type",
            f"the body must be JSON (Content-Type: application/json), not {shown}",
        )
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        raise _too_large(limit)
    try:
        data = await request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    return inputs.body(kind, data)


def _too_large(limit: int | None) -> ApiError:
    return ApiError(
        413,
        "RESOURCE_EXHAUSTED",
        "Payload too large",
        f"the request body is over the limit of {limit} bytes (server.max_request_bytes)",
    )


async def _http_error(exc: HTTPException) -> TrioResponse:
    """Routing and protocol errors (404, 405, 413 …) as problems too."""
    status = exc.code or 500
    headers: dict[str, str] = {}
    if status == 404:
        detail = f"no such resource: {request.method} {request.path}"
    elif isinstance(exc, MethodNotAllowed):
        allowed = sorted(exc.valid_methods or ())
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.path} allows {', '.join(allowed)}, not {request.method}"
    elif isinstance(exc, RequestEntityTooLarge):
        return problem_response(_too_large(request.max_content_length))
    else:
        detail = exc.description or exc.name
    title = exc.name or "Error"
    error = ApiError(status, "UNKNOWN", title[:1].upper() + title[1:].lower(), detail)
    return problem_response(error, headers)


async def _error(exc: Exception) -> TrioResponse:
    error = api_error(exc)
    if error is None:
        log.error("bug: %s %s failed", request.method, request.path, exc_info=exc)
        error = ApiError(500, "INTERNAL", "Internal error", "the server failed; see its log")
    return problem_response(error)
