"""REST over HTTP/1.1: a request refused before its body was read leaves the connection usable.

The app refuses many requests from their headers alone (401, 403, 404, 405, 413, 415, 422).
hypercorn ends an HTTP/1.1 connection whose request had not all arrived when the response
completed, without warning the client, so the app reads and drops the rest of the body first
(or, for a body declared over the limit, says ``Connection: close``). These tests speak
HTTP/1.1 over raw sockets, from threads (the client must not share the server's event loop,
whose scheduling would hide a race): the refused request in one write, chunked, as headers
then body 10 ms apart, or with ``Expect: 100-continue``; then the next request.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import h11
import pytest
import trio
from api_helpers import ADMIN_TOKEN, READ_TOKEN, api_server
from log_helpers import captured_json_logs, json_records

from taskqueue.api.auth import hash_token

LIMIT = 1000
#: Rounds per refused status: a few of each way in the default run, 200 in the soak.
ROUNDS = 4 * 5
SOAK_ROUNDS = 200
BODY = b'{"type": "echo"}'
ADMIN = ("authorization", f"Bearer {ADMIN_TOKEN}")
JSON = ("content-type", "application/json")

#: status -> (method, target, headers, body) of a request the server refuses with it.
REFUSED: dict[int, tuple[str, str, list[tuple[str, str]], bytes]] = {
    401: ("POST", "/api/v1/tasks", [JSON], BODY),
    403: ("POST", "/api/v1/tasks", [JSON, ("authorization", f"Bearer {READ_TOKEN}")], BODY),
    404: ("POST", "/api/v1/nothing-here", [JSON, ADMIN], BODY),
    405: ("PUT", "/api/v1/tasks", [JSON, ADMIN], BODY),
    413: ("POST", "/api/v1/tasks", [JSON, ADMIN], b'{"type": "' + b"x" * 2 * LIMIT + b'"}'),
    415: ("POST", "/api/v1/tasks", [("content-type", "text/plain"), ADMIN], BODY),
    422: ("POST", "/api/v1/tasks?color=blue", [JSON, ADMIN], BODY),
}
#: How the refused request is sent.
WAYS = ("one write", "chunked", "two writes", "two writes, chunked", "expect 100-continue")


class Client:
    """One HTTP/1.1 connection, spoken with h11 over a blocking socket."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.conn = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def send(self, *events: h11.Event) -> None:
        self.sock.sendall(b"".join(self.conn.send(event) or b"" for event in events))

    def next_event(self) -> object:
        """The next event, reading from the socket as needed."""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            else:
                return event

    def response(self) -> tuple[h11.Response, bytes]:
        """The next final response and its body."""
        head = None
        body = b""
        while True:
            event = self.next_event()
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return head, body

    def server_closed(self) -> bool:
        """Whether the server ends the connection (EOF or reset) without sending more."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def closes(response: h11.Response) -> bool:
    return (b"connection", b"close") in [(k.lower(), v.lower()) for k, v in response.headers]


def send_refused(client: Client, status: int, way: str) -> h11.Response:
    """Send the request ``REFUSED[status]`` the ``way`` given; return the server's answer."""
    method, target, headers, body = REFUSED[status]
    headers = [("host", "api"), *headers]
    if "chunked" in way:
        headers.append(("transfer-encoding", "chunked"))
    else:
        headers.append(("content-length", str(len(body))))
    if way.startswith("expect"):
        headers.append(("expect", "100-continue"))
    half = len(body) // 2
    pieces = [h11.Data(data=body[:half]), h11.Data(data=body[half:]), h11.EndOfMessage()]
    request = h11.Request(method=method, target=target, headers=headers)
    try:
        if way in ("one write", "chunked"):
            client.send(request, *pieces)
        elif way.startswith("two writes"):
            client.send(request)
            time.sleep(0.01)  # the client's own pace: headers, then the body a moment later
            client.send(*pieces)
        else:
            client.send(request)
            first = client.next_event()  # hypercorn sends "100 Continue" at once
            assert isinstance(first, h11.InformationalResponse), first
            assert first.status_code == 100
            client.send(*pieces)
    except (BrokenPipeError, ConnectionResetError):
        # Only a body declared over the limit may be cut off: its answer closes the connection.
        assert status == 413 and "chunked" not in way
    response, _ = client.response()
    return response


