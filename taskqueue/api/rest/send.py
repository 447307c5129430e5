"""Responses, and sending them over ASGI: a whole body in one message, or a stream.

hypercorn frames what is sent (``Content-Length``, or chunked for a stream over HTTP/1.1) and
drops the body of a HEAD response itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import aclosing
from typing import Any, Final

import trio

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Headers = list[tuple[bytes, bytes]]

JSON: Final = "application/json"
#: How long a (non-streaming) response may take to send.
RESPONSE_TIMEOUT: Final = 60.0


def _encode_headers(content_type: str, headers: Mapping[str, str] | None) -> Headers:
    encoded = [(b"content-type", content_type.encode("latin-1"))]
    if headers:
        encoded += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return encoded


class Response:
    """A reply sent in one piece: its status, headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str = JSON,
    ) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status
        self.headers = _encode_headers(content_type, headers)
        self.headers.append((b"content-length", str(len(self.body)).encode()))


class StreamingResponse:
    """A reply whose body is sent chunk by chunk as ``chunks`` yields them, for as long as the
    client reads it (``GET /api/v1/events``)."""

    __slots__ = ("chunks", "headers", "status")

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str,
    ) -> None:
        self.chunks = chunks
        self.status = status
        self.headers = _encode_headers(content_type, headers)


async def send_response(
    response: Response, send: Send, *, before_end: Callable[[], Awaitable[object]] | None = None
) -> None:
    """Send ``response``; one the client does not take within ``RESPONSE_TIMEOUT`` is cut off
    (hypercorn then closes the HTTP/1.1 connection, or resets the HTTP/2 stream).

    ``before_end`` runs once the client has the whole body but before the response is marked
    complete: hypercorn settles the connection's fate at that mark, so this is where the rest
    of a refused request's body is read (the client need not send it before it has its answer).
    """
    start = {"type": "http.response.start", "status": response.status, "headers": response.headers}
    more = before_end is not None
    with trio.move_on_after(RESPONSE_TIMEOUT) as scope:
        await send(start)
        await send({"type": "http.response.body", "body": response.body, "more_body": more})
    if before_end is not None and not scope.cancelled_caught:
        await before_end()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_stream(response: StreamingResponse, send: Send, receive: Receive) -> None:
    """Send ``response`` until its chunks end or the client goes away.

    The stream stops (its generator closed at once, so its ``finally`` blocks run) when the
    ``http.disconnect`` arrives. The last message, which completes the response, is sent
    outside that cancel scope: hypercorn sends the disconnect itself from inside that send,
    and cancelling it there would leave the connection half closed.
    """
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers}
    )
    gone = trio.Event()
    async with aclosing(response.chunks) as chunks, trio.open_nursery() as nursery:
        nursery.start_soon(_watch_disconnect, receive, gone, nursery.cancel_scope)
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception:
            log.exception("bug: a response stream failed after it started; it ends here")
        nursery.cancel_scope.cancel()
    if not gone.is_set():
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(receive: Receive, gone: trio.Event, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # the rest of a request body nobody reads
    gone.set()
    scope.cancel()
