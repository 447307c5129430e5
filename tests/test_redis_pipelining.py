"""Automatic pipelining: many trio tasks share one connection of ``taskqueue.redis.Redis``.

Commands issued together leave in one write, every caller gets its own reply (errors too), a
cancelled caller leaves the reply stream in order, and a lost connection fails everyone
waiting on it cleanly, the next command reconnecting. The server is held still with
``CLIENT PAUSE WRITE`` (from a second client: its reads still run) where a test needs commands
in flight, so no test depends on timing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from taskqueue.redis import Connection, Redis, RedisAddress, RedisConnectionError, ResponseError
from taskqueue.redis.connection import Command

COMMANDS_AT_ONCE = 200


def _info(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: value for key, value in pairs}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    pool = Redis.from_url(redis_url, connect_attempts=1)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    """Another client, to look at the server and to pause it."""
    pool = Redis.from_url(redis_url, connect_attempts=1)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write any connection makes, as the bytes written (by the writer task, or by a
    caller that found the connection idle)."""
    written: list[bytes] = []
    real_write, real_try_write = Connection.write, Connection.try_write

    async def recording_write(self: Connection, payload: bytes) -> None:
        written.append(payload)
        await real_write(self, payload)

    def recording_try_write(self: Connection, payload: bytes) -> bytes:
        rest = real_try_write(self, payload)
        written.append(payload[: len(payload) - len(rest)])
        return rest

    monkeypatch.setattr(Connection, "write", recording_write)
    monkeypatch.setattr(Connection, "try_write", recording_try_write)
    return written


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[RedisAddress]:
    attempts: list[RedisAddress] = []
    real_open = Connection.open

    async def recording_open(address: RedisAddress, *, connect_timeout: float = 5.0) -> Connection:
        attempts.append(address)
        return await real_open(address, connect_timeout=connect_timeout)

    monkeypatch.setattr(Connection, "open", recording_open)
    return attempts


async def _in_flight(client: Redis, commands: list[Command]) -> list[Any]:
    """Run each command in a task of its own, all at once; their replies (or the exception
    each raised) in order."""
    results: list[Any] = [None] * len(commands)

    async def one(i: int) -> None:
        try:
            results[i] = await client.execute(*commands[i])
        except ResponseError as exc:
            results[i] = exc

    async with trio.open_nursery() as nursery:
        for i in range(len(commands)):
            nursery.start_soon(one, i)
    return results


async def test_concurrent_commands_each_get_their_own_reply(
    client: Redis, opened: list[RedisAddress]
) -> None:
    await client.execute("SET", "text", "not a list")
    commands: list[Command] = []
    for i in range(COMMANDS_AT_ONCE):
        commands += [
            ("ECHO", f"e{i}"),
            ("INCRBY", f"n{i}", i),
            ("LPUSH", "text", "x"),  # WRONGTYPE: goes to this caller, nobody else
            ("RPUSH", f"l{i}", "a", i),
            ("GET", f"missing{i}"),
        ]
    results = await _in_flight(client, commands)

    for i in range(COMMANDS_AT_ONCE):
        echo, incr, wrong, push, missing = results[i * 5 : i * 5 + 5]
        assert (echo, incr, push, missing) == (f"e{i}", i, 2, None)
        assert isinstance(wrong, ResponseError)
        assert str(wrong).startswith("WRONGTYPE")
    assert len(opened) == 1  # all of them on one connection


async def test_concurrent_pipelines_and_scripts_get_their_own_replies(client: Redis) -> None:
    results: dict[int, Any] = {}

    async def pipeline(i: int) -> None:
        results[i] = await client.pipeline([("SET", f"k{i}", i), ("GET", f"k{i}"), ("NOSUCH",)])

    async def script(i: int) -> None:
        results[i] = await client.execute("EVAL", "return {KEYS[1], ARGV[1]}", 1, f"s{i}", i)

    async with trio.open_nursery() as nursery:
        for i in range(COMMANDS_AT_ONCE):
            nursery.start_soon(pipeline if i % 2 else script, i)

    for i in range(COMMANDS_AT_ONCE):
        if i % 2:
            ok, value, unknown = results[i]
            assert (ok, value) == ("OK", str(i))
            assert isinstance(unknown, ResponseError)
        else:
            assert results[i] == [f"s{i}", str(i)]


async def test_commands_issued_together_leave_in_one_write(
    client: Redis, admin: Redis, writes: list[bytes]
) -> None:
    await client.ping()
    await admin.ping()
    reads_before = int(_info(await admin.execute("INFO", "stats"))["total_reads_processed"])
    writes.clear()

    results = await _in_flight(client, [("ECHO", str(i)) for i in range(COMMANDS_AT_ONCE)])

    assert results == [str(i) for i in range(COMMANDS_AT_ONCE)]
    # The first found the connection idle and left at once, by itself; one write carried
    # every other...
    assert [w.count(b"ECHO") for w in writes] == [1, COMMANDS_AT_ONCE - 1]
    # ... and the server read them in two reads or three, plus the INFO command that asks.
    reads = int(_info(await admin.execute("INFO", "stats"))["total_reads_processed"])
    assert reads - reads_before <= 4


