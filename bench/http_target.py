"""The local HTTP server that bench/e2e.py's HTTP-task section sends its requests to.

    ./dev python bench/http_target.py PORT      (0: any free port; prints the one it took)

Answers every request with ``200`` and a 2-byte body, keep-alive, on 127.0.0.1. It is an
asyncio ``Protocol`` that only finds the end of each request head (``GET`` has no body), with
no HTTP library: the cheapest server Python has, so that the benchmark measures the client
side, not this. e2e.py starts it as a process of its own, off the worker's and the bench's
event loops; run without PORT it does nothing (``./dev bench`` runs every file here).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\nok"
)
#: A request head larger than this is refused (the connection closed): no client here sends one.
MAX_HEAD = 65536


class Answer(asyncio.Protocol):
    """One connection: a response for each request head, in order (pipelining works)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        requests = self.buffer.count(b"\r\n\r\n")
        if requests:
            self.buffer = self.buffer[self.buffer.rindex(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * requests)
        elif len(self.buffer) > MAX_HEAD:
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    if len(sys.argv) != 2:
        print(__doc__.strip().split("\n")[2], file=sys.stderr)
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
