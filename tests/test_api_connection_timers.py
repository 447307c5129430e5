"""Hypercorn's connection as taskqueue runs it (:mod:`taskqueue.api.patches.hypercorn_tcp`,
:mod:`taskqueue.api.patches.hypercorn_h11`): the keep-alive timer that moves a deadline instead
of starting a task per request, and HTTP/1.1 responses written in one piece.

The server is hypercorn's trio server with taskqueue's classes, on a real socket, serving a
small ASGI app whose handler waits as long as the test says. Time is trio's ``MockClock``: it
jumps only when nothing has happened for 50 ms of real time, so a reply in flight on the
loopback is never overtaken by a jump.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import h11
import pytest
import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import RawData
from hypercorn.protocol.events import Body, EndBody, Response
from hypercorn.trio import serve
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext

from taskqueue.api.patches import hypercorn_fixes
from taskqueue.api.patches.hypercorn_h11 import CoalescingH11Protocol

KEEP_ALIVE = 60.0


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``/wait/N`` after N seconds, anything else at once."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path: str = scope["path"]
    if path.startswith("/wait/"):
        await trio.sleep(float(path.removeprefix("/wait/")))
    body = b"done"
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: The app as hypercorn's annotations take it (they want its own TypedDicts).
ASGI_APP: Any = app


@asynccontextmanager
async def server() -> AsyncIterator[tuple[str, int, trio.Event]]:
    """Hypercorn with taskqueue's classes: (host, port, the event that stops it)."""
    hypercorn_fixes.install()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.keep_alive_timeout = KEEP_ALIVE
    config.graceful_timeout = 300.0
    config.accesslog = None
    stop = trio.Event()

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(ASGI_APP, config, shutdown_trigger=stop.wait, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        host, _, port = binds[0].removeprefix("http://").rpartition(":")
        yield host, int(port), stop
        stop.set()


class Client:
    """One HTTP/1.1 connection, spoken with h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def get(self, path: str) -> tuple[int, bytes]:
        request = h11.Request(method="GET", target=path, headers=[("host", "test")])
        await self.stream.send_all(self.h11.send(request) + self.h11.send(h11.EndOfMessage()))
        status, body = 0, b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.h11.start_next_cycle()
                return status, body

    async def closed_by_server(self) -> bool:
        """Wait for the server to close the connection; whether it did so cleanly (EOF)."""
        return await self.stream.receive_some(65536) == b""


@asynccontextmanager
async def connection(host: str, port: int) -> AsyncIterator[Client]:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        yield Client(stream)


async def test_an_idle_connection_closes_when_the_keep_alive_timeout_passes(
    clock: trio.testing.MockClock,
) -> None:
    async with server() as (host, port, _), connection(host, port) as client:
        for _ in range(3):  # each request moves the deadline
            assert await client.get("/") == (200, b"done")
            await trio.sleep(KEEP_ALIVE / 2)
        assert await client.get("/") == (200, b"done")
        idle_since = trio.current_time()
        assert await client.closed_by_server()
        waited = trio.current_time() - idle_since
        assert KEEP_ALIVE - 1 <= waited <= KEEP_ALIVE + 1


async def test_a_request_served_longer_than_the_timeout_keeps_its_connection(
    clock: trio.testing.MockClock,
) -> None:
    async with server() as (host, port, _), connection(host, port) as client:
        started = trio.current_time()
        assert await client.get(f"/wait/{KEEP_ALIVE * 3}") == (200, b"done")
        assert trio.current_time() - started >= KEEP_ALIVE * 3
        # The timer starts again from the end of that request.
        assert await client.get("/") == (200, b"done")
        idle_since = trio.current_time()
        assert await client.closed_by_server()
        assert trio.current_time() - idle_since >= KEEP_ALIVE - 1


async def test_stopping_closes_idle_connections_at_once_and_busy_ones_when_they_finish(
    clock: trio.testing.MockClock,
) -> None:
    async with (
        server() as (host, port, stop),
        connection(host, port) as idle,
        connection(host, port) as busy,
    ):
        assert await idle.get("/") == (200, b"done")
        answers: list[tuple[int, bytes]] = []
        async with trio.open_nursery() as nursery:

            async def slow_request() -> None:
                answers.append(await busy.get("/wait/100"))

            nursery.start_soon(slow_request)
            await trio.sleep(10)  # the slow request is being served
            stopped_at = trio.current_time()
            stop.set()
            assert await idle.closed_by_server()
            assert trio.current_time() - stopped_at < 1
        assert answers == [(200, b"done")]
        assert trio.current_time() - stopped_at >= 90
        assert await busy.closed_by_server()
        assert trio.current_time() - stopped_at < 91


class Recorder:
    """Collects what the protocol hands its connection to write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def __call__(self, event: object) -> None:
        if isinstance(event, RawData):
            self.writes.append(event.data)


async def protocol_after_a_request() -> tuple[CoalescingH11Protocol, Recorder]:
    """An HTTP/1.1 protocol that has read one request (whose response is due)."""
    recorder = Recorder()
    config = HypercornConfig()
    config.include_date_header = False
    config.include_server_header = False
    protocol = CoalescingH11Protocol(
        ASGI_APP,
        config,
        WorkerContext(None),
        TaskGroup(),
        cast(Any, {}),
        False,
        None,
        None,
        recorder,
    )
    connection = protocol.connection
    connection.receive_data(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
    assert isinstance(connection.next_event(), h11.Request)
    assert isinstance(connection.next_event(), h11.EndOfMessage)
    return protocol, recorder


async def test_a_response_of_declared_length_is_written_in_one_piece() -> None:
    protocol, recorder = await protocol_after_a_request()
    await protocol.stream_send(
        Response(stream_id=1, status_code=201, headers=[(b"Content-Length", b"2")])
    )
    assert recorder.writes == []  # the head waits for the body
    await protocol.stream_send(Body(stream_id=1, data=b"ok"))
    await protocol.stream_send(EndBody(stream_id=1))
    assert recorder.writes == [b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"]


async def test_a_stream_has_its_head_written_at_once_and_each_chunk_as_it_comes() -> None:
    protocol, recorder = await protocol_after_a_request()
    await protocol.stream_send(Response(stream_id=1, status_code=200, headers=[]))
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    await protocol.stream_send(Body(stream_id=1, data=b"event"))
    assert recorder.writes[1:] == [b"5\r\nevent\r\n"]
    await protocol.stream_send(EndBody(stream_id=1))
    assert recorder.writes[2:] == [b"0\r\n\r\n"]


async def test_a_head_without_a_body_is_written_with_the_end() -> None:
    protocol, recorder = await protocol_after_a_request()
    await protocol.stream_send(
        Response(stream_id=1, status_code=204, headers=[(b"content-length", b"0")])
    )
    await protocol.stream_send(EndBody(stream_id=1))
    assert recorder.writes == [b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"]
