"""Hypercorn's trio HTTP/2 server made safe under sustained load.

Four faults of hypercorn 0.18 (and h2 4) are fixed here, by a subclass of its HTTP/2 protocol
that :func:`taskqueue.api.patches.hypercorn_fixes.install` puts in place before the server
starts:

**Finished streams were not reaped.** Hypercorn forgets a stream (its send buffer and its node
in the ``priority`` tree) only when the connection's single *send task* visits the stream again
after its response is complete. Under steady load that visit keeps being postponed: the send
task serves one stream per turn, it queues for the connection's write lock behind every
request's own writes, and the priority scheduler places each new stream ahead of the finished
ones. A response that ends with trailers (every gRPC call) is finished on the wire before that
visit, so the client sends the next call while the old stream stays in the tree. The tree grows
with every call until ``priority.TooManyStreamsError`` (at 1,000) kills the connection, and with
it, in hypercorn's trio worker, the whole server. Measured on this machine with 8 calls in
flight per connection: 470 unreaped streams after 1,000 calls; the server died in the second
thousand. Responses whose request task stops half-way (a cancelled handler, a response
timeout) were never reaped at all, and their client waited forever for the end of the stream.

:class:`ReapingH2Protocol` reaps a stream in the task that finishes it, at the moment it
finishes: when the body's end or the trailers are handed to h2, when the application stops
without finishing (the stream is then reset, so the client learns it), when the peer resets
it, and when the connection closes (which also wakes request tasks waiting to send). The tree
then never holds more than the streams that are open at that moment, which h2 caps at
``h2_max_concurrent_streams``. It also ignores PRIORITY frames, deprecated by RFC 9113, which
could otherwise add tree nodes for streams that never open, and request body data that arrives
for a stream whose response is already complete (a 413 sent while the client still uploads),
which made hypercorn raise ``KeyError`` out of the connection.

**A stream could wait for the send task without bound.** The send task picks the next stream
from a ``priority.PriorityTree``. Its weighted fair queueing moves a stream that is skipped
while it has nothing to send (waiting for its handler) ahead in virtual time, while each new
stream enters at the current time. Under sustained load, with new streams always arriving, a
stream that waited is then passed over by every newcomer: its response sits in its buffer, its
trailers wait behind it, and its client's deadline runs out. Simulated with the tree (30 open
streams, each served once and replaced by a new one): a stream that waited 50 turns before it
had data was not served in 100,000 turns (``tests/test_api_h2_scheduler.py`` plays it). With
the soak's client at 64 calls in flight per connection, one call in 10,000 waited 29.9 s for
the send task and hit its 30 s deadline: the soak's rare failure on a loaded machine.
:class:`RoundRobin` replaces the tree: the streams with data are served in turn, and one that
gets data joins the back of the line, so it waits at most one turn of each open stream (2 s at
most in the same runs). Priorities are ignored anyway (see below).

**A connection's memory had no bound.** A client may announce 16 MiB frames and huge
windows, and multiplex 100 requests whose bodies the application holds until they are
complete: 40 such connections took the daemon to 716 MiB. :class:`ReapingH2Protocol` sends
at most :data:`~taskqueue.api.connections.MAX_SEND_CHUNK` at once whatever frame size the
client allows, and holds a connection's request bodies to its
:class:`~taskqueue.api.connections.BodyBudget` (one ``server.max_request_bytes`` request plus
small ones), refusing a stream past it with REFUSED_STREAM. The limits
come with hypercorn's Config (:func:`taskqueue.api.patches.hypercorn_tcp.set_limits`).

**Every connection remembered 65,536 closed streams.** h2 keeps how each closed stream ended
(reset or not), to tell a frame still in flight for a stream it reset from a protocol error;
its default keeps the last 65,536 per connection, ~140 bytes each. Under a steady load on a few
long-lived connections that is memory growing by ~140 bytes a request until 9 MiB per
connection (measured: +0.7 MiB per 5,000 requests on 4 connections). Such frames arrive within
a round trip of the reset, while at most ``h2_max_concurrent_streams`` streams are open, so
:data:`CLOSED_STREAMS_KEPT` endings suffice.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
from h2.utilities import SizeLimitDict
from hypercorn.events import Closed
from hypercorn.events import Event as ConnectionEvent
from hypercorn.protocol.events import (
    EndBody,
    EndData,
    Trailers,
)
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import BufferCompleteError, H2Protocol, StreamBuffer
from priority.priority import DeadlockError, DuplicateStreamError, MissingStreamError

from taskqueue.api.connections import (
    MAX_SEND_CHUNK,
    BodyBudget,
)
from taskqueue.api.patches.hypercorn_tcp import limits_of

log = logging.getLogger(__name__)

#: How many closed streams a connection's h2 state remembers the ending of (h2's default:
#: 65,536, about 140 bytes each, so a busy long-lived connection grew by 9 MiB; see above).
CLOSED_STREAMS_KEPT = 1_000

_GONE = (BufferCompleteError, KeyError, MissingStreamError, h2.exceptions.ProtocolError)


class RoundRobin:
    """The send task's scheduler: streams with data to send, each in its turn, in the order
    they got data (the part of ``priority.PriorityTree``'s interface hypercorn uses)."""

    def __init__(self) -> None:
        self._streams: set[int] = set()
        self._ready: dict[int, None] = {}  # an ordered set: the next one to serve first

    def __iter__(self) -> RoundRobin:
        return self

    def __next__(self) -> int:
        """The stream to serve now; it goes to the back of the line. DeadlockError (what the
        send task waits on) when no stream has data."""
        for stream_id in self._ready:
            del self._ready[stream_id]
            self._ready[stream_id] = None
            return stream_id
        raise DeadlockError("no stream has data to send")

    def insert_stream(self, stream_id: int, *args: Any, **kwargs: Any) -> None:
        if stream_id in self._streams:
            raise DuplicateStreamError(f"stream {stream_id} is already scheduled")
        self._streams.add(stream_id)
        self._ready[stream_id] = None

    def remove_stream(self, stream_id: int) -> None:
        self._known(stream_id)
        self._streams.discard(stream_id)
        self._ready.pop(stream_id, None)

    def block(self, stream_id: int) -> None:
        self._known(stream_id)
        self._ready.pop(stream_id, None)

    def unblock(self, stream_id: int) -> None:
        self._known(stream_id)
        self._ready.setdefault(stream_id, None)

    def reprioritize(self, stream_id: int, *args: Any, **kwargs: Any) -> None:
        """Priorities are ignored (PRIORITY frames never get here; see the protocol)."""

    def _known(self, stream_id: int) -> None:
        if stream_id not in self._streams:
            raise MissingStreamError(f"stream {stream_id} is not scheduled")


class ReapingH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol, reaping every stream as soon as it is finished, and serving
    the streams with data in turn."""

    #: How many streams this connection has reaped (tests read it).
    reaped: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.priority = RoundRobin()  # type: ignore[assignment]
        self.connection._closed_streams = SizeLimitDict(size_limit=CLOSED_STREAMS_KEPT)
        limits = limits_of(self.config)
        self.budget = (
            None if limits is None else BodyBudget.for_requests_of(limits.max_request_bytes)
        )
        #: How many streams this connection refused for its body budget (tests read it).
        self.refused = 0

    # -- what the request tasks send ------------------------------------------------------

    async def stream_send(self, event: StreamEvent) -> None:
        try:
            if isinstance(event, EndBody | EndData):
                await self._end_body(event.stream_id)
            elif isinstance(event, Trailers):
                await self._send_trailers(event.stream_id, event.headers)
            else:
                await super().stream_send(event)
        except _GONE:
            # The stream or the connection closed while this task waited to send: nothing
            # more can reach the peer, and the stream is already reaped.
            return

    async def _end_body(self, stream_id: int) -> None:
        """Send what is buffered, then END_STREAM, and forget the stream at once."""
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None:  # already finished by trailers, or reset
            return
        buffer.set_complete()
        if not await self._drain(stream_id, buffer):
            return
        self._reap(stream_id)
        self.connection.end_stream(stream_id)
        await self._flush()

    async def _send_trailers(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send what is buffered, then the trailers (which end the stream), and forget it."""
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None:
            return
        if not await self._drain(stream_id, buffer):
            return
        buffer.set_complete()
        self._reap(stream_id)
        self.connection.send_headers(stream_id, headers, end_stream=True)
        await self._flush()

    async def _drain(self, stream_id: int, buffer: StreamBuffer) -> bool:
        """Wait until the send task has handed all of ``buffer`` to h2.

        Returns False when the stream was reaped meanwhile (reset, or the connection closed).
        The send task passes a chunk to h2 in the same step as it empties the buffer, so once
        the buffer is empty every byte precedes whatever this task sends next.
        """
        if buffer.buffer:
            self.priority.unblock(stream_id)
            await self.has_data.set()
            await buffer.drain()
        return self.stream_buffers.get(stream_id) is buffer

    # -- what the send task does ----------------------------------------------------------

    async def _send_data(self, stream_id: int) -> None:
        """Send the next chunk of one stream's buffer (the send task's one step).

        Ending the stream is left to the request task (``_end_body``), so the send task
        never has to come back to a finished stream.
        """
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None:
            with suppress(MissingStreamError):
                self.priority.remove_stream(stream_id)
            return
        try:
            window = self.connection.local_flow_control_window(stream_id)
            # Whatever frame size the peer allows (up to 16 MiB), send at most MAX_SEND_CHUNK
            # at once: each chunk is copied on its way to the socket.
            frame = min(self.connection.max_outbound_frame_size, MAX_SEND_CHUNK)
            chunk_size = max(0, min(window, frame))
            data = await buffer.pop(chunk_size)
            if data:
                self.connection.send_data(stream_id, data)
                await self._flush()
            else:
                self.priority.block(stream_id)
        except (h2.exceptions.ProtocolError, MissingStreamError):
            # The stream closed under us (the peer reset it): drop it and wake its task.
            await self._abandon(stream_id)

    # -- what the peer and the connection do ----------------------------------------------

    async def handle(self, event: ConnectionEvent) -> None:
        if isinstance(event, Closed):
            # Nothing can be sent any more: wake every task waiting to send, so none waits
            # forever on a connection that is gone.
            for stream_id in list(self.stream_buffers):
                await self._abandon(stream_id)
        await super().handle(event)

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # One event at a time: whether a DATA frame's stream exists depends on the events
        # before it in the same batch (a request's HEADERS and DATA often arrive together).
        for event in events:
            if isinstance(event, h2.events.DataReceived) and self._over_budget(event):
                await self._refuse(event.stream_id, event.flow_controlled_length)
            elif self._wanted(event):
                await super()._handle_events([event])

    def _over_budget(self, event: h2.events.DataReceived) -> bool:
        """Whether ``event`` is body data its connection's budget cannot hold (a stream of
        it is then refused, see :class:`~taskqueue.api.connections.BodyBudget`)."""
        return (
            self.budget is not None
            and event.stream_id in self.streams
            and not self.budget.admit(event.stream_id, event.flow_controlled_length)
        )

    async def _refuse(self, stream_id: int, length: int) -> None:
        """Reset a stream with REFUSED_STREAM (not processed: safe to retry) and end it for
        the application; the data's flow control credit goes back to the connection."""
        self.refused += 1
        self.connection.acknowledge_received_data(length, stream_id)
        with suppress(h2.exceptions.ProtocolError):
            self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        await self._close_stream(stream_id)
        await self._flush()

    def _wanted(self, event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.PriorityUpdated):
            return False  # RFC 9113 deprecates priority signals; each one would add a node
        if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
            # Body data for a stream whose response is complete: give the flow control
            # credit back and drop it (hypercorn raised KeyError here).
            self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return False
        return True

    async def _close_stream(self, stream_id: int) -> None:
        """The stream ends for the application: it finished, stopped, or the peer reset it.

        A response that was finished is already reaped. One that was not (the request task
        stopped half-way) is reset with INTERNAL_ERROR, so the client does not wait forever.
        """
        if self.budget is not None:
            self.budget.release(stream_id)
        if stream_id in self.stream_buffers:
            with suppress(h2.exceptions.ProtocolError):  # already closed by the peer
                self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            await self._abandon(stream_id)
            if not self.closed:
                await self._flush()
        await super()._close_stream(stream_id)

    # -- bookkeeping ----------------------------------------------------------------------

    def _reap(self, stream_id: int) -> StreamBuffer | None:
        """Forget a stream's buffer and tree node (idempotent; never awaits)."""
        buffer = self.stream_buffers.pop(stream_id, None)
        with suppress(MissingStreamError):
            self.priority.remove_stream(stream_id)
        if buffer is not None:
            self.reaped += 1
        return buffer

    async def _abandon(self, stream_id: int) -> None:
        """Reap a stream that will send nothing more, waking a task blocked on its buffer."""
        buffer = self._reap(stream_id)
        if buffer is not None:
            await buffer.close()
            await self.has_data.set()
