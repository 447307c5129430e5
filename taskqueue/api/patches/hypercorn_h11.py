"""Hypercorn's HTTP/1.1 protocol, writing a response in one piece.

Hypercorn 0.18 writes each part of a response as it gets it: the status line and headers, the
body, and the body's end (no bytes at all when the length was declared), each through the
connection's write lock, a shielded cancel scope and a ``send`` system call of its own. A REST
submit's answer is a few hundred bytes, so those three writes were most of what the server did
to send it, and the client read it in up to three packets.

:class:`CoalescingH11Protocol` holds the head of a response whose length is declared
(``content-length``) until its body comes, and writes both at once. The ASGI spec lets a server
wait for the first body message before it sends the head; the REST app sends that message
right after the head (:func:`taskqueue.api.rest.send.send_response`). A response without a
declared length (a stream, such as ``/api/v1/events``) is written as hypercorn wrote it, head
first, so a stream's client has its headers before the first event. Anything else the
connection must write (an interim response, the close) first writes what is held.

Every response's status line also carries its reason phrase (``HTTP/1.1 201 Created``), which
hypercorn leaves empty: allowed, but what people and old tools reading a raw exchange expect.
"""

from __future__ import annotations

from http import HTTPStatus
from itertools import chain
from typing import Final

import h11
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import H11SendableEvent

#: The reason phrase of each status code (``b""`` for one HTTP does not name).
REASONS: Final[dict[int, bytes]] = {status.value: status.phrase.encode() for status in HTTPStatus}


class CoalescingH11Protocol(H11Protocol):
    """HTTP/1.1 as hypercorn serves it, each response of declared length in one write."""

    #: The head of the response being sent, not written yet.
    _held: bytes = b""

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Response) and event.status_code >= 200:
            headers = list(chain(event.headers, self.config.response_headers("h11")))
            if self.keep_alive_requests >= self.config.keep_alive_max_requests:
                headers.append((b"connection", b"close"))
            head = self._encode(_response(event.status_code, headers))
            if _declares_length(event):
                self._held = head
            else:
                await self._write(head)
        elif isinstance(event, Body):
            await self._write(self._encode(h11.Data(data=event.data)))
        elif isinstance(event, EndBody):
            await self._write(self._encode(h11.EndOfMessage()))
        else:
            await self._write(b"")
            await super().stream_send(event)

    async def _send_error_response(self, status_code: int) -> None:
        """Hypercorn's answer to a request it could not take (malformed, too large), with
        its reason phrase."""
        headers = [(b"content-length", b"0"), (b"connection", b"close")]
        headers += self.config.response_headers("h11")
        await self._write(self._encode(_response(status_code, headers)))

    def _encode(self, event: H11SendableEvent) -> bytes:
        """The bytes of ``event``: none if the peer broke the protocol (as hypercorn does)."""
        try:
            return self.connection.send(event) or b""
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return b""

    async def _write(self, data: bytes) -> None:
        """Write what is held, then ``data``, in one piece (nothing if both are empty)."""
        held, self._held = self._held, b""
        if held or data:
            await self.send(RawData(data=held + data))


def _response(status_code: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
    return h11.Response(
        status_code=status_code, headers=headers, reason=REASONS.get(status_code, b"")
    )


def _declares_length(response: Response) -> bool:
    return any(name.lower() == b"content-length" for name, _ in response.headers)
