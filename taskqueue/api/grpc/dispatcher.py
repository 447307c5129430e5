"""Serve betterproto services over gRPC as an ASGI app, on hypercorn's trio worker.

Routing reuses the generated ``ServiceBase.__mapping__()`` as is: each entry's function is
betterproto's wrapper that calls ``stream.recv_message()``, the service method, and
``stream.send_message()``; this module hands it a two-method stand-in for grpclib's stream.
Unary and server-streaming methods are served (the API has no client streaming).

One call, in order: the whole request body is read (a response before the body is consumed
would leave hypercorn blocked on its per-request queue), then the ``grpc-timeout``, the route,
the bearer token and the message are checked; the handler runs in a cancel scope carrying the
deadline, next to a task that watches for the client going away (and, for a stream, one that
watches the daemon's shutdown); finally the status goes out as trailers. Every error becomes a
gRPC status through :func:`taskqueue.api.errors.api_error`; anything else is a bug, logged
here and answered INTERNAL without its details.

Hypercorn pitfalls this code respects (docs/grpc-on-hypercorn.md tells how they were found):

* trailers reach the client only if the request said ``te: trailers``; a request without it
  is answered at once with the status in the response headers.
* A response always goes start, body, empty final body, trailers: hypercorn's own
  "trailers-only" path sends a stray empty DATA frame.
* Hypercorn delivers ``http.disconnect`` from *inside* the app's final ``send()`` (the stream
  closing). Cancelling then would interrupt hypercorn's cleanup half way and leak the stream,
  so a disconnect cancels the handler only while the handler runs; once the final sends have
  begun, it cancels them only if they are still stuck after :data:`FINISH_GRACE` (the
  connection died while hypercorn waited to flush the trailers: nothing else would wake it).
* Every response event goes through :class:`~taskqueue.api.grpc.response.Response`, which
  sends each of headers and status at most once, whatever cancellation lands when
  (hypercorn resets a stream given an event out of order); its module says how the sends are
  guarded.

How a call ends, and the status it counts as (the access log and
``taskqueue_api_requests_total`` read it from the trailers): the handler's own status; a
deadline that passed, before or after the headers went out, DEADLINE_EXCEEDED; the daemon
shutting down, for a stream, OK; the client resetting the stream or the connection going,
CANCELLED, recorded but not sent (the stream is gone).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
import betterproto
import trio
from betterproto.grpc.grpclib_server import ServiceBase
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.auth import Authenticator
from taskqueue.api.errors import ApiError, api_error, auth_error
from taskqueue.api.grpc import offload
from taskqueue.api.grpc.context import CallContext, reset_current_call, set_current_call
from taskqueue.api.grpc.framing import count_entries, decode, parse_timeout, unframe
from taskqueue.api.grpc.response import Outcome, Response

log = logging.getLogger(__name__)

# ASGI's callables, typed loosely on purpose: hypercorn's own TypedDict-based types (and any
# outer ASGI dispatcher's) must be accepted as they are.
Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]

#: How long the final sends may still take after the client went away before they are cut.
FINISH_GRACE = 2.0

_CONTENT_TYPES = (b"application/grpc", b"application/grpc+proto")
#: How a call the client abandoned counts (nothing is sent: its stream is gone).
ABANDONED = Outcome(Status.CANCELLED, "the client cancelled the call or went away")


class Access(enum.Enum):
    """What a method needs from the caller's bearer token."""

    OPEN = "open"  # nothing (health checks)
    READ = "read"  # any valid token
    WRITE = "write"  # a token with write (admin) scope


@attrs.frozen
class WireMethod:
    """A unary method's fast path, on the request's and response's bytes (betterproto's
    parse and encode are pure Python, slow for a large message). ``decode`` gives the request
    as the method wants it, or None for a request it leaves to the betterproto path (which
    then answers as it always does: it is the reference); ``handle`` answers the decoded
    request with the response message's bytes."""

    decode: Callable[[bytes], object | None]
    handle: Callable[[Any], Awaitable[bytes]]


@attrs.frozen
class Route:
    func: Callable[[Any], Awaitable[None]]  # betterproto's wrapper; takes the stream stand-in
    request_type: type[betterproto.Message]
    streaming: bool
    access: Access
    wire: WireMethod | None = None  # tried first, if there is one