async def test_a_command_on_an_idle_connection_leaves_from_its_caller(
    client: Redis, writes: list[bytes]
) -> None:
    await client.ping()
    shared = client._shared
    assert shared is not None and shared.idle
    writes.clear()
    sent_by: list[trio.lowlevel.Task] = []
    real_try_write = Connection.try_write

    def noting_try_write(self: Connection, payload: bytes) -> bytes:
        sent_by.append(trio.lowlevel.current_task())
        return real_try_write(self, payload)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Connection, "try_write", noting_try_write)
        assert await client.execute("ECHO", "alone") == "alone"

    assert sent_by == [trio.lowlevel.current_task()]  # not the writer task
    assert [w.count(b"ECHO") for w in writes] == [1]


async def test_cancelled_waiters_leave_the_reply_stream_in_order(
    client: Redis, admin: Redis
) -> None:
    before = await client.execute("CLIENT", "ID")
    replies: dict[int, Any] = {}
    scopes = [trio.CancelScope() for _ in range(COMMANDS_AT_ONCE)]

    async def incr(i: int) -> None:
        with scopes[i]:
            replies[i] = await client.execute("INCRBY", f"c{i}", i + 1)

    await admin.execute("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        async with trio.open_nursery() as nursery:
            for i in range(COMMANDS_AT_ONCE):
                nursery.start_soon(incr, i)
            # Every INCRBY is sent and held by the paused server: cancel every third caller.
            await trio.testing.wait_all_tasks_blocked()
            for scope in scopes[::3]:
                scope.cancel()
            await admin.execute("CLIENT", "UNPAUSE")
    finally:
        await admin.execute("CLIENT", "UNPAUSE")

    cancelled = set(range(0, COMMANDS_AT_ONCE, 3))
    assert all(scopes[i].cancelled_caught for i in cancelled)
    assert replies == {i: i + 1 for i in range(COMMANDS_AT_ONCE) if i not in cancelled}
    # The cancelled commands were sent, so they ran; their replies were read and dropped...
    values = await client.pipeline([("GET", f"c{i}") for i in range(COMMANDS_AT_ONCE)])
    assert values == [str(i + 1) for i in range(COMMANDS_AT_ONCE)]
    # ... and the connection stayed in step: it is still the first one, answering rightly.
    assert await _in_flight(client, [("ECHO", str(i)) for i in range(50)]) == [
        str(i) for i in range(50)
    ]
    assert await client.execute("CLIENT", "ID") == before


async def test_a_lost_connection_fails_every_waiter_and_the_next_command_reconnects(
    redis_url: str, admin: Redis
) -> None:
    reconnects: list[None] = []
    client = Redis.from_url(
        redis_url, connect_attempts=1, on_reconnect=lambda: reconnects.append(None)
    )
    errors: dict[int, RedisConnectionError] = {}

    async def incr(i: int) -> None:
        try:
            await client.execute("INCR", f"lost{i}")
        except RedisConnectionError as exc:
            errors[i] = exc

    try:
        victim = await client.execute("CLIENT", "ID")
        await admin.execute("CLIENT", "PAUSE", 10_000, "WRITE")
        try:
            async with trio.open_nursery() as nursery:
                for i in range(COMMANDS_AT_ONCE):
                    nursery.start_soon(incr, i)
                await trio.testing.wait_all_tasks_blocked()  # all sent, none answered
                assert await admin.execute("CLIENT", "KILL", "ID", victim) == 1
        finally:
            await admin.execute("CLIENT", "UNPAUSE")

        assert sorted(errors) == list(range(COMMANDS_AT_ONCE))
        port = redis_url.rsplit(":", 1)[1].split("/")[0]
        assert all(f"127.0.0.1:{port}" in str(e) for e in errors.values())
        assert len({id(e) for e in errors.values()}) == COMMANDS_AT_ONCE  # one each
        assert reconnects == []
        # The next command makes a new connection, and the one after it reuses that.
        assert await client.execute("CLIENT", "ID") != victim
        assert await _in_flight(client, [("ECHO", str(i)) for i in range(50)]) == [
            str(i) for i in range(50)
        ]
        assert reconnects == [None]
    finally:
        await client.aclose()


async def test_blocking_commands_do_not_hold_up_the_shared_connection(
    client: Redis, admin: Redis
) -> None:
    popped: list[Any] = []

    async def pop() -> None:
        popped.append(await client.execute("BLPOP", "jobs", 10))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pop)
            while _info(await admin.execute("INFO", "clients"))["blocked_clients"] != "1":  # noqa: ASYNC110 (polls a server)
                await trio.sleep(0.005)
            # With the BLPOP waiting on a connection of its own, the rest still flows.
            echoes = await _in_flight(client, [("ECHO", str(i)) for i in range(50)])
            assert echoes == [str(i) for i in range(50)]
            assert await client.execute("RPUSH", "jobs", "job") == 1
    assert popped == [["jobs", "job"]]


async def test_commands_after_close_are_refused(client: Redis) -> None:
    assert await client.ping()
    await client.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await client.execute("PING")
    with pytest.raises(RedisConnectionError, match="closed"):
        await client.pipeline([("PING",)])
