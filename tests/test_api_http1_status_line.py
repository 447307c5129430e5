"""HTTP/1.1 status lines carry their reason phrase (``HTTP/1.1 404 Not Found``), whether the
app answered or hypercorn refused a request it could not parse: read off a real socket."""

from __future__ import annotations

from urllib.parse import urlsplit

import trio
from api_helpers import api_server


async def exchange(url: str, request: bytes) -> bytes:
    """The status line the server answers ``request`` with, on a connection of its own."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    stream = await trio.open_tcp_stream(address.hostname, address.port)
    async with stream:
        await stream.send_all(request)
        answer = b""
        with trio.fail_after(5):
            while b"\r\n" not in answer:
                chunk = await stream.receive_some(2**16)
                assert chunk, f"the server closed without a status line: {answer!r}"
                answer += chunk
    return answer.partition(b"\r\n")[0]


async def test_every_status_line_has_its_reason_phrase(redis_url: str) -> None:
    async with api_server(redis_url) as server:
        ok = await exchange(server.url, b"GET /healthz HTTP/1.1\r\nhost: api\r\n\r\n")
        missing = await exchange(server.url, b"GET /nowhere HTTP/1.1\r\nhost: api\r\n\r\n")
        body = b'{"type": "email"}'
        created = await exchange(
            server.url,
            b"POST /api/v1/tasks HTTP/1.1\r\nhost: api\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body),
        )
        unparsable = await exchange(server.url, b"NOT HTTP AT ALL\r\n\r\n")

    assert ok == b"HTTP/1.1 200 OK"
    assert missing == b"HTTP/1.1 404 Not Found"
    assert created == b"HTTP/1.1 201 Created"
    assert unparsable == b"HTTP/1.1 400 Bad Request"
