"""One HTTP request as the REST app reads it from its ASGI scope and messages.

The body is read only when an operation takes one, within a size limit (413) and a time limit
(408). :meth:`Request.discard` reads what an early refusal left unread: over HTTP/1.1 the
connection can carry the next request only once this one's body has all arrived (hypercorn
closes it otherwise, without telling the client beforehand).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl

import trio

from taskqueue.api.errors import ApiError
from taskqueue.numerals import natural

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

#: How long a client may take to send its request body.
BODY_TIMEOUT: Final = 30.0
_HTTP1: Final = frozenset({"1.0", "1.1"})


class ClientGone(Exception):
    """The client went away before its request body had arrived: there is no one to answer."""


class Request:
    """What the app knows of a request: method, path, query, headers, and its body on demand."""

    __slots__ = ("_headers", "_receive", "_state", "method", "path", "received", "scope")

    def __init__(self, scope: MutableMapping[str, Any], receive: Receive) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self._receive = receive
        self._headers: dict[str, str] | None = None
        #: Body bytes received so far.
        self.received = 0
        # "open": more body may come; "done": it all arrived; "abandoned": no more is read.
        self._state = "open"

    @property
    def headers(self) -> dict[str, str]:
        """The request headers by lowercase name; the first of a repeated one."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for name, value in self.scope["headers"]:
                headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
            self._headers = headers
        return self._headers

    def query(self) -> list[tuple[str, str]]:
        """The query parameters in order, percent-decoded, blank values kept."""
        raw: bytes = self.scope.get("query_string", b"")
        if not raw:
            return []
        return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)

    @property
    def http1(self) -> bool:
        return self.scope.get("http_version") in _HTTP1

    @property
    def mimetype(self) -> str:
        """The Content-Type without its parameters, in lowercase ("" when there is none)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        text = self.headers.get("content-length")
        return None if text is None else natural(text)

    @property
    def body_pending(self) -> bool:
        """Whether body bytes may still be on their way (some were declared, not all read)."""
        if self._state == "done":
            return False
        length = self.content_length
        return (length is not None and length > self.received) or (
            length is None and "transfer-encoding" in self.headers
        )

    async def body(self, limit: int) -> bytes:
        """The whole body; ApiError 413 past ``limit`` bytes, 408 past ``BODY_TIMEOUT``."""
        length = self.content_length
        if length is not None and length > limit:
            self._state = "abandoned"
            raise too_large(limit)
        chunks: list[bytes] = []
        with trio.move_on_after(BODY_TIMEOUT):
            while self._state == "open":
                chunk = await self._next_chunk()
                if self.received > limit:
                    self._state = "abandoned"
                    raise too_large(limit)
                if chunk:
                    chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._state = "abandoned"
        raise ApiError(
            408,
            "DEADLINE_EXCEEDED",
            "Request timeout",
            f"the request body did not arrive within {BODY_TIMEOUT:g} s",
        )

    def discardable(self, limit: int) -> bool:
        """Whether the rest of the body may still be read and dropped: it is not known to be
        over ``limit`` bytes, nor given up on."""
        length = self.content_length
        return self._state != "abandoned" and (length is None or length <= limit)

    async def discard(self, limit: int) -> bool:
        """Read and drop the rest of the body, up to ``limit`` bytes in all and within
        ``BODY_TIMEOUT``. Whether it all arrived (else the connection closes after the
        response)."""
        if not self.discardable(limit):
            return False
        with trio.move_on_after(BODY_TIMEOUT):
            while self._state == "open" and self.received <= limit:
                await self._next_chunk()
        return self._state == "done"

    async def _next_chunk(self) -> bytes:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._state = "abandoned"
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        self.received += len(chunk)
        if not message.get("more_body", False):
            self._state = "done"
        return chunk


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "RESOURCE_EXHAUSTED",
        "Payload too large",
        f"the request body is over the limit of {limit} bytes (server.max_request_bytes)",
    )