def refused_then_next(host: str, port: int, status: int, rounds: int) -> None:
    """``rounds`` times: a refused request, then a GET on the same connection (or, after an
    answer that says ``Connection: close``, on a new one, once the server closed the old)."""
    for round_ in range(rounds):
        way = WAYS[round_ % len(WAYS)]
        client = Client(host, port)
        try:
            refused = send_refused(client, status, way)
            assert refused.status_code == status, (way, refused)
            if status == 413:
                assert closes(refused), (way, refused.headers)
                assert client.server_closed(), way
                client.close()
                client = Client(host, port)
            else:
                assert not closes(refused), (status, way, refused.headers)
                client.conn.start_next_cycle()
            client.send(
                h11.Request(
                    method="GET", target="/api/v1/queues", headers=[("host", "api"), ADMIN]
                ),
                h11.EndOfMessage(),
            )
            following, body = client.response()
            assert following.status_code == 200, (status, way, round_, body)
            assert b'"totals"' in body
        except TimeoutError:
            raise AssertionError(f"{status}, {way}, round {round_}: no answer") from None
        finally:
            client.close()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    with captured_json_logs("info") as stream:
        yield stream


async def test_after_an_early_refusal_the_connection_serves_the_next_request(
    redis_url: str, tmp_path: Path, log_lines: io.StringIO
) -> None:
    await refusals_then_next(redis_url, tmp_path, log_lines, ROUNDS)


@pytest.mark.soak
async def test_after_an_early_refusal_the_connection_serves_the_next_request_200_times(
    redis_url: str, tmp_path: Path, log_lines: io.StringIO
) -> None:
    await refusals_then_next(redis_url, tmp_path, log_lines, SOAK_ROUNDS)


async def refusals_then_next(
    redis_url: str, tmp_path: Path, log_lines: io.StringIO, rounds: int
) -> None:
    """Every refused status at once, each on its own thread, ``rounds`` times; no error logged."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{hash_token(READ_TOKEN)} read\n")
    async with api_server(
        redis_url,
        server__tokens=(ADMIN_TOKEN,),
        server__token_file=str(tokens),
        server__max_request_bytes=LIMIT,
    ) as server:
        address = urlsplit(server.url)
        host, port = address.hostname, address.port
        assert host is not None and port is not None
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for status in REFUSED:
                    nursery.start_soon(
                        trio.to_thread.run_sync, refused_then_next, host, port, status, rounds
                    )
    errors = [r for r in json_records(log_lines) if r["level"] in ("error", "critical")]
    assert errors == []


async def test_a_client_gone_before_its_body_arrived_is_no_error(
    redis_url: str, log_lines: io.StringIO
) -> None:
    """Refused at once, the client hangs up before sending the body it declared: the
    response has started (the client has it) and cannot be completed, which is no bug, and
    the server carries on."""
    async with api_server(redis_url, server__tokens=(ADMIN_TOKEN,)) as server:
        address = urlsplit(server.url)
        host, port = address.hostname, address.port
        assert host is not None and port is not None

        def refused_then_gone() -> int:
            client = Client(host, port)
            try:
                headers = [("host", "api"), JSON, ("content-length", "500")]
                client.send(h11.Request(method="POST", target="/api/v1/tasks", headers=headers))
                client.sock.sendall(b"{")
                response, _ = client.response()
                return response.status_code
            finally:
                client.close()

        for _ in range(20):
            assert await trio.to_thread.run_sync(refused_then_gone) == 401
        async with server.client(token=ADMIN_TOKEN) as client:
            assert (await client.get("/api/v1/queues")).status_code == 200
    records = json_records(log_lines)
    assert [r for r in records if r["level"] in ("error", "critical")] == []
    statuses = [r["status"] for r in records if r["logger"] == "taskqueue.access"]
    assert statuses.count("401") == 20
