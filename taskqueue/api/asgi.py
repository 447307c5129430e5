"""One ASGI app for the API port: gRPC by content type, everything else to REST.

A request whose ``content-type`` starts with ``application/grpc`` goes to the gRPC app; any
other request goes to the REST app. The ``lifespan`` scope is answered here: neither app has
anything to start or stop, but hypercorn's trio worker needs the startup and shutdown
acknowledged (an app that returned at once would crash it at startup).

The gRPC package is imported lazily: a build without it still serves REST, and answers gRPC
calls with status UNIMPLEMENTED (or, over HTTP/1.1, which cannot carry gRPC's trailers, 415).

Every HTTP request, REST or gRPC, passes here once, so this is where both get the same
observability:

* a request id: the client's ``X-Request-ID`` when it sends a sane one, else a new one; it is
  bound to the log context for everything the request logs and sent back as ``x-request-id``
  (for gRPC, in the response metadata);
* ``taskqueue_api_requests_total`` and ``taskqueue_api_request_duration_seconds`` by protocol
  and route (the REST operation's path template, or the gRPC method; ``unmatched`` for
  anything else, so made-up paths cannot add series), with the HTTP status, or for gRPC the
  ``grpc-status`` read from the trailers (or from the headers of a trailers-only response);
* one access log line (logger ``taskqueue.access``) when the response has ended: method, path,
  status, duration, client address. Never a body: payloads stay out of the logs.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

import trio

from taskqueue import _json
from taskqueue.api.auth import Authenticator
from taskqueue.api.context import ApiContext
from taskqueue.api.errors import ApiError
from taskqueue.api.events import EventHub
from taskqueue.api.rest import create_rest_app
from taskqueue.api.rest.app import REQUEST_INFO_KEY
from taskqueue.api.rest.problems import PROBLEM_JSON, problem_body
from taskqueue.logs import bind_log_context
from taskqueue.metrics import Metrics, grpc_status_name

log = logging.getLogger(__name__)
access_log = logging.getLogger("taskqueue.access")

GRPC_CONTENT_TYPE: Final = b"application/grpc"
GRPC_PACKAGE: Final = "taskqueue.api.grpc"

REQUEST_ID_HEADER: Final = b"x-request-id"
#: A client's request id is kept if it is this tame: it goes into log lines and headers as is.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._~:/+=@-]{1,128}")
UNMATCHED: Final = "unmatched"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Any ASGI 3 application (loosely typed: the REST and gRPC apps type scopes differently).
AsgiApp = Callable[..., Awaitable[None]]


class RequestInfo:
    """What the dispatcher learns about one request while it is served."""

    __slots__ = ("grpc_status", "route", "status")

    def __init__(self) -> None:
        #: Set by the REST app to the operation's path template once it matched one.
        self.route: str | None = None
        self.status: int | None = None
        self.grpc_status: int | None = None


class ApiDispatcher:
    """Routes each request of the API port to the gRPC or the REST app, and observes it."""

    def __init__(self, rest: AsgiApp, grpc: AsgiApp | None, metrics: Metrics | None = None) -> None:
        self.rest = rest
        self.grpc = grpc
        self.metrics = metrics
        routes: Iterable[str] = getattr(grpc, "routes", ())
        self._grpc_routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await lifespan(receive, send)
            return
        grpc = False
        request_id = b""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                grpc = bool(value[: len(GRPC_CONTENT_TYPE)].lower() == GRPC_CONTENT_TYPE)
            elif name == REQUEST_ID_HEADER:
                request_id = value
        if not _SANE_REQUEST_ID.fullmatch(request_id):
            request_id = secrets.token_hex(8).encode()
        info = RequestInfo()
        scope[REQUEST_INFO_KEY] = info

        async def observed_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                info.status = message["status"]
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
                if grpc:
                    info.grpc_status = _grpc_status(headers, info.grpc_status)
                message = {**message, "headers": headers}
            elif kind == "http.response.trailers" and grpc:
                info.grpc_status = _grpc_status(message.get("headers", ()), info.grpc_status)
            await send(message)

        start = time.perf_counter()
        failed = True
        try:
            with bind_log_context(request_id=request_id.decode("ascii")):
                if not grpc:
                    await self.rest(scope, receive, observed_send)
                elif self.grpc is None:
                    await grpc_unimplemented(scope, observed_send)
                else:
                    await self.grpc(scope, receive, observed_send)
            failed = False
        finally:
            self._observe(scope, info, grpc, request_id, time.perf_counter() - start, failed)

    def _observe(
        self,
        scope: Scope,
        info: RequestInfo,
        grpc: bool,
        request_id: bytes,
        seconds: float,
        failed: bool,
    ) -> None:
        """Count the request and write its access log line."""
        path: str = scope.get("path", "")
        method: str = scope.get("method", "")
        if info.status is None:
            # No response started: the client went away (or the server is stopping), or the
            # app crashed and hypercorn answers 500 itself.
            status = "500" if failed and not _cancelled() else "499"
        elif grpc and info.grpc_status is not None:
            status = grpc_status_name(info.grpc_status)
        else:
            status = str(info.status)
        if grpc:
            api, route = "grpc", path if path in self._grpc_routes else UNMATCHED
        else:
            api, route = "rest", info.route or UNMATCHED
        if self.metrics is not None:
            self.metrics.api_request(api, route, method, status, seconds)
        client = scope.get("client")
        access_log.info(
            "%s %s %s %.1fms",
            "gRPC" if grpc else method,
            path,
            status,
            seconds * 1000,
            extra={
                "request_id": request_id.decode("ascii"),
                "api": api,
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else None,
            },
        )


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge the server's startup and shutdown (the ``lifespan`` scope)."""
    while True:
        kind = (await receive())["type"]
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _grpc_status(headers: Iterable[tuple[bytes, bytes]], current: int | None) -> int | None:
    for name, value in headers:
        if name == b"grpc-status":
            try:
                return int(value)
            except ValueError:
                return current
    return current


def _cancelled() -> bool:
    """Whether the current task is being cancelled (the request was abandoned)."""
    try:
        return trio.current_effective_deadline() == -float("inf")
    except RuntimeError:
        return False


def create_app(
    context: ApiContext, authenticator: Authenticator, events: EventHub
) -> ApiDispatcher:
    """The ASGI app of the API port: REST, and gRPC when its package is present."""
    rest = create_rest_app(context, authenticator, events)
    return ApiDispatcher(rest, load_grpc_app(context, authenticator, events), context.metrics)


def load_grpc_app(
    context: ApiContext, authenticator: Authenticator, events: EventHub
) -> AsgiApp | None:
    """The gRPC app, or None when ``taskqueue.api.grpc`` is absent (a broken one raises)."""
    try:
        from taskqueue.api.grpc import create_grpc_app
    except ModuleNotFoundError as exc:
        if exc.name is None or not GRPC_PACKAGE.startswith(exc.name):
            raise
        log.warning("gRPC is not available (%s is missing): serving REST only", GRPC_PACKAGE)
        return None
    app: AsgiApp = create_grpc_app(context, authenticator, events)
    return app


async def grpc_unimplemented(scope: Scope, send: Send) -> None:
    """Answer a gRPC call when no gRPC service is installed."""
    message = b"gRPC is not available on this server"
    if "http.response.trailers" in scope.get("extensions", {}):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", GRPC_CONTENT_TYPE)],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"grpc-status", b"12"), (b"grpc-message", message)],
                "more_trailers": False,
            }
        )
        return
    error = ApiError(415, "UNIMPLEMENTED", "Unsupported media type", message.decode())
    body = _json.dumps(problem_body(error)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 415,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
