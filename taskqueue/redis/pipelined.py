"""One Redis connection shared by many trio tasks: automatic pipelining.

Each caller queues its packed command and waits. A writer task sends whatever is queued in one
write; a reader task parses the replies as they arrive and hands each to the oldest waiter,
since Redis answers one connection's commands in the order it received them (ioredis does the
same for Node). So commands that many tasks issue at about the same time cost one write, one
read and one Redis event-loop turn between them instead of one each, and no caller waits for
another's whole round trip as it would for a pooled connection. A command that finds the
connection idle (nothing in flight) is sent by its caller at once instead: a lone command
(an idle worker's claim, an awaited submit) then costs one scheduler round less, and those
issued right after it, while it is in flight, still leave together.

The reader and writer are trio *system* tasks: they belong to no caller's nursery, so a
cancelled caller cannot take the connection down with it, and the client needs no ``async
with``. They end when the connection is lost or closed, or when ``trio.run`` ends.

Cancellation is safe: a caller cancelled while its command is queued or in flight stops
waiting at once, but its command still goes out (it may run) and its reply is read and
dropped, so every later reply still reaches its own caller.

Only commands that leave the connection as they found it belong here: no blocking commands
(BLPOP, XREAD BLOCK...) that would hold up everyone queued behind them, no SUBSCRIBE, SELECT or
MULTI on its own; :func:`taskqueue.redis.commands.needs_own_connection` tells them apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import outcome
import trio

from taskqueue.redis.connection import Command, Connection, pack_commands
from taskqueue.redis.errors import RedisConnectionError


class _Waiter:
    """A caller waiting for the reply of one command (``replies`` is None: it gets the reply
    itself) or the list of replies of ``count`` (its task is None once it stopped waiting:
    the replies are then read and dropped)."""

    __slots__ = ("count", "replies", "task")

    def __init__(self, task: trio.lowlevel.Task, count: int | None) -> None:
        self.task: trio.lowlevel.Task | None = task
        self.count = count or 1
        self.replies: list[Any] | None = None if count is None else []


class PipelinedConnection:
    """A :class:`Connection` on which any number of tasks may have commands in flight.

    When the connection breaks, every caller waiting on it gets a
    :class:`RedisConnectionError` (its command may or may not have run) and so does every
    later one: :attr:`lost` is set, and the owner replaces the connection.
    """

    __slots__ = (
        "_conn",
        "_detached",
        "_outbox",
        "_read_scope",
        "_waiting",
        "_write_scope",
        "_writer",
        "lost",
        "noticed",
        "writes",
    )

    def __init__(self, conn: Connection) -> None:
        """Take over ``conn`` (opened, authenticated; nothing else may use it after this) and
        start its reader and writer tasks; needs a running trio loop."""
        self._conn = conn
        self._outbox: list[bytes] = []
        self._waiting: deque[_Waiter] = deque()
        # The writer task while it is parked with nothing to send, for callers to wake.
        self._writer: trio.lowlevel.Task | None = None
        self._read_scope = trio.CancelScope()
        self._write_scope = trio.CancelScope()
        self._detached = False
        #: Why the connection is unusable, once it is.
        self.lost: RedisConnectionError | None = None
        #: Whether a caller saw :attr:`lost` (a loss nobody saw, such as the server closing an
        #: idle connection, is the owner's to report to its next caller).
        self.noticed = False
        #: How many writes it made: fewer than the commands sent is the pipelining at work.
        self.writes = 0
        where = str(conn.address)
        trio.lowlevel.spawn_system_task(self._read_loop, name=f"redis reader ({where})")
        trio.lowlevel.spawn_system_task(self._write_loop, name=f"redis writer ({where})")

    @property
    def address(self) -> str:
        return str(self._conn.address)

    @property
    def idle(self) -> bool:
        """Usable, and no command is in flight (none waits for a reply)."""
        return self.lost is None and not self._waiting

    def detach(self) -> Connection:
        """Stop sharing the :attr:`idle` connection and return it for one task's use.

        Its reader and writer stop at once (cancelling them aborts their waits before this
        returns, so neither touches the socket again) and this object acts as if lost.
        """
        assert self.idle, "only an idle connection can be handed over"
        self._detached = True
        self._lose(RedisConnectionError(f"connection to {self._conn.address} was handed over"))
        self.noticed = True
        return self._conn

    async def execute(self, command: Command) -> Any:
        """Run one command and return its reply; an error reply raises :class:`ResponseError`."""
        reply = await self._call(pack_commands((command,)), None)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` back to back (nothing of another caller's between them) and return
        their replies, error replies in place as :class:`ResponseError` instances."""
        if not commands:
            await trio.lowlevel.checkpoint()
            return []
        replies: list[Any] = await self._call(pack_commands(commands), len(commands))
        return replies

    async def _call(self, payload: bytes, count: int | None) -> Any:
        if self.lost is not None:
            self.noticed = True
            raise _copy(self.lost)
        waiter = _Waiter(trio.lowlevel.current_task(), count)
        writer = self._writer
        if writer is not None and not self._waiting:
            # Idle (nothing in flight, the writer parked): send it now, sparing the writer's
            # scheduler round; only what the socket does not take waits for the writer.
            rest = self._conn.try_write(payload)
            if len(rest) < len(payload):
                self.writes += 1
            payload = rest
        # The payload and its waiter are queued together, so replies and waiters line up.
        self._waiting.append(waiter)
        if payload:
            self._outbox.append(payload)
            if writer is not None:
                self._writer = None
                trio.lowlevel.reschedule(writer)

        def abort(_: object) -> trio.lowlevel.Abort:
            waiter.task = None  # its replies still come, and are dropped
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    async def _write_loop(self) -> None:
        try:
            with self._write_scope:
                while True:
                    if not self._outbox:
                        self._writer = trio.lowlevel.current_task()
                        await trio.lowlevel.wait_task_rescheduled(self._unpark_writer)
                        continue
                    outbox, self._outbox = self._outbox, []
                    self.writes += 1
                    await self._conn.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
        except Exception as exc:  # a system task must not raise: that would crash trio.run
            self._lose(exc)

    def _unpark_writer(self, _: object) -> trio.lowlevel.Abort:
        self._writer = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _read_loop(self) -> None:
        conn, waiting, reschedule = self._conn, self._waiting, trio.lowlevel.reschedule
        try:
            with self._read_scope:
                while True:
                    for reply in await conn.read_replies():
                        if not waiting:
                            raise RedisConnectionError(
                                f"connection to {conn.address} sent a reply nobody asked for"
                            )
                        waiter = waiting[0]
                        replies = waiter.replies
                        if replies is None:
                            waiting.popleft()
                            if waiter.task is not None:
                                reschedule(waiter.task, outcome.Value(reply))
                            continue
                        replies.append(reply)
                        if len(replies) == waiter.count:
                            waiting.popleft()
                            if waiter.task is not None:
                                reschedule(waiter.task, outcome.Value(replies))
        except Exception as exc:
            self._lose(exc)
        finally:
            # Also when trio.run ends and cancels this task: nothing is lost that anyone
            # would hear of, but the connection must not be used again.
            if self.lost is None:
                self._lose(RedisConnectionError(f"connection to {conn.address} is closed"))
                self.noticed = True
            if not self._detached:
                await conn.aclose()

    def _lose(self, exc: BaseException) -> None:
        """Mark the connection lost and fail every waiter with its own copy of the error."""
        if self.lost is not None:
            return
        if isinstance(exc, RedisConnectionError):
            error = exc
        else:  # not an I/O error (those arrive converted): a bug here, surfaced to the callers
            error = RedisConnectionError(f"connection to {self._conn.address} failed: {exc!r}")
            error.__cause__ = exc
        self.lost = error
        if not self._detached:
            self._conn.broken = True
        self._outbox.clear()
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if waiter.task is not None:
                self.noticed = True
                trio.lowlevel.reschedule(waiter.task, outcome.Error(_copy(error)))
        self._read_scope.cancel()
        self._write_scope.cancel()

    def close(self) -> None:
        """Stop using the connection; waiters get a :class:`RedisConnectionError` and the
        reader closes the socket as it ends."""
        self._lose(RedisConnectionError(f"connection to {self._conn.address} is closed"))
        self.noticed = True


def _copy(error: RedisConnectionError) -> RedisConnectionError:
    """A fresh exception like ``error`` for one caller (one instance raised in many tasks
    would collect all their tracebacks)."""
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__
    return copy