class GrpcApp:
    """An ASGI callable that serves the gRPC methods of the services added to it.

    ``shutdown`` ends server-streaming calls (with OK) when it is set, so a daemon stopping
    does not wait out hypercorn's graceful timeout for watchers that would never finish.
    """

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        shutdown: trio.Event,
        max_request_bytes: int,
    ) -> None:
        self.authenticator = authenticator
        self.shutdown = shutdown
        self.max_request_bytes = max_request_bytes
        self.routes: dict[str, Route] = {}

    def add_service(self, service: ServiceBase, access: Callable[[str], Access]) -> None:
        """Serve every method of ``service``; ``access(method_name)`` says who may call it.
        A service's ``wire_methods()``, if it has one, maps paths to their fast paths."""
        mapping: Mapping[str, Any] = service.__mapping__()  # type: ignore[attr-defined]
        wire_methods = getattr(service, "wire_methods", None)
        wire: Mapping[str, WireMethod] = wire_methods() if wire_methods is not None else {}
        for path, handler in mapping.items():
            if handler.cardinality.client_streaming:
                raise ValueError(f"{path}: client-streaming methods are not supported")
            self.routes[path] = Route(
                func=handler.func,
                request_type=handler.request_type,
                streaming=handler.cardinality.server_streaming,
                access=access(path.rpartition("/")[2]),
                wire=None if handler.cardinality.server_streaming else wire.get(path),
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"the gRPC app serves HTTP requests, not {scope['type']!r}")
        headers = dict(scope["headers"])
        refusal = _http_refusal(scope, headers)
        if refusal is not None:
            await _drain(receive)
            await _send_plain(send, *refusal)
            return
        call = _Call(receive, Response(send, headers.get(b"content-type", _CONTENT_TYPES[0])))
        if headers.get(b"te") != b"trailers":
            await _drain(receive)
            await call.response.finish_without_trailers(
                Outcome(Status.INTERNAL, "the request lacks 'te: trailers' (a proxy removed it?)")
            )
            return
        deadline, bad_timeout = _deadline(headers.get(b"grpc-timeout"))
        context = CallContext(
            method=scope["path"],
            metadata=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]),
            deadline=deadline,
            peer=_peer(scope.get("client")),
        )
        token = set_current_call(context)
        try:
            async with trio.open_nursery() as nursery:
                call.request_scope = nursery.cancel_scope
                call.handler_scope.deadline = math.inf if deadline is None else deadline
                outcome = await self._run(call, context, headers, bad_timeout, nursery)
                if outcome is None or call.disconnected:
                    call.response.abandon(ABANDONED)
                else:
                    call.watch_disconnect(nursery)
                    call.finishing = True
                    await call.response.finish(outcome)
                nursery.cancel_scope.cancel()
        finally:
            reset_current_call(token)

    async def _run(
        self,
        call: _Call,
        context: CallContext,
        headers: Mapping[bytes, bytes],
        bad_timeout: ApiError | None,
        nursery: trio.Nursery,
    ) -> Outcome | None:
        """Run the call's handler; its outcome, or None when the client went away."""
        try:
            with call.handler_scope:
                body = await call.read_body(self.max_request_bytes)
                if body is None:
                    return None
                call.watch_disconnect(nursery)
                if bad_timeout is not None:
                    raise bad_timeout
                route = self._check(context.method, headers)
                message = _request_message(body.checked(), route.request_type)
                if (
                    route.wire is not None
                    and (decoded := await offload.decode(route.wire.decode, message)) is not None
                ):
                    await call.response.send_message(await route.wire.handle(decoded))
                else:
                    request = await offload.decode(decode, message, route.request_type)
                    if route.streaming:
                        nursery.start_soon(call.stop_on, self.shutdown)
                    await route.func(_Stream(call, request))
        except Exception as exc:  # every error becomes a status
            return _outcome_of(exc, context.method)
        if call.handler_scope.cancelled_caught:
            if call.disconnected:
                return None
            if call.stopped:
                return Outcome(Status.OK, "the server is shutting down")
            timeout = headers.get(b"grpc-timeout", b"").decode("latin-1")
            return Outcome(Status.DEADLINE_EXCEEDED, f"deadline exceeded (grpc-timeout {timeout})")
        return Outcome(Status.OK)

    def _check(self, method: str, headers: Mapping[bytes, bytes]) -> Route:
        """The route of a call that may proceed; raises ApiError for one that may not."""
        route = self.routes.get(method)
        if route is None:
            raise ApiError(404, "UNIMPLEMENTED", "Unimplemented", f"unknown method {method}")
        if route.access is not Access.OPEN:
            authorization = headers.get(b"authorization")
            result = self.authenticator.check(
                authorization.decode("latin-1") if authorization is not None else None,
                write=route.access is Access.WRITE,
            )
            error = auth_error(result)
            if error is not None:
                raise error
        encoding = headers.get(b"grpc-encoding", b"identity")
        if encoding != b"identity":
            raise ApiError(
                415,
                "UNIMPLEMENTED",
                "Unsupported encoding",
                f"grpc-encoding {encoding.decode('latin-1')!r} is not supported; send identity",
            )
        return route


