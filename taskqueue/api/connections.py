"""What one server lets its connections hold: how many there are, and how much request body
each may buffer. The hypercorn hooks that apply them are in
:mod:`taskqueue.api.patches.hypercorn_h2`; this module holds the rules and the refusals.

A connection past ``server.max_connections`` is answered and closed at once: over HTTP/1.1
with ``503 Service Unavailable``, ``Connection: close`` and ``Retry-After``; over HTTP/2 with
the server's SETTINGS and a GOAWAY (last stream 0, ``ENHANCE_YOUR_CALM``, the debug data
naming the limit), which tells a client that no stream was processed and it may retry.

An HTTP/2 connection may multiplex up to 100 requests; without a bound on what they buffer,
each could hold a whole ``server.max_request_bytes`` body at once (200 MiB per connection).
:class:`BodyBudget` bounds the request bodies a connection holds (received, and not yet
answered) to one largest request plus :data:`SMALL_REQUESTS_BYTES` for small ones beside it.
A stream whose data would go past it is reset with ``REFUSED_STREAM``, which HTTP/2 defines
as "not processed, safe to retry"; the stream already holding most is never refused, so a
large request always gets through.
"""

from __future__ import annotations

from typing import Final

import attrs
import h2.config
import h2.connection
import h2.errors

from taskqueue import _json

#: Room for small requests beside one of ``max_request_bytes`` on one HTTP/2 connection.
SMALL_REQUESTS_BYTES: Final = 256 * 2**10
#: The largest DATA chunk the server sends at once, whatever frame size the client allows
#: (up to 16 MiB): each chunk is copied twice on its way out.
MAX_SEND_CHUNK: Final = 64 * 2**10
#: How long a refused connection may take to say which protocol it speaks (and then read
#: what it sent) before it is closed.
REFUSAL_TIMEOUT: Final = 2.0

_H2_PREFACE: Final = b"PRI * HTTP/2.0"


@attrs.define
class ConnectionLimit:
    """Counts one server's open connections against ``maximum`` (0: no limit)."""

    maximum: int
    open: int = 0

    def acquire(self) -> bool:
        """Count one more connection; False (not counted) when it would go past the limit."""
        if self.maximum and self.open >= self.maximum:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


@attrs.define
class BodyBudget:
    """The request body bytes one HTTP/2 connection holds, by stream."""

    limit: int
    held: dict[int, int] = attrs.Factory(dict)
    total: int = 0

    @classmethod
    def for_requests_of(cls, max_request_bytes: int) -> BodyBudget:
        # + 5: a gRPC message's prefix comes on top of max_request_bytes.
        return cls(max_request_bytes + 5 + SMALL_REQUESTS_BYTES)

    def admit(self, stream_id: int, size: int) -> bool:
        """Count ``size`` more bytes for ``stream_id``; False (not counted) when that would
        go past the limit and another stream holds more than this one."""
        mine = self.held.get(stream_id, 0)
        if self.total + size > self.limit and any(
            held > mine for other, held in self.held.items() if other != stream_id
        ):
            return False
        self.held[stream_id] = mine + size
        self.total += size
        return True

    def release(self, stream_id: int) -> None:
        """The stream ended: what it held is free."""
        self.total -= self.held.pop(stream_id, 0)


def refusal(first_bytes: bytes, maximum: int) -> bytes:
    """What a connection past the limit is sent, given what it sent first."""
    reason = f"the server has its maximum of {maximum} connections (server.max_connections)"
    if first_bytes and _H2_PREFACE.startswith(first_bytes[: len(_H2_PREFACE)]):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        conn.close_connection(
            error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, additional_data=reason.encode()
        )
        return conn.data_to_send()
    body = _json.dumps(
        {
            "type": "urn:taskqueue:problem:too-many-connections",
            "title": "Too many connections",
            "status": 503,
            "detail": reason + "; retry later",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body
