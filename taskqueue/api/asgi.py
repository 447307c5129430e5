"""One ASGI app for the API port: gRPC by content type, everything else to REST.

A request whose ``content-type`` starts with ``application/grpc`` goes to the gRPC app; any
other request, and the ``lifespan`` scope (which quart-trio needs to start its nursery; an ASGI
app that ignored it would crash hypercorn's trio worker at startup), goes to the REST app.

The gRPC package is imported lazily: a build without it still serves REST, and answers gRPC
calls with status UNIMPLEMENTED (or, over HTTP/1.1, which cannot carry gRPC's trailers, 415).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from taskqueue import _json
from taskqueue.api.auth import Authenticator
from taskqueue.api.errors import ApiError
from taskqueue.api.events import EventHub
from taskqueue.api.rest import create_rest_app
from taskqueue.api.rest.problems import PROBLEM_JSON, problem_body

if TYPE_CHECKING:
    from taskqueue.daemon.runtime import Daemon

log = logging.getLogger(__name__)

GRPC_CONTENT_TYPE: Final = b"application/grpc"
GRPC_PACKAGE: Final = "taskqueue.api.grpc"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Any ASGI 3 application (loosely typed: quart-trio and the gRPC app type scopes differently).
AsgiApp = Callable[..., Awaitable[None]]


class ApiDispatcher:
    """Routes each request of the API port to the gRPC or the REST app."""

    def __init__(self, rest: AsgiApp, grpc: AsgiApp | None) -> None:
        self.rest = rest
        self.grpc = grpc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_grpc(scope):
            if self.grpc is None:
                await grpc_unimplemented(scope, send)
            else:
                await self.grpc(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


def is_grpc(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bool(value[: len(GRPC_CONTENT_TYPE)].lower() == GRPC_CONTENT_TYPE)
    return False


def create_app(daemon: Daemon, authenticator: Authenticator, events: EventHub) -> ApiDispatcher:
    """The ASGI app of the API port: REST, and gRPC when its package is present."""
    rest = create_rest_app(daemon, authenticator, events)
    return ApiDispatcher(rest, load_grpc_app(daemon, authenticator, events))


def load_grpc_app(daemon: Daemon, authenticator: Authenticator, events: EventHub) -> AsgiApp | None:
    """The gRPC app, or None when ``taskqueue.api.grpc`` is absent (a broken one raises)."""
    try:
        from taskqueue.api.grpc import create_grpc_app
    except ModuleNotFoundError as exc:
        if exc.name is None or not GRPC_PACKAGE.startswith(exc.name):
            raise
        log.warning("gRPC is not available (%s is missing): serving REST only", GRPC_PACKAGE)
        return None
    app: AsgiApp = create_grpc_app(daemon, authenticator, events)
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
