"""Hypercorn's trio connection (``TCPServer``): guarded, limited, and cheaper per request.

:class:`GuardedTCPServer` replaces hypercorn 0.18's class
(:func:`taskqueue.api.patches.hypercorn_fixes.install` puts it in place) for three reasons:

**One connection's error ended the server.** Any exception out of a connection's task reached
``trio.serve_listeners``' nursery and cancelled every other connection. The guarded server
logs it and closes only that connection. It also lets a connection go as soon as its peer has
gone: hypercorn kept one whose client closed with a response unread (a reset) until the
keep-alive timer ran out, a minute of a socket and of a place under ``server.max_connections``
per such client (1,000 of them refused everyone).

**Connections are limited.** It counts connections against ``server.max_connections`` and
answers one past it in its protocol (see :mod:`taskqueue.api.connections`); the limits come
with hypercorn's Config (:func:`set_limits`), which the HTTP/2 protocol reads too.

**The keep-alive timer cost a task per request.** Hypercorn restarts it at the end of every
request: a lock, a cancelled task and a new one started with ``nursery.start`` (a nested
nursery and a handshake), and stops it at the start of the next (the lock again): a fifth of
the scheduler's work for a one-task REST submit. :class:`KeepAliveTimer` is one task per
connection instead, whose deadline moves: ``inf`` while a request is served, the keep-alive
timeout from the moment the connection goes idle. It closes the connection as hypercorn's
did: when the timeout passes while idle, or at once when the server is stopping and the
connection is (or becomes) idle. Writes of no bytes (the end of a body whose length was
declared) are not sent: each cost a lock, a shielded scope and a checkpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Final

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData
from hypercorn.events import Event as ConnectionEvent
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.typing import Event as HypercornEvent

from taskqueue.api.connections import REFUSAL_TIMEOUT, ConnectionLimit, refusal

log = logging.getLogger(__name__)

#: The attribute of hypercorn's Config that carries a server's :class:`Limits`.
_LIMITS: Final = "taskqueue_limits"


@attrs.frozen
class Limits:
    """What one server's connections may hold (see :mod:`taskqueue.api.connections`)."""

    connections: ConnectionLimit
    max_request_bytes: int


def set_limits(config: HypercornConfig, *, max_connections: int, max_request_bytes: int) -> None:
    """Have the server of ``config`` apply these limits to its connections."""
    setattr(config, _LIMITS, Limits(ConnectionLimit(max_connections), max_request_bytes))


def limits_of(config: HypercornConfig) -> Limits | None:
    limits: Limits | None = getattr(config, _LIMITS, None)
    return limits


class KeepAliveTimer:
    """One connection's keep-alive timer: a task whose deadline moves (see the module doc).

    It stands where hypercorn keeps a ``TrioSingleTask`` (``TCPServer.idle_task``), so its
    ``restart`` and ``stop`` are that class's: hypercorn calls them for "idle" and "busy".
    """

    def __init__(
        self, timeout: float, terminated: HypercornEvent, close: Callable[[], Awaitable[None]]
    ) -> None:
        self._timeout = timeout
        self._terminated = terminated
        self._close = close
        self._idle = True
        self._deadline = math.inf
        self._wait = trio.CancelScope()
        self._started = False
        self._ended = False

    def idle(self) -> None:
        """The connection serves nothing now: close it when the timeout passes."""
        self._idle = True
        now = trio.current_time()
        self._set_deadline(now if self._terminated.is_set() else now + self._timeout)

    def busy(self) -> None:
        """The connection serves a request: it stays open however long that takes."""
        self._idle = False
        self._set_deadline(math.inf)

    def end(self) -> None:
        """The connection is gone: the timer's task returns."""
        self._ended = True
        self._wait.cancel()

    def ended(self) -> bool:
        """Whether :meth:`end` was called (a method: the loop reads it anew after each wait)."""
        return self._ended

    async def restart(self, task_group: Any, action: object = None) -> None:
        """Hypercorn's call when the connection goes idle (the first one starts the task)."""
        if not self._started:
            self._started = True
            task_group.spawn(self._run)
        self.idle()

    async def stop(self) -> None:
        """Hypercorn's call when a request arrives."""
        self.busy()

    def _set_deadline(self, deadline: float) -> None:
        self._deadline = deadline
        self._wait.deadline = deadline

    async def _run(self) -> None:
        while not self.ended():
            with trio.CancelScope(deadline=self._deadline) as self._wait:
                if self._terminated.is_set():
                    await trio.sleep_forever()  # until idle() moves the deadline to now
                else:
                    await self._terminated.wait()
            if self.ended():
                return
            stopping = self._terminated.is_set()
            if self._idle and (stopping or trio.current_time() >= self._deadline):
                with trio.CancelScope(shield=True):
                    await self._close()
                return


class GuardedTCPServer(TCPServer):
    """One connection: an error in it closes it and is logged, never ending the server; one
    past ``server.max_connections`` is refused (see :mod:`taskqueue.api.connections`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_alive = KeepAliveTimer(
            self.config.keep_alive_timeout, self.context.terminated, self._initiate_server_close
        )
        self.idle_task = self.keep_alive  # type: ignore[assignment]

    async def run(self) -> None:
        limits = limits_of(self.config)
        if limits is not None and not limits.connections.acquire():
            await self._refuse(limits.connections.maximum)
            return
        try:
            await super().run()
        except* Exception as group:
            log.error(
                "an HTTP connection failed and was closed; the server carries on",
                exc_info=group,
            )
        finally:
            if limits is not None:
                limits.connections.release()

    async def protocol_send(self, event: ConnectionEvent) -> None:
        if not isinstance(event, RawData) or event.data:
            await super().protocol_send(event)

    async def _read_data(self) -> None:
        if self.config.read_timeout is None:
            await self._read_without_timeout()
        else:
            await super()._read_data()
        # The peer is gone (its EOF, or a reset: a client that closes with a response unread).
        # Hypercorn would still wait out the keep-alive timer (60 s here) before letting the
        # connection go, holding its socket and its place under server.max_connections.
        self.keep_alive.end()

    async def _read_without_timeout(self) -> None:
        """Hypercorn's read loop, without a cancel scope per read that has no deadline."""
        while True:
            try:
                data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
        await self.protocol.handle(Closed())

    async def _refuse(self, maximum: int) -> None:
        """Tell the client (in its protocol) that the server is full, and close."""
        stream: Any = self.stream
        with trio.move_on_after(REFUSAL_TIMEOUT), suppress(trio.BrokenResourceError, OSError):
            if isinstance(stream, trio.SSLStream):
                await stream.do_handshake()
                h2_alpn = stream.selected_alpn_protocol() == "h2"
                first = b"PRI * HTTP/2.0" if h2_alpn else b""
            else:
                first = await stream.receive_some(14)
            await stream.send_all(refusal(first, maximum))
            # Read until the client closes: closing with its data unread would reset the
            # connection, and the client might lose the answer.
            while await stream.receive_some(2**16):
                pass
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.aclose()
