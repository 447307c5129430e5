"""One Redis connection on a trio stream, speaking RESP2 through ``hiredis``.

Why our own: under trio, the general-purpose async clients cost 5-10x more per command than a
plain stream with hiredis parsing (docs/architecture.md has the figures). This module does only
what the queue needs: pipelined commands, AUTH/SELECT, TLS and unix sockets.

A :class:`Connection` serves one task at a time (the pool's exclusive connections, pub/sub);
:class:`~taskqueue.redis.pipelined.PipelinedConnection` drives one for many tasks at once
through :meth:`Connection.write` and :meth:`Connection.read_replies`.

Cancellation: a command cancelled after it was sent leaves its reply in flight, which would be
read as the answer to the next command. So any exception or cancellation during a command marks
the connection ``broken``; the pool then closes it instead of reusing it.
"""

from __future__ import annotations

import socket as stdlib_socket
from collections.abc import Sequence
from typing import Any

import attrs
import hiredis
import trio

from taskqueue.redis.errors import NotRedisError, RedisConnectionError, RedisError, reply_error
from taskqueue.redis.url import RedisAddress

Arg = str | bytes | int | float
Command = Sequence[Arg]

_READ_SIZE = 256 * 1024


def pack_commands(commands: Sequence[Command]) -> bytes:
    """``commands`` in RESP, ready to be written in one go."""
    pack = hiredis.pack_command
    if len(commands) == 1:
        payload: bytes = pack(tuple(commands[0]))  # type: ignore[arg-type]
        return payload
    return b"".join([pack(tuple(c)) for c in commands])  # type: ignore[arg-type]