class _Call:
    """The ASGI side of one call: its body, its response, and who may cancel what when."""

    def __init__(self, receive: Receive, response: Response) -> None:
        self.receive = receive
        self.response = response
        self.finishing = False  # the final sends have begun
        self.disconnected = False
        self.stopped = False  # ended by the daemon's shutdown
        self._watching = False
        self.handler_scope = trio.CancelScope()
        self.request_scope = trio.CancelScope()

    async def read_body(self, limit: int) -> _Body | None:
        """The request body; None if the client went away first.

        A body over ``limit`` is read to its end but not kept (see the module docstring for
        why it is read at all); :meth:`_Body.checked` then refuses it.
        """
        body = _Body(limit)
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return None
            body.add(message.get("body", b""))
            if not message.get("more_body", False):
                return body

    def watch_disconnect(self, nursery: trio.Nursery) -> None:
        """Start :meth:`_cancel_on_disconnect` (once; only after the body has been read)."""
        if not self._watching:
            self._watching = True
            nursery.start_soon(self._cancel_on_disconnect)

    async def _cancel_on_disconnect(self) -> None:
        """Cancel the handler when the client goes away (see the module docstring)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass  # the rest of a body the deadline cut short
        self.disconnected = True
        if not self.finishing:
            self.handler_scope.cancel()
            return
        await trio.sleep(FINISH_GRACE)
        self.request_scope.cancel()

    async def stop_on(self, shutdown: trio.Event) -> None:
        """End a streaming call when the daemon shuts down."""
        await shutdown.wait()
        self.stopped = True
        self.handler_scope.cancel()


class _Body:
    """A request body as it arrives, kept only while it stays within the size limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= self.limit + 5:  # + the 5-byte message prefix
            self.data += chunk
        else:
            self.data = bytearray()

    def checked(self) -> bytes:
        if self.size > self.limit + 5:
            raise ApiError(
                413,
                "RESOURCE_EXHAUSTED",
                "Request too large",
                f"the request message is larger than the server's limit of {self.limit} bytes "
                "(server.max_request_bytes)",
            )
        return bytes(self.data)


class _Stream:
    """The part of grpclib's server stream that betterproto's generated handlers use."""

    def __init__(self, call: _Call, request: betterproto.Message) -> None:
        self._call = call
        self._request = request

    async def recv_message(self) -> betterproto.Message:
        return self._request

    async def send_message(self, message: betterproto.Message) -> None:
        await self._call.response.send_message(await offload.encode(message))


def _request_message(body: bytes, message_type: type[betterproto.Message]) -> bytes:
    """The one request message of ``body``, its entries counted (cheaply, on the loop: the
    count bounds the work of decoding it)."""
    messages = unframe(body)
    if len(messages) != 1:
        raise ApiError(
            400,
            "INTERNAL",
            "Protocol error",
            f"expected one request message, got {len(messages)}",
        )
    count_entries(messages[0], message_type)
    return messages[0]


def _outcome_of(exc: Exception, method: str) -> Outcome:
    error = _leaf(exc)
    if isinstance(error, GRPCError):
        return Outcome(error.status, error.message or "")
    known = api_error(error) if isinstance(error, Exception) else None
    if known is not None:
        return Outcome.of(known)
    log.error("gRPC %s failed", method, exc_info=exc)
    return Outcome(Status.INTERNAL, "internal error; the server's log has the details")


def _deadline(value: bytes | None) -> tuple[float | None, ApiError | None]:
    """The deadline (trio clock) of a ``grpc-timeout`` value, or the error to answer it with."""
    if value is None:
        return None, None
    try:
        return trio.current_time() + parse_timeout(value.decode("latin-1")), None
    except ApiError as error:
        return None, error


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member groups (a handler's nursery wraps its
    errors in an ExceptionGroup); a group of several stays a group (and so a bug)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _http_refusal(scope: Scope, headers: Mapping[bytes, bytes]) -> tuple[int, str] | None:
    """An HTTP status for a request that cannot be a gRPC call at all (the spec's answers)."""
    if scope.get("http_version") not in ("2", "3"):
        return 505, "gRPC needs HTTP/2\n"
    if scope["method"] != "POST":
        return 405, "gRPC calls are POST requests\n"
    content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    if content_type not in _CONTENT_TYPES:
        return 415, "this gRPC server speaks application/grpc (protobuf) only\n"
    return None


async def _drain(receive: Receive) -> None:
    """Consume the request body (up to its end or the client's disconnect)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _send_plain(send: Send, status: int, text: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if status == 405:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode(), "more_body": False})


async def _serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer hypercorn's lifespan protocol (it crashes at startup if an app just returns)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _peer(client: Iterable[Any] | None) -> tuple[str, int] | None:
    if client is None:
        return None
    host, port = tuple(client)[:2]
    return str(host), int(port)
