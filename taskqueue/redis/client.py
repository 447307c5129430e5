"""The Redis client the broker uses: a shared pipelined connection, a pool, scripts, pub/sub."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from taskqueue.redis.commands import any_needs_own_connection, needs_own_connection
from taskqueue.redis.connection import Command, Connection
from taskqueue.redis.errors import (
    AuthenticationError,
    NoScriptError,
    RedisConnectionError,
    RedisError,
)
from taskqueue.redis.pipelined import PipelinedConnection
from taskqueue.redis.url import RedisAddress


@attrs.frozen
class Script:
    """A Lua script, run by ``EVALSHA`` with a fallback to ``EVAL`` when the server lost it."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


class Redis:
    """A client of one Redis server: one shared, automatically pipelined connection for most
    commands, and a pool of connections lent to one task at a time for the rest.

    :meth:`execute`, :meth:`pipeline` and :meth:`run_script` from any number of tasks share one
    :class:`~taskqueue.redis.pipelined.PipelinedConnection`: commands issued at about the same
    time leave in one write and their replies are matched in order, so fifty tasks each
    awaiting a command cost about what one pipeline of fifty does. Commands that would hold the
    connection up or change it for others (blocking ones such as ``BLPOP``, ``XREAD BLOCK``,
    ``MULTI``; see :func:`~taskqueue.redis.commands.needs_own_connection`) run on a
    connection of their own from the pool, as does :meth:`connection`. At most ``pool_size``
    connections are lent out at once, beside the shared one; a connection idle in one role is
    reused in the other, so a client used one way never holds more than it needs.

    Connections are made lazily. Making one retries with exponential backoff and jitter
    (``connect_attempts`` tries) before :class:`RedisConnectionError` reaches the caller; long
    outages are the caller's to ride out (the daemon's loops back off and retry). When one
    connection turns out broken, the idle ones are dropped too: after a server restart they are
    all dead, and finding that out one command at a time would fail one command each. A loss
    that no command was waiting on (the server closed the shared connection) is reported to
    the next command, as a pooled connection's is: the command that finds a connection dead
    fails, and the one after it reconnects.

    Two optional hooks let the daemon count trouble without this package knowing about
    metrics: ``on_error`` sees every :class:`RedisError` a command (or a subscription) raises
    to its caller, and ``on_reconnect`` is called when a connection is made after one was lost
    to a connection error. Both run in the caller's task and must be quick.

    An address that names a Redis Cluster (``redis+cluster://``) makes a
    :class:`~taskqueue.redis.cluster.ClusterRedis` instead, the same interface over every
    primary of the cluster.
    """

    def __new__(cls, address: RedisAddress, **kwargs: Any) -> Redis:
        if cls is Redis and address.cluster:
            from taskqueue.redis.cluster import ClusterRedis  # it builds on this module

            return super().__new__(ClusterRedis)
        return super().__new__(cls)

    def __init__(
        self,
        address: RedisAddress,
        *,
        pool_size: int = 16,
        connect_timeout: float = 5.0,
        connect_attempts: int = 3,
        on_error: Callable[[RedisError], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.connect_attempts = connect_attempts
        self.on_error = on_error
        self.on_reconnect = on_reconnect
        self._limiter = trio.CapacityLimiter(pool_size)
        self._idle: list[Connection] = []
        self._shared: PipelinedConnection | None = None
        self._sharing = trio.Lock()  # one task at a time replaces the shared connection
        self._closed = False
        # A connection was lost since the last one was made: the next one is a reconnect.
        self._lost = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Redis:
        return cls(RedisAddress.from_url(url), **kwargs)

    async def connect(self) -> Connection:
        """A new connection outside the pool (for pub/sub), with the pool's retry policy."""
        delay = 0.05
        for attempt in range(1, self.connect_attempts + 1):
            try:
                conn = await Connection.open(self.address, connect_timeout=self.connect_timeout)
            except AuthenticationError:
                raise  # a wrong password stays wrong: no point in retrying
            except RedisConnectionError:
                if attempt == self.connect_attempts:
                    raise
            else:
                if self._lost:
                    self._lost = False
                    if self.on_reconnect is not None:
                        self.on_reconnect()
                return conn
            await trio.sleep(random.uniform(0, delay))
            delay *= 4
        raise AssertionError("unreachable")

    def _failed(self, error: RedisError) -> None:
        """A command raised ``error`` to its caller: remember a lost connection, tell the hook."""
        if isinstance(error, RedisConnectionError):
            self._lost = True
        if self.on_error is not None:
            self.on_error(error)

    def _check_open(self) -> None:
        if self._closed:
            raise RedisConnectionError("the Redis client is closed")

    # -- the shared connection ---------------------------------------------------------------

    async def _replace_shared(self) -> PipelinedConnection:
        """The shared connection, made anew (or adopted from the idle ones) if it was lost."""
        async with self._sharing:
            shared = self._shared
            if shared is not None and shared.lost is None:
                return shared  # another task replaced it meanwhile
            self._check_open()
            self._shared = None
            if shared is not None and not shared.noticed:
                # Lost with nothing in flight: this command is the one that finds out.
                shared.noticed = True
                await self._drop_idle()
                raise shared.lost or AssertionError("unreachable")
            conn = self._idle.pop() if self._idle else await self.connect()
            try:
                self._check_open()  # it may have been closed while this connected
            except RedisConnectionError:
                await conn.aclose()
                raise
            self._shared = shared = PipelinedConnection(conn)
            return shared

    # -- connections lent to one task ----------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Borrow a connection for a sequence of commands; it returns to the pool afterwards."""
        conn = await self._borrow()
        try:
            yield conn
        finally:
            await self._give_back(conn)

    async def _borrow(self) -> Connection:
        # The fast path skips the limiter's scheduling checkpoint: the command that follows
        # checkpoints anyway.
        self._check_open()
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            await self._limiter.acquire()
        try:
            if self._idle:
                return self._idle.pop()
            shared = self._shared
            if shared is not None and shared.idle:
                self._shared = None
                return shared.detach()
            return await self.connect()
        except BaseException:
            self._limiter.release()
            raise

    async def _give_back(self, conn: Connection) -> None:
        try:
            if conn.broken or self._closed:
                await conn.aclose()
                shared = self._shared
                if shared is not None and shared.lost is not None:
                    shared.noticed = True  # this caller heard of the trouble already
                await self._drop_idle()
            else:
                self._idle.append(conn)
        finally:
            self._limiter.release()

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    # The ``except RedisError`` around each command costs nothing until an error happens.

    async def execute(self, *args: str | bytes | int | float) -> Any:
        try:
            if needs_own_connection(args):
                conn = await self._borrow()
                try:
                    return await conn.execute(*args)
                finally:
                    await self._give_back(conn)
            shared = self._shared  # inline: one coroutine less per command
            if shared is None or shared.lost is not None:
                shared = await self._replace_shared()
            return await shared.execute(args)
        except RedisError as exc:
            self._failed(exc)
            raise

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in one round trip, back to back; error replies come back in place,
        unraised (and uncounted by ``on_error``: the caller decides whether they are errors)."""
        try:
            if any_needs_own_connection(commands):
                conn = await self._borrow()
                try:
                    return await conn.execute_many(commands)
                finally:
                    await self._give_back(conn)
            shared = self._shared
            if shared is None or shared.lost is not None:
                shared = await self._replace_shared()
            return await shared.execute_many(commands)
        except RedisError as exc:
            self._failed(exc)
            raise

    async def run_script(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> Any:
        """Run ``script`` by its SHA; if the server does not know it, send the source once."""
        try:
            shared = self._shared
            if shared is None or shared.lost is not None:
                shared = await self._replace_shared()
            try:
                return await shared.execute(("EVALSHA", script.sha, len(keys), *keys, *args))
            except NoScriptError:
                return await shared.execute(("EVAL", script.source, len(keys), *keys, *args))
        except RedisError as exc:
            self._failed(exc)
            raise

    async def ping(self) -> bool:
        return bool(await self.execute("PING") == "PONG")

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        """A pub/sub subscription on a connection of its own, closed on exit."""
        try:
            conn = await self.connect()
            try:
                subscription = Subscription(conn)
                await subscription.subscribe(*channels)
                yield subscription
            finally:
                await conn.aclose()
        except RedisError as exc:
            self._failed(exc)
            raise

    async def aclose(self) -> None:
        self._closed = True
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.close()
        await self._drop_idle()


class Subscription:
    """Messages published to the subscribed channels, as ``(channel, data)`` pairs."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: set[str] = set()

    async def subscribe(self, *channels: str) -> None:
        """Subscribe and wait for the server's confirmation, so no later publish is missed."""
        await self._conn.send("SUBSCRIBE", *channels)
        waiting = set(channels)
        while waiting:
            kind, channel, *_ = await self._conn.read_push()
            if kind == "subscribe":
                waiting.discard(channel)

    async def get_message(self) -> tuple[str, str]:
        while True:
            reply = await self._conn.read_push()
            if reply[0] == "message":
                return reply[1], reply[2]

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, str]:
        return await self.get_message()