class Connection:
    """One connection; not for concurrent use (the pool lends it to one task at a time)."""

    __slots__ = ("_reader", "_sock", "_stream", "address", "broken")

    def __init__(self, stream: trio.abc.Stream, address: RedisAddress) -> None:
        self._stream = stream
        # A plain socket is driven directly (one scheduler round trip per command instead of
        # three through trio.SocketStream); TLS goes through trio's stream API.
        self._sock: stdlib_socket.socket | None = None
        if isinstance(stream, trio.SocketStream):
            self._sock = stream.socket._sock  # type: ignore[attr-defined]
        self._reader = hiredis.Reader(encoding="utf-8")
        self.address = address
        self.broken = False

    @classmethod
    async def open(cls, address: RedisAddress, *, connect_timeout: float = 5.0) -> Connection:
        """Connect, negotiate TLS, authenticate and select the database in ``connect_timeout``.

        A Sentinel address is first resolved to its primary (see :func:`primary_of`), and the
        server must say it is the primary: right after a failover a sentinel may still name
        the old one, and a write to a replica would fail anyway.
        """
        if address.sentinels:
            with trio.move_on_after(connect_timeout) as resolving:
                primary = await primary_of(address)
            if resolving.cancelled_caught:
                raise RedisConnectionError(f"timed out asking the sentinels of {address}")
            conn = await cls.open(primary, connect_timeout=connect_timeout)
            try:
                role = await conn.execute("ROLE")
            except BaseException:
                await conn.aclose()
                raise
            if not role or role[0] != "master":
                await conn.aclose()
                raise RedisConnectionError(
                    f"{primary.host}:{primary.port}, named by the sentinels of {address}, is "
                    "not a primary (a failover is under way)"
                )
            return conn
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(connect_timeout):
                if address.path:
                    stream = await trio.open_unix_socket(address.path)
                else:
                    stream = await trio.open_tcp_stream(address.host, address.port)
                if address.tls:
                    tls_stream = trio.SSLStream(
                        stream, address.ssl_context(), server_hostname=address.host
                    )
                    await tls_stream.do_handshake()
                    stream = tls_stream
                conn = cls(stream, address)
                if address.password is not None:
                    if address.username:
                        await conn.execute("AUTH", address.username, address.password)
                    else:
                        await conn.execute("AUTH", address.password)
                if address.db:
                    await conn.execute("SELECT", address.db)
                return conn
        except BaseException as exc:
            # Whatever failed (timeout, refused AUTH, cancellation), don't leak the socket.
            if stream is not None:
                await trio.aclose_forcefully(stream)
            if isinstance(exc, trio.TooSlowError):
                raise RedisConnectionError(f"timed out connecting to {address}") from None
            # RedisError first: AuthenticationError is an OSError too (via ConnectionError) and
            # must reach the caller as itself, not re-wrapped as a plain connection error.
            if isinstance(exc, OSError | trio.BrokenResourceError) and not isinstance(
                exc, RedisError
            ):
                raise RedisConnectionError(f"cannot connect to {address}: {_reason(exc)}") from exc
            raise

    async def execute(self, *args: str | bytes | int | float) -> Any:
        """Run one command and return its reply; an error reply raises :class:`ResponseError`."""
        (reply,) = await self.execute_many((args,))
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write and read all their replies (a pipeline).

        Error replies are returned in place as :class:`ResponseError` instances, not raised, so
        the caller can tell which command failed.
        """
        if self.broken:
            raise RedisConnectionError(f"connection to {self.address} is closed")
        payload = pack_commands(commands)
        with _DiscardOnError(self):
            await self._send_all(payload)
            return [await self._read_reply() for _ in range(len(commands))]

    async def read_push(self) -> Any:
        """Read one unsolicited reply (a pub/sub message) without sending anything."""
        with _DiscardOnError(self):
            return await self._read_reply()

    async def send(self, *args: str | bytes | int | float) -> None:
        """Send a command whose replies arrive later as pushes (SUBSCRIBE and friends)."""
        with _DiscardOnError(self):
            await self._send_all(hiredis.pack_command(args))  # type: ignore[arg-type]

    async def write(self, payload: bytes) -> None:
        """Send ``payload`` (commands packed by :func:`pack_commands`) as it is."""
        with _DiscardOnError(self):
            await self._send_all(payload)

    def try_write(self, payload: bytes) -> bytes:
        """Send what of ``payload`` the socket takes now, without waiting, and return the
        rest (all of it over TLS, or when the send failed: :meth:`write` then sends it, and
        reports the failure)."""
        sock = self._sock
        if sock is None:
            return payload
        try:
            sent = sock.send(payload)
        except OSError:
            return payload
        return payload[sent:]

    async def read_replies(self) -> list[Any]:
        """Wait for the server and return every complete reply it has sent (at least one).

        Error replies are in place as :class:`ResponseError` instances, as in
        :meth:`execute_many`. Cancelled, it leaves the connection as it is: no reply was
        taken, and the caller knows whether one is still due.
        """
        with _DiscardOnError(self, cancel_breaks=False):
            replies: list[Any] = []
            while not replies:
                await self._receive()
                reply = self._parse()
                while reply is not False:
                    replies.append(reply)
                    reply = self._parse()
            return replies

    async def _read_reply(self) -> Any:
        while True:
            reply = self._parse()
            if reply is not False:
                return reply
            await self._receive()

    def _parse(self) -> Any:
        """The next complete reply in what was received, or ``False`` if there is none yet."""
        try:
            reply = self._reader.gets()
        except hiredis.ProtocolError as exc:
            raise NotRedisError(
                f"{self.address} does not speak the Redis protocol ({exc}): is redis.url "
                "the address of a Redis server (rediss:// for TLS)?"
            ) from None
        if isinstance(reply, hiredis.ReplyError):
            return reply_error(str(reply))
        return reply

    async def _receive(self) -> None:
        data = await self._receive_some()
        if not data:
            raise RedisConnectionError(f"connection to {self.address} closed by the server")
        self._reader.feed(data)

    async def _send_all(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            await self._stream.send_all(data)
            return
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
            else:
                view = view[sent:]

    async def _receive_some(self) -> bytes:
        sock = self._sock
        if sock is None:
            return bytes(await self._stream.receive_some(_READ_SIZE))
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return sock.recv(_READ_SIZE)
            except BlockingIOError:
                continue

    async def aclose(self) -> None:
        self.broken = True
        await trio.aclose_forcefully(self._stream)


class _DiscardOnError:
    """Marks the connection unusable when a command is interrupted, whatever interrupted it.

    Cancellation and other exceptions pass through unchanged; I/O errors become
    :class:`RedisConnectionError` with the original as their cause. With ``cancel_breaks``
    false, a cancellation alone leaves the connection usable.
    """

    __slots__ = ("_cancel_breaks", "_conn")

    def __init__(self, conn: Connection, *, cancel_breaks: bool = True) -> None:
        self._conn = conn
        self._cancel_breaks = cancel_breaks

    def __enter__(self) -> None:
        pass

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or (not self._cancel_breaks and isinstance(exc, trio.Cancelled)):
            return
        self._conn.broken = True
        if isinstance(
            exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError
        ) and not isinstance(exc, RedisError):  # ours already name the address: no re-wrap
            raise RedisConnectionError(
                f"connection to {self._conn.address} lost: {_reason(exc)}"
            ) from exc


def _reason(exc: BaseException) -> str:
    """The text of ``exc``, or of its cause when it has none (trio's ``BrokenResourceError``
    around an ``ssl.SSLError`` says nothing itself: the certificate problem is in the cause)."""
    text = str(exc)
    if not text and exc.__cause__ is not None:
        text = str(exc.__cause__)
    return text or type(exc).__name__


async def primary_of(address: RedisAddress) -> RedisAddress:
    """``address`` with ``host``/``port`` of the primary its sentinels name for its service
    (``SENTINEL get-master-addr-by-name``), asking one sentinel after another."""
    reasons = []
    for host, port in address.sentinels:
        sentinel = RedisAddress(host=host, port=port)
        try:
            conn = await Connection.open(sentinel)
        except RedisConnectionError as exc:
            reasons.append(str(exc))
            continue
        try:
            reply = await conn.execute("SENTINEL", "get-master-addr-by-name", address.service or "")
        except (RedisError, trio.BrokenResourceError) as exc:
            reasons.append(f"{host}:{port}: {exc}")
            continue
        finally:
            await conn.aclose()
        if reply:
            return attrs.evolve(address, host=str(reply[0]), port=int(reply[1]), sentinels=())
        reasons.append(f"{host}:{port} knows no service {address.service!r}")
    raise RedisConnectionError(f"no sentinel of {address} named a primary: {'; '.join(reasons)}")
